"""From one reconcile's facts to the custom resource's status: conditions, the document
written, and the part of it whose change is written at once. Pure: no client, no clock
(``now`` is passed in), so every rule here is unit-tested without a cluster.

Conditions (HPA-shaped names, so ``kubectl describe`` reads like an HPA's):

* ``Ready``: the spec is valid and the target was read.
* ``ScalingActive``: False while we do not act on the decision: missing metrics (the
  core's reason), a competing autoscaler (``ConflictingAutoscaler``), another writer that
  keeps changing the scale (``ConflictingWriter``).
* ``ScalingLimited``: the decision was clamped (min/max or a behaviour rate limit).
* ``MetricsAvailable``: the request rate was read and trusted this cycle.
* ``CapacityAvailable``: False while pods of the workload cannot be scheduled (GPUs run
  out), Unknown when its pods could not be listed (``schedulable.py``, ``capacity``).
* ``AbleToScale`` (Scale mode): False (``FailedUpdateScale``, with the API server's words)
  while the last scale write failed: the count kept changing under us, RBAC, or no answer.

``learnedCapacity`` (not a condition): what one replica carries at the SLO as the policy
learned it, with a 90 % band (``learned_capacity``), refreshed with the forecast figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from autoscaler.controller.schedulable import REASON_OK, Assessment
from autoscaler.core.types import Decision, Reason, Signal
from autoscaler.metrics.collect import Observation, Status

LIMITED = frozenset({Reason.TOO_FEW_REPLICAS, Reason.TOO_MANY_REPLICAS,
                     Reason.SCALE_UP_LIMIT, Reason.SCALE_DOWN_LIMIT})

Condition = tuple[str, str, str]
"""(status "True"/"False", reason, message)."""


CAPACITY_INTERVAL_Z = 1.645
"""Standard normal z of a two-sided 90 % interval. The learned capacity's uncertainty is a
relative standard deviation (``Decision.capacity_uncertainty``); its 90 % band, reading the
relative residuals as roughly normal, is capacity x (1 -+ 1.645 x sd): 4 req/s at +-10 %
is 3.34..4.66 req/s."""


@dataclass(frozen=True, slots=True)
class LearnedCapacity:
    """One replica's learned capacity at the SLO, as the status, ``/metrics`` and the
    decision log show it."""

    requests_per_second: float
    """At the current request mix (the least over units of work)."""
    lower_rps: float
    """90 % band, lower end (never below 0)."""
    upper_rps: float
    relative_sd: float
    """Relative standard deviation (0.1 = +-10 %)."""
    unit: str | None
    """The unit of work that binds the plan (``prompt_tokens_per_s``, ...)."""
    per_replica: float | None
    """Capacity of one replica in ``unit``."""


def learned_capacity(decision: Decision | None) -> LearnedCapacity | None:
    """The learned capacity a decision reports, with its 90 % band; None when the policy
    learns none (every policy but predictive) or reported no finite figure."""
    if decision is None:
        return None
    rps, sd = decision.capacity_rps, decision.capacity_uncertainty
    if rps is None or sd is None or not math.isfinite(rps) or not math.isfinite(sd):
        return None
    half = CAPACITY_INTERVAL_Z * max(0.0, sd) * rps
    per = decision.capacity_per_replica
    return LearnedCapacity(rps, max(0.0, rps - half), rps + half, max(0.0, sd),
                           decision.capacity_unit,
                           per if per is not None and math.isfinite(per) else None)


def learned_capacity_fields(decision: Decision | None) -> dict[str, float | str]:
    """The learned capacity as flat fields (the controller's decision log; empty when none)."""
    cap = learned_capacity(decision)
    if cap is None:
        return {}
    out: dict[str, float | str] = {
        "capacity_rps": round(cap.requests_per_second, 4),
        "capacity_lower_rps": round(cap.lower_rps, 4),
        "capacity_upper_rps": round(cap.upper_rps, 4),
        "capacity_relative_sd": round(cap.relative_sd, 4)}
    if cap.unit is not None and cap.per_replica is not None:
        out["capacity_unit"] = cap.unit
        out["capacity_per_replica"] = round(cap.per_replica, 4)
    return out


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class MetricsVerdict:
    """Whether an observation can drive a decision, said twice: ``message`` for the status
    (with details such as a sample's age) and ``key`` for Events and transitions (signal
    statuses only: the same trouble gives the same key every cycle, so an Event is written
    once per change of trouble and identical Events stay identical)."""

    usable: bool
    message: str
    key: str


def metrics_verdict(obs: Observation | str | None, ready: int) -> MetricsVerdict:
    """Judge this cycle's observation (or the reason there is none: a stable sentence)."""
    if not isinstance(obs, Observation):
        why = obs or "no observation"
        return MetricsVerdict(False, why, why)
    judged = obs.judged(ready)
    bad = {s.value: r for s, r in judged.items() if r.status is not Status.OK}
    rate = judged.get(Signal.REQUEST_RATE)
    usable = rate is not None and rate.status is Status.OK
    if not bad:
        return MetricsVerdict(True, f"{len(judged)} signals ok, {obs.pods_reporting} pods "
                                    "reporting", "ok")
    worst = ", ".join(f"{k}: {r.status.value} ({r.detail})" for k, r in list(bad.items())[:3])
    key = ", ".join(f"{k}: {r.status.value}" for k, r in sorted(bad.items()))
    return MetricsVerdict(usable, f"{len(judged) - len(bad)}/{len(judged)} signals ok; {worst}",
                          key)


def metrics_event_message(verdict: MetricsVerdict) -> str:
    """The Warning Event for unusable metrics: no counts, ages or times, so a repeat of the
    same trouble is the same Event (Kubernetes tools aggregate identical Events)."""
    return f"metrics unusable ({verdict.key}): holding, no scale-down on missing data"


def conditions(*, mode: str, valid: bool, reason: str, message: str,
               decision_reason: Reason, metrics: MetricsVerdict,
               blocked: Condition | None,
               capacity: Condition | None = None,
               able: Condition | None = None) -> dict[str, Condition]:
    """The four conditions of one reconcile, five with ``capacity``. ``reason``/``message``
    are after the loop's post-processing (``Fallback`` may replace the core's); ``blocked``
    is why we do not write (a competing autoscaler or writer), or None."""
    if blocked is not None:
        active: Condition = blocked
    elif not valid and reason != "Fallback":
        active = ("False", reason, message)
    else:
        active = ("True", reason, message)
    limited = decision_reason in LIMITED
    out = {
        "Ready": ("True", "Reconciled", f"mode {mode}"),
        "ScalingActive": active,
        "ScalingLimited": (("True" if limited else "False"), decision_reason.value,
                           message if limited else "desired count within limits"),
        "MetricsAvailable": (("True", "MetricsOK", metrics.message) if metrics.usable
                             else ("False", "MetricsUnavailable", metrics.message)),
    }
    if capacity is not None:
        out["CapacityAvailable"] = capacity
    if able is not None:
        out["AbleToScale"] = able
    return out


def capacity(assessment: Assessment | None, *, listed: bool, error: str = "",
             pods_ready: int = 0) -> Condition:
    """The ``CapacityAvailable`` condition. ``listed=False``: the fleet was steady (every
    replica ready) and no pods were listed: True with nothing to count. A failed list
    (``error``) is Unknown: the loop keeps the last known verdict for the cap meanwhile."""
    if error:
        return ("Unknown", "PodListFailed", f"cannot list the workload's pods: {error}")
    if assessment is None or not listed:
        return ("True", REASON_OK, f"all {pods_ready} replicas ready")
    return assessment.condition()


def failed_conditions(reason: str, message: str) -> dict[str, Condition]:
    """The target could not be read: nothing else is known."""
    return {"Ready": ("False", reason, message), "ScalingActive": ("False", reason, message)}


def merge_conditions(previous: Mapping[str, Mapping[str, str]],
                     new: Mapping[str, Condition], now: float) -> list[dict[str, str]]:
    """Condition objects, keeping ``lastTransitionTime`` while a condition's status holds."""
    out = []
    for ctype, (status, creason, cmsg) in new.items():
        old = previous.get(ctype)
        since = old["lastTransitionTime"] if old and old["status"] == status else rfc3339(now)
        out.append({"type": ctype, "status": status, "reason": creason, "message": cmsg[:512],
                    "lastTransitionTime": since})
    return out


def status_document(*, generation: int, current: int | None, desired: int | None,
                    reason: str, message: str, conditions: list[dict[str, str]],
                    last_scale_time: float | None,
                    decision: Decision | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "observedGeneration": generation, "currentReplicas": current,
        "desiredReplicas": desired, "reason": reason, "message": message[:1024],
        "conditions": conditions,
    }
    if last_scale_time is not None:
        doc["lastScaleTime"] = rfc3339(last_scale_time)
    if decision is not None:
        for k, v in (("forecastRps", decision.forecast_rps),
                     ("demandRps", decision.demand_rps)):
            if v is not None and math.isfinite(v):
                doc[k] = round(v, 3)
        if decision.forecast_model:
            doc["forecastModel"] = decision.forecast_model
        cap = learned_capacity(decision)
        if cap is not None:
            learned: dict[str, Any] = {
                "requestsPerSecond": round(cap.requests_per_second, 3),
                "lowerRequestsPerSecond": round(cap.lower_rps, 3),
                "upperRequestsPerSecond": round(cap.upper_rps, 3),
                "relativeStdDev": round(cap.relative_sd, 4)}
            if cap.unit is not None and cap.per_replica is not None:
                learned["unit"] = cap.unit
                learned["perReplica"] = round(cap.per_replica, 3)
            doc["learnedCapacity"] = learned
    return doc


def material(status: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a status whose change is written at once (counts, reason, condition
    states); messages and forecast figures wait for the periodic refresh."""
    out = {k: v for k, v in status.items()
           if k not in ("message", "forecastRps", "demandRps", "forecastModel", "conditions",
                        "learnedCapacity")}
    out["conditions"] = [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]
    return out


def condition(ctype: str, status: str, reason: str, message: str,
              now: float) -> dict[str, str]:
    return {"type": ctype, "status": status, "reason": reason, "message": message[:512],
            "lastTransitionTime": rfc3339(now)}
