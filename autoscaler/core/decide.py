"""The one entry point of the decision core."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from autoscaler.core import capacity as cap_mod
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
    decision, new_state = policy(snapshot, state, spec, now)
    if not spec.capacity.known:
        decision = _no_scale_down_on_a_guess(decision, new_state, snapshot, spec)
    return decision, new_state


def _learned(state: State) -> cap_mod.LearnedCapacity | None:
    """The predictive policy's estimate, if the policy keeps one."""
    return state.policy.capacity if isinstance(state.policy, predictive.PredictiveState) else None


def _no_scale_down_on_a_guess(decision: Decision, new_state: State, snapshot: Snapshot,
                              spec: Spec) -> Decision:
    """With no ``capacity`` in the spec the plan divides by the documented prior until the
    fleet has shown its own: a step near or past the SLO (a measurement) or a probe. Before
    that, a scale-down goes only as far as the fleet has shown it can: per-replica demand at
    most ``PROBE_CEILING`` x the highest per-replica load seen meeting the SLO (the step the
    learning itself probes by), and nowhere before any such load has been seen. A scale-up
    always goes through, and ``maxReplicas`` still binds.

    Worked example: prior 2 req/s, 6 ready replicas carrying 4 req/s at TTFT 0.2 s (0.67
    req/s each, so no probe: under half the prior). The plan asks ceil(4 / (2 x 0.85)) = 3;
    the rule allows ceil(4 / (1.5 x 0.67)) = 4. At 4 (1.0 req/s each, SLO still met) it
    allows ceil(4 / 1.5) = 3. Had the true capacity been 0.8 req/s, 4 replicas would have
    missed the SLO by 25 % for one settle window, not the plan's 3 by 67 %."""
    current = snapshot.current_replicas
    if decision.replicas >= min(current, spec.max_replicas):
        return decision
    est = _learned(new_state)
    if est is not None and (est.measurements > 0 or est.probes > 0):
        return decision
    seen = est.envelope[-1] if est is not None and est.envelope else math.nan
    demand = decision.forecast_rps if decision.forecast_rps is not None else decision.demand_rps
    if demand is not None and math.isfinite(seen) and seen > 0:
        floor = math.ceil(max(0.0, demand) / (seen * cap_mod.PROBE_CEILING) - 1e-9)
        shown = (f"at most {cap_mod.PROBE_CEILING:g} x the {seen:.2f} req/s per replica seen "
                 "meeting the SLO")
    else:
        floor, shown = current, "no load seen meeting the SLO yet"
    floor = min(current, spec.max_replicas, max(floor, decision.replicas))
    if floor <= decision.replicas:
        return decision
    return replace(decision, replicas=floor, reason=Reason.CAPACITY_UNKNOWN,
                   message=decision.message + f"; capacity not given and not learned yet "
                   f"(prior {spec.capacity.requests_per_second:g} req/s): scale-down only "
                   f"to {floor} ({shown})")
