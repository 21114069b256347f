"""Which pods serve, read from the API server's pod list (``autoscaler twin --kubeconfig``).

The twin follows a real Deployment: it serves (and exports series for) exactly the pods
that are Ready and not being deleted, under their own names, as a PodMonitor would scrape
them. Which twin workload a pod belongs to is the value of one of its labels
(``--pod-label``, default ``workload``): a pod labelled ``workload=chat`` serves the twin's
``chat``. Pods without the label are not ours.

Pure: API objects as plain dicts in, a mapping out. The LIST itself is the caller's (the
CLI, through ``autoscaler.controller.kube``), so this package needs no cluster client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_POD_LABEL = "workload"


def is_ready(pod: Mapping[str, Any]) -> bool:
    """Running with condition ``Ready=True`` and no deletion timestamp (a terminating pod
    is removed from its Service's endpoints at once, so it gets no new requests)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or ())


def ready_by_workload(pods: Iterable[Mapping[str, Any]], label: str = DEFAULT_POD_LABEL
                      ) -> dict[str, list[str]]:
    """Workload (the pod's ``label`` value) -> names of its Ready pods, sorted.

    Example: chat-a Ready, chat-b Running but loading, chat-c Ready and terminating,
    ``workload=chat`` on all three -> ``{"chat": ["chat-a"]}``.
    """
    out: dict[str, list[str]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        workload = (meta.get("labels") or {}).get(label)
        if workload is None or not is_ready(pod):
            continue
        out.setdefault(str(workload), []).append(str(meta.get("name", "")))
    for names in out.values():
        names.sort()
    return out
