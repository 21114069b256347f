"""Pods that cannot be scheduled: noticed, reported, and not asked for again.

When a GPU pool runs out, the scheduler leaves the extra pods Pending with the condition
``PodScheduled=False``, reason ``Unschedulable`` and a message such as
``0/4 nodes are available: 4 Insufficient nvidia.com/gpu``. Asking for still more replicas
then buys nothing: the new pods queue behind the ones already waiting. So, from the pods of
a workload (as the API server returns them) this module works out

* how many are unschedulable and why (``assess``);
* the condition and the Event the autoscaler reports (``Assessment.condition``,
  ``Assessment.event``);
* the count to ask for (``cap_scale_up``): while any pod is unschedulable, a scale-up stops
  at the current count (the waiting pods stay queued and start as soon as GPUs free up);
  a scale-down goes through (the ReplicaSet controller deletes unscheduled pods first).
  Once every pod is scheduled the cap lifts by itself: "until it can".

Pure: plain dicts in, values out; no client, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
CONDITION_TYPE = "CapacityAvailable"
REASON_OK = "AllPodsScheduled"
REASON_GPU = "InsufficientGPU"
REASON_OTHER = "PodsUnschedulable"


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the pods of one workload say about the capacity behind it."""

    pods: int
    """Pods of the workload that are not being deleted."""
    unschedulable: int
    """Of those, Pending with ``PodScheduled=False/Unschedulable``."""
    insufficient_gpu: int
    """Of the unschedulable, those the scheduler refused for ``Insufficient nvidia.com/gpu``."""
    example: str
    """One scheduler message, for the humans reading the condition ("" if none)."""

    @property
    def schedulable(self) -> int:
        """Pods that have (or will get, as soon as they are scheduled) a node."""
        return self.pods - self.unschedulable

    @property
    def exhausted(self) -> bool:
        return self.unschedulable > 0

    @property
    def reason(self) -> str:
        if not self.exhausted:
            return REASON_OK
        return REASON_GPU if self.insufficient_gpu else REASON_OTHER

    @property
    def message(self) -> str:
        if not self.exhausted:
            return f"all {self.pods} pods scheduled"
        what = (f"{self.insufficient_gpu} for lack of {GPU_RESOURCE}"
                if self.insufficient_gpu else "see the pods' events")
        return (f"{self.unschedulable} of {self.pods} pods cannot be scheduled ({what}); "
                f"not scaling up until they can. Scheduler: {self.example}")

    def condition(self) -> tuple[str, str, str]:
        """(status, reason, message) of the ``CapacityAvailable`` condition."""
        return ("False" if self.exhausted else "True", self.reason, self.message)

    def event(self) -> tuple[str, str, str] | None:
        """(type, reason, message) of the Event to record when this state begins, or None
        when all pods are scheduled (the condition turning True says it)."""
        if not self.exhausted:
            return None
        return ("Warning", self.reason, self.message)


def _unschedulable_message(pod: Mapping[str, Any]) -> str | None:
    status = pod.get("status") or {}
    if status.get("phase", "Pending") != "Pending":
        return None
    for cond in status.get("conditions") or ():
        if (cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"):
            return str(cond.get("message") or "")
    return None


def assess(pods: Iterable[Mapping[str, Any]]) -> Assessment:
    """Count the unschedulable pods among ``pods`` (API objects as dicts, any order).

    Pods being deleted are left out: they are going away whatever the scheduler says.
    """
    total = unsched = gpu = 0
    example = ""
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        total += 1
        msg = _unschedulable_message(pod)
        if msg is None:
            continue
        unsched += 1
        if f"Insufficient {GPU_RESOURCE}" in msg:
            gpu += 1
        if not example:
            example = msg
    return Assessment(pods=total, unschedulable=unsched, insufficient_gpu=gpu,
                      example=example[:300])


def cap_scale_up(desired: int, current: int, assessment: Assessment) -> int:
    """The count to ask for: ``desired``, except that while pods are unschedulable a
    scale-up is held at ``current``. Example: 8 replicas asked, 6 GPUs, 2 pods Pending:
    a decision for 10 becomes 8 (two more pods would only queue); a decision for 5 stays 5.
    """
    if assessment.exhausted and desired > current:
        return current
    return desired
