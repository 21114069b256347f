"""``hpa``: the Kubernetes HorizontalPodAutoscaler (autoscaling/v2) on External metrics.

A faithful re-implementation of what kube-controller-manager does every sync period
(``reconcileAutoscaler``), for External metric targets read from the snapshot:

1. Seed the recommendation history with the current count on first sight.
2. Pre-checks, before any metric is read: ``spec.replicas == 0`` with ``minReplicas != 0``
   means scaling is disabled (hold); above ``maxReplicas`` go to max; below ``minReplicas``
   go to min (with ``behavior`` set, that rescale is remembered as a scale event).
3. One proposal per metric target (``replica_calculator.go``):

   * ``AverageValue`` (``GetExternalPerPodMetricReplicas``): ratio = usage / (target x
     replicas); outside the tolerance, ceil(usage / target), else the current count.
   * ``Value`` (``GetExternalMetricReplicas``): ratio = usage / target; at 0 replicas
     ceil(ratio) (scale from zero, no tolerance); inside the tolerance the current count;
     else ceil(ratio x *ready* replicas). With 3 replicas of which 1 is ready and a ratio
     of 1.95, that is ceil(1.95) = 2: fewer than the current 3.

   The tolerance test is (1 - scaleDown tolerance) <= ratio <= (1 + scaleUp tolerance),
   inclusive, both 0.1 unless ``behavior.scale{Up,Down}.tolerance`` sets them (k8s 1.33+).
4. The highest proposal wins. If every metric is invalid, hold. If some are invalid, use
   the valid ones only when they do not propose fewer than the current count (upstream:
   an invalid metric plus a proposal below ``spec.replicas`` is an error, no scaling).
5. Behaviour (stabilisation, rate limits, bounds): ``autoscaler.core.behavior``.

Units: upstream works in milli-units (int64). Prometheus-adapter turns a sample into
``int64(value x 1000)`` (truncated) and the target quantity's ``MilliValue()`` rounds *up*.
We do the same, because it decides edge cases: a usage of 1.1004 against a Value target of
1 is 1100 m / 1000 m = ratio 1.1, inside the 10 % tolerance, where the raw float 1.1004
would scale.

What we cannot see: ``scale.status.replicas`` (pods that exist). AverageValue divides by
it upstream; we use ``Snapshot.current_replicas`` (``spec.replicas``), which equals it
whenever the target has settled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

from autoscaler.core import defaults as d
from autoscaler.core.behavior import (
    apply_behavior,
    record_initial_recommendation,
    store_scale_event,
)
from autoscaler.core.spec import MetricTarget, MetricTargetType, Spec
from autoscaler.core.types import Decision, Reason, Signal, Snapshot, State

_INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Relative tolerances of the usage ratio, per direction."""

    scale_down: float = d.HPA_TOLERANCE
    scale_up: float = d.HPA_TOLERANCE

    def is_within(self, ratio: float) -> bool:
        """True when the change is too small to act on (both ends inclusive)."""
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


def tolerances_for(spec: Spec) -> Tolerances:
    """The global tolerance, overridden per direction by ``behavior`` when set there."""
    t = Tolerances()
    b = spec.behavior
    if b is None:
        return t
    if b.scale_down.tolerance is not None:
        t = replace(t, scale_down=b.scale_down.tolerance)
    if b.scale_up.tolerance is not None:
        t = replace(t, scale_up=b.scale_up.tolerance)
    return t


def usage_milli(value: float) -> int:
    """A sample as prometheus-adapter hands it to the HPA: milli-units, truncated.

    1.1004 -> 1100; 0.0009 -> 0.
    """
    return int(value * 1000.0)


def target_milli(value: float) -> int:
    """A target quantity's ``MilliValue()``: the decimal the user wrote, rounded up.

    Decimal(repr(x)) is the shortest decimal that round-trips, i.e. what was written, so
    0.3 gives exactly 300 (not the 300.00000000000006 that float noise could ceil to 301),
    and 0.0001 gives 1.
    """
    return math.ceil(Decimal(repr(value)) * 1000)


def _cap(x: float) -> int:
    # Upstream clamps to int32 before converting.
    return _INT32_MAX if x > _INT32_MAX else math.ceil(x)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One metric target's replica proposal (``computeReplicasForMetric``)."""

    replicas: int
    ratio: float
    within_tolerance: bool


def average_value_replicas(usage_m: int, target_m: int, replicas: int,
                           tol: Tolerances) -> Proposal:
    """``GetExternalPerPodMetricReplicas`` in milli-units.

    Upstream example (TestReplicaCalcScaleUpPerPodCMExternal): 3 replicas, 8600 m against
    2150 m per pod: ratio 8600 / 6450 = 1.33, so ceil(8600 / 2150) = 4.
    """
    if replicas == 0:
        # Go divides by zero into +Inf (NaN for 0/0): never within the tolerance.
        return Proposal(_cap(usage_m / target_m), math.inf, False)
    ratio = usage_m / (target_m * replicas)
    if tol.is_within(ratio):
        return Proposal(replicas, ratio, True)
    return Proposal(_cap(usage_m / target_m), ratio, False)


