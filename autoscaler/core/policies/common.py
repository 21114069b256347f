"""Small helpers shared by the policies."""

from __future__ import annotations

import math

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


# A tiny slack so that a rate of exactly k x capacity (after float noise such as
# 8.000000000001) still needs k replicas, not k + 1.
_EPS = 1e-9


def replicas_for_rate(rate_rps: float, capacity_rps: float) -> int:
    """Fewest replicas of ``capacity_rps`` each that cover ``rate_rps`` (0 for no demand)."""
    if rate_rps <= 0:
        return 0
    return max(1, math.ceil(rate_rps / capacity_rps - _EPS))
