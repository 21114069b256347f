"""The one entry point of the decision core."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from autoscaler.core import capacity as cap_mod
from autoscaler.core.policies import hpa, keda, kpa, predictive, static, wva
from autoscaler.core.policies.common import hold
from autoscaler.core.spec import CapacitySource, PolicyKind, Spec
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State

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
    if snapshot.lower_bounds:
        decision, new_state = _scale_up_on_lower_bounds(policy, snapshot, state, spec, now,
                                                        decision, new_state)
    if not spec.capacity.known:
        decision = _no_scale_down_on_a_guess(decision, new_state, snapshot, spec)
    return decision, new_state


_WITHHELD_ON_BOUNDS = (Signal.KV_CACHE_USAGE,)
"""Trusted signals left out of the run on lower bounds. KV-cache use is a mean over the
reporting pods, and the policies turn it into a load by dividing by a summed signal:
predictive grows the cache the fleet holds by planned / current request rate, WVA reads a
replica's capacity from running / KV use. With that sum a lower bound, the quotient is
biased *up* (a rate bound of 10.4 req/s where about 13 arrived grew 82 % of 2 caches to
1.64 x 15.4 / 10.4 = 2.43 caches, 4 replicas instead of 3: one of the extra starts on NASA
x20). Without the gauge both fall back to their other limits, which can only ask for
fewer replicas, so the bounded count stays a lower bound."""


def _scale_up_on_lower_bounds(policy: Policy, snapshot: Snapshot, state: State, spec: Spec,
                              now: float, decision: Decision, new_state: State
                              ) -> tuple[Decision, State]:
    """Scale up on readings that are lower bounds of the load; never anything else.

    A sum over pods while fewer pods report than are ready, or a counter's ``rate()`` over
    a window its series do not fully cover, cannot be trusted as the load (it is left out of
    ``snapshot.metrics`` and the policy holds), but it cannot be *above* the load either: a
    pod that does not report adds >= 0, and a new pod's, a restarted counter's or a late
    scrape's missing stretch is missing from the count, never added to it. So the policy is
    run a second time with ``snapshot.lower_bounds`` standing in for the missing values.
    Every policy here asks for at least as many replicas when a summed signal is higher
    (ceil(usage / target) for the HPA and KEDA; the KPA's window mean; predictive's trend,
    whose level, slope and upside-only spread all grow with the newest sample, and its
    queue shortfall; WVA's requests in flight), once the KV-cache gauge, which two of them
    divide by a sum, is withheld (``_WITHHELD_ON_BOUNDS``) and the capacity learner frozen
    (below). So a count computed on lower bounds is at most the count the full data would
    ask for. If that count is above the current count, the policy's own answer and what
    it asks with the bounded signals at 0 (so the bounds, not the trusted signals alone,
    ask for it), the true load needs it too: it is taken, reason ``ScaleUpOnLowerBound``.
    Anything else (equal, fewer, or invalid) is not: the policy's own decision stands, which
    on partial data is a hold (``valid=False``) exactly as before.

    This is the Kubernetes HPA's rule for missing metrics ("Algorithm details",
    https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/): in case of
    a scale-up, pods with missing metrics are assumed to consume 0 % of the desired value,
    and if the recomputed ratio reverses the scale direction or falls within the tolerance
    the controller does not scale. Where upstream would still scale *down* (assuming 100 %
    for the missing pods), we hold: partial data is never low load here.

    Worked number: an HPA at 6 req/s per replica (AverageValue), 4 replicas ready, one
    pod's scrape failing. The three that report carry 30 req/s: partial. On the bound,
    30 / (6 x 4) = 1.25 is outside the 10 % tolerance and ceil(30 / 6) = 5 > 4: scale to 5
    now (the full 40 req/s would ask ceil(40 / 6) = 7, which the next full reading takes).
    Had the three carried 20 req/s, ceil(20 / 6) = 4 = current: hold, as before.

    State. The policy's own state (``State.policy``) stays what the held decision left: a
    lower bound is not a sample, so the forecaster's history, the lead-time errors, the
    KPA's window and the learned capacity never learn it (a bound that read 25 where 33
    arrived would drag the trend down for minutes after). The HPA-shaped part (recorded
    recommendations and scale events) comes from the bounded run: the scale-up is an event
    the rate limits must count, and its recommendation holds the count through the
    scale-down stabilisation window as any other scale-up would. The capacity learner is
    frozen in the bounded run (``learnCapacity`` off there): under overload it reads served
    work per replica as a measurement, and a lower bound of served work would read as a
    lower capacity, asking for *more* replicas than the full data would.
    """
    floor = max(snapshot.current_replicas, decision.replicas)
    if floor >= spec.max_replicas:
        return decision, new_state
    stand_in = dict(snapshot.lower_bounds)
    stand_in.update(snapshot.metrics)  # a trusted value always wins over a bound
    for signal in _WITHHELD_ON_BOUNDS:
        stand_in.pop(signal, None)
    bounded = Snapshot(current_replicas=snapshot.current_replicas,
                       ready_replicas=snapshot.ready_replicas, metrics=stand_in)
    frozen = _learning_frozen(spec)
    up, up_state = policy(bounded, state, frozen, now)
    if not up.valid or up.replicas <= floor:
        return decision, new_state
    # Only what the bounds themselves ask for: with every bounded signal at 0, the least it
    # can be, the trusted signals alone must ask for less. A scale-up they ask for anyway
    # (predictive's TTFT correction, read from a window that still holds the overload from
    # before the newest pod was ready) is the policy's to make on full data, not ours to
    # add while it holds. On ServeGen 14 d, 16 of 22 scale-ups on bounds were of that kind;
    # without this check predictive's starts rose from 16.9 to 17.5 a day, with it to 17.2.
    least = dict(stand_in)
    for name, bound in snapshot.lower_bounds.items():
        if name not in snapshot.metrics:
            least[name] = MetricValue(0.0, bound.observed_at)
    zero, _ = policy(replace(bounded, metrics=least), state, frozen, now)
    if zero.valid and zero.replicas >= up.replicas:
        return decision, new_state
    bounds = ", ".join(f"{name} >= {mv.value:.4g}"
                       for name, mv in sorted(snapshot.lower_bounds.items()))
    message = (f"{bounds} (partial or not yet covered: lower bounds of the load) already "
               f"ask for {up.replicas} > {snapshot.current_replicas}: scaling up; "
               f"{up.message}")
    return (replace(up, reason=Reason.SCALE_UP_ON_LOWER_BOUND, message=message),
            replace(up_state, policy=new_state.policy))


def _learning_frozen(spec: Spec) -> Spec:
    """``spec`` with the capacity learner off, for a run on lower bounds: the estimate
    learned so far plans, and the bound teaches it nothing. A spec without ``capacity``
    must learn (its validation says so), so here its prior is marked given: the bounded
    run's answer is used only to scale up, where the guess rule (``CapacityUnknown``)
    never applies anyway."""
    if spec.policy != PolicyKind.PREDICTIVE or not spec.predictive.learn_capacity:
        return spec
    return replace(spec, predictive=replace(spec.predictive, learn_capacity=False),
                   capacity=replace(spec.capacity, source=CapacitySource.GIVEN))


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
