"""The one entry point of the decision core."""

from __future__ import annotations

from collections.abc import Callable

from autoscaler.core.policies import hpa, keda, kpa, predictive, static, wva
from autoscaler.core.policies.common import hold
from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.core.types import Decision, Reason, Snapshot, State

Policy = Callable[[Snapshot, State, Spec, float], tuple[Decision, State]]
"""Every policy has this shape: pure, time passed in, state returned anew."""

POLICIES: dict[PolicyKind, Policy] = {
    PolicyKind.HPA: hpa.decide,
    PolicyKind.KPA: kpa.decide,
    PolicyKind.PREDICTIVE: predictive.decide,
    PolicyKind.STATIC: static.decide,
    PolicyKind.HPA_QUEUE: hpa.decide,
    PolicyKind.HPA_KV: hpa.decide,
    PolicyKind.HPA_RUNNING: hpa.decide,
    PolicyKind.KEDA: keda.decide,
    PolicyKind.WVA: wva.decide,
}
"""The ``oracle`` (hindsight) baseline is not here: it needs the future, which only the
replay has (``autoscaler.sim.hindsight``)."""


def decide(snapshot: Snapshot, state: State, spec: Spec, now: float) -> tuple[Decision, State]:
    """Decide the desired replicas for one target at time ``now`` (seconds).

    Pure: the same arguments always give the same result. When the inputs are missing or
    stale the decision is ``valid=False`` with ``replicas == snapshot.current_replicas``:
    the caller holds, and in particular never scales down.
    """
    policy = POLICIES.get(PolicyKind(spec.policy))
    if policy is None:
        return hold(snapshot, state, Reason.METRICS_MISSING,
                    f"policy {spec.policy} needs the future arrival rates, which only the "
                    "replay has; it holds outside it")
    return policy(snapshot, state, spec, now)