def value_replicas(usage_m: int, target_m: int, current: int, ready: int,
                   tol: Tolerances) -> Proposal:
    """``GetExternalMetricReplicas`` / ``getUsageRatioReplicaCount`` in milli-units.

    Upstream example (TestReplicaCalcScaleUpCMExternal): 1 ready replica, 8600 m against
    4400 m: ratio 1.95, so ceil(1.95 x 1) = 2.
    """
    ratio = usage_m / target_m
    if current == 0:
        return Proposal(math.ceil(ratio), ratio, False)
    if tol.is_within(ratio):
        return Proposal(current, ratio, True)
    return Proposal(_cap(ratio * ready), ratio, False)


@dataclass(frozen=True, slots=True)
class _Invalid:
    reason: Reason
    message: str


def _read(snapshot: Snapshot, target: MetricTarget, spec: Spec, now: float
          ) -> float | _Invalid:
    value = snapshot.get(target.signal, now, spec.max_metric_age_s)
    if value is not None and math.isfinite(value) and value >= 0:
        return value
    mv = snapshot.metrics.get(target.signal)
    if mv is None or mv.value != mv.value:
        return _Invalid(Reason.METRICS_MISSING, f"metric {target.signal} is missing")
    if not math.isfinite(mv.value) or mv.value < 0:
        return _Invalid(Reason.METRICS_MISSING,
                        f"metric {target.signal} has no usable value ({mv.value!r})")
    return _Invalid(Reason.METRICS_STALE,
                    f"metric {target.signal} is stale: sample {now - mv.observed_at:.0f} s "
                    f"old, more than {spec.max_metric_age_s:.0f} s")


def decide(snapshot: Snapshot, state: State, spec: Spec, now: float) -> tuple[Decision, State]:
    current = snapshot.current_replicas
    state = record_initial_recommendation(state, current, now)

    # Pre-checks (reconcileAutoscaler): no metric is read on these paths.
    if current == 0 and spec.min_replicas != 0:
        return (Decision(replicas=0, reason=Reason.SCALING_DISABLED,
                         message="scaling is disabled since the replica count of the target "
                                 "is zero"), state)
    if current > spec.max_replicas or current < spec.min_replicas:
        bound = spec.max_replicas if current > spec.max_replicas else spec.min_replicas
        reason = (Reason.TOO_MANY_REPLICAS if current > spec.max_replicas
                  else Reason.TOO_FEW_REPLICAS)
        state = store_scale_event(state, spec.behavior, current, bound, now)
        return (Decision(replicas=bound, reason=reason,
                         message=f"current replicas {current} outside [{spec.min_replicas}, "
                                 f"{spec.max_replicas}], setting {bound}"), state)

    tol = tolerances_for(spec)
    best: Proposal | None = None
    best_desc = ""
    invalid: list[_Invalid] = []
    demand: float | None = None
    for target in spec.metrics:
        value = _read(snapshot, target, spec, now)
        if isinstance(value, _Invalid):
            invalid.append(value)
            continue
        u_m, t_m = usage_milli(value), target_milli(target.value)
        if target.type == MetricTargetType.AVERAGE_VALUE:
            p = average_value_replicas(u_m, t_m, current, tol)
            kind = "per replica"
        else:
            p = value_replicas(u_m, t_m, current, snapshot.ready_replicas, tol)
            kind = f"in total, {snapshot.ready_replicas} ready"
        if target.signal == Signal.REQUEST_RATE:
            demand = value
        if best is None or p.replicas > best.replicas:
            best = p
            best_desc = (f"{target.signal} {value:g} against target {target.value:g} {kind} "
                         f"(ratio {p.ratio:.3f}) proposes {p.replicas}")

    if best is None:
        first = invalid[0]
        return (Decision(replicas=current, reason=first.reason, valid=False,
                         message=f"{first.message}: all {len(invalid)} metrics invalid, "
                                 f"holding {current} replicas"), state)
    if invalid and best.replicas < current:
        first = invalid[0]
        return (Decision(replicas=current, reason=first.reason, valid=False,
                         recommendation=best.replicas, demand_rps=demand,
                         message=f"{first.message}: {len(invalid)} of {len(spec.metrics)} "
                                 f"metrics invalid and {best_desc}, fewer than current "
                                 f"{current}; holding"), state)

    out = apply_behavior(best.replicas, current=current, state=state, spec=spec, now=now)
    if out.reason is not None:
        reason = out.reason
    elif best.within_tolerance and out.replicas == current:
        reason = Reason.WITHIN_TOLERANCE
    else:
        reason = Reason.DESIRED_WITHIN_RANGE
    note = f" ({len(invalid)} invalid metrics ignored)" if invalid else ""
    message = f"{best_desc}{note}; {out.message}; desired {out.replicas}"
    return (Decision(replicas=out.replicas, reason=reason, message=message,
                     recommendation=best.replicas, demand_rps=demand), out.state)
