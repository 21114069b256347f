"""Small helpers shared by the policies."""

from __future__ import annotations

from autoscaler.core.spec import Spec
from autoscaler.core.types import Decision, Reason, Snapshot, State


def hold(snapshot: Snapshot, state: State, reason: Reason, message: str) -> tuple[Decision, State]:
    """An invalid decision: keep the current replicas, change no state."""
    return (
        Decision(replicas=snapshot.current_replicas, reason=reason, message=message, valid=False),
        state,
    )


def clamp(replicas: int, spec: Spec) -> tuple[int, Reason | None]:
    """Clamp to [minReplicas, maxReplicas]; the reason says which bound bit, if any."""
    if replicas > spec.max_replicas:
        return spec.max_replicas, Reason.TOO_MANY_REPLICAS
    if replicas < spec.min_replicas:
        return spec.min_replicas, Reason.TOO_FEW_REPLICAS
    return replicas, None
