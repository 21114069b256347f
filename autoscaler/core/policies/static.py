"""``static``: a fixed replica count, what teams run without an autoscaler."""

from __future__ import annotations

from autoscaler.core.spec import Spec
from autoscaler.core.types import Decision, Reason, Snapshot, State


def decide(snapshot: Snapshot, state: State, spec: Spec, now: float) -> tuple[Decision, State]:
    replicas = spec.static_replicas if spec.static_replicas is not None else spec.max_replicas
    return (
        Decision(replicas=replicas, reason=Reason.FIXED, recommendation=replicas,
                 message=f"static policy holds {replicas} replicas"),
        state,
    )
