"""The ``hpa`` policy: replica calculation, pre-checks, invalid metrics, sequences over time.

Case ids name the upstream test or function (kubernetes/kubernetes,
pkg/controller/podautoscaler) whose semantics and numbers they re-express. Upstream numbers
are in milli-units; here 8600 m is 8.6.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from autoscaler.core import decide
from autoscaler.core.policies.hpa import (
    Tolerances,
    average_value_replicas,
    target_milli,
    tolerances_for,
    usage_milli,
    value_replicas,
)
from autoscaler.core.spec import (
    Behavior,
    Capacity,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    Spec,
    default_scale_up_rules,
)
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State

AVG, VAL = MetricTargetType.AVERAGE_VALUE, MetricTargetType.VALUE
RATE, QUEUE = Signal.REQUEST_RATE.value, Signal.QUEUE_DEPTH.value
TOL = Tolerances()


_DEFAULT = Behavior()


def hpa_spec(*metrics: MetricTarget, behavior: Behavior | None = _DEFAULT, min_r: int = 1,
             max_r: int = 100) -> Spec:
    """An hpa spec; ``behavior`` defaults to the upstream default rules, None = legacy."""
    return Spec(max_replicas=max_r, min_replicas=min_r, capacity=Capacity(1.0, 1.0),
                policy=PolicyKind.HPA, metrics=metrics, behavior=behavior)


def snap(current: int, values: Mapping[str, float | tuple[float, float]] | None = None, *,
         ready: int | None = None, now: float = 0.0) -> Snapshot:
    """A snapshot; a metric given as (value, observed_at) has its own sample time."""
    metrics = {}
    for k, v in (values or {}).items():
        value, at = v if isinstance(v, tuple) else (v, now)
        metrics[k] = MetricValue(value, at)
    return Snapshot(current_replicas=current,
                    ready_replicas=current if ready is None else ready, metrics=metrics)


# --- replica calculation ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("usage_m", "target_m", "replicas", "expected"),
    [
        pytest.param(8600, 2150, 3, 4,
                     id="TestReplicaCalcScaleUpPerPodCMExternal: 8600/(2150x3)=1.33 -> "
                        "ceil(8600/2150)=4"),
        pytest.param(8600, 2867, 5, 3,
                     id="TestReplicaCalcScaleDownPerPodCMExternal: ceil(8600/2867)="
                        "ceil(2.9997)=3"),
        pytest.param(8600, 2900, 3, 3,
                     id="TestReplicaCalcTolerancePerPodCMExternal: 8600/8700=0.989 holds 3"),
        pytest.param(10900, 1000, 10, 10, id="ratio 1.09 holds"),
        pytest.param(11100, 1000, 10, 12, id="ratio 1.11 scales: ceil(11.1)=12"),
        pytest.param(11000, 1000, 10, 10, id="ratio exactly 1.1 is inside (inclusive)"),
        pytest.param(9000, 1000, 10, 10, id="ratio exactly 0.9 is inside (inclusive)"),
        pytest.param(8900, 1000, 10, 9, id="ratio 0.89 scales down: ceil(8.9)=9"),
        pytest.param(5000, 1000, 0, 5, id="0 replicas: ratio +Inf, ceil(5000/1000)=5"),
    ],
)
def test_average_value_replicas(usage_m: int, target_m: int, replicas: int,
                                expected: int) -> None:
    assert average_value_replicas(usage_m, target_m, replicas, TOL).replicas == expected


@pytest.mark.parametrize(
    ("usage_m", "target_m", "current", "ready", "expected"),
    [
        pytest.param(8600, 4400, 1, 1, 2,
                     id="TestReplicaCalcScaleUpCMExternal: ratio 1.95 x 1 ready -> 2"),
        pytest.param(8600, 4400, 3, 1, 2,
                     id="TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods: 1 of 3 ready "
                        "-> ceil(1.95)=2, not 6"),
        pytest.param(8600, 14334, 5, 5, 3,
                     id="TestReplicaCalcScaleDownCMExternal: 0.59997 x 5 = 2.9999 -> 3"),
        pytest.param(8600, 8888, 3, 3, 3,
                     id="TestReplicaCalcToleranceCMExternal: ratio 0.968 holds 3"),
        pytest.param(20000, 10000, 4, 0, 0,
                     id="getUsageRatioReplicaCount: no ready pods -> ceil(2 x 0) = 0"),
        pytest.param(10900, 10000, 4, 0, 4,
                     id="inside the tolerance the ready count does not matter"),
        pytest.param(25000, 10000, 0, 0, 3,
                     id="current 0: scale from zero to ceil(2.5) = 3, no tolerance"),
        pytest.param(10500, 10000, 0, 0, 2,
                     id="current 0: ratio 1.05 still gives ceil(1.05) = 2"),
    ],
)
def test_value_replicas(usage_m: int, target_m: int, current: int, ready: int,
                        expected: int) -> None:
    assert value_replicas(usage_m, target_m, current, ready, TOL).replicas == expected


def test_milli_units_decide_a_tolerance_edge() -> None:
    # 1.1004 becomes int64(1100.4) = 1100 m; against 1000 m the ratio is exactly 1.1, inside
    # the tolerance, so 10 replicas stay. The raw float ratio 1.1004 would ask for 12.
    assert usage_milli(1.1004) == 1100
    spec = hpa_spec(MetricTarget(QUEUE, VAL, 1.0))
    d, _ = decide(snap(10, {QUEUE: 1.1004}), State(), spec, 0.0)
    assert d.replicas == 10
    assert d.reason == Reason.WITHIN_TOLERANCE


@pytest.mark.parametrize(
    ("value", "milli"),
    [pytest.param(0.3, 300, id="0.3 -> 300 m exactly"),
     pytest.param(0.0001, 1, id="0.0001 -> MilliValue rounds up to 1 m"),
     pytest.param(2.5, 2500, id="2.5 -> 2500 m")],
)
def test_target_milli_rounds_up_the_written_decimal(value: float, milli: int) -> None:
    assert target_milli(value) == milli


def test_per_direction_tolerance_from_behavior() -> None:
    # HPAScalingRules.tolerance: scale-up 0.02 lets ratio 1.05 scale, scale-down 0.2
    # holds ratio 0.85.
    up = ScalingRules(0, default_scale_up_rules().policies, tolerance=0.02)
    down = ScalingRules(300, (ScalingPolicy(ScalingPolicyType.PERCENT, 100, 15),),
                        tolerance=0.2)
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0), behavior=Behavior(up, down))
    tol = tolerances_for(spec)
    assert (tol.scale_up, tol.scale_down) == (0.02, 0.2)
    d_up, _ = decide(snap(10, {RATE: 105.0}), State(), spec, 0.0)
    assert d_up.replicas == 11  # ceil(105 / 10)
    d_down, _ = decide(snap(10, {RATE: 85.0}), State(), spec, 0.0)
    assert d_down.replicas == 10
    assert d_down.reason == Reason.WITHIN_TOLERANCE
    # Without behaviour, the global 0.1 both ways: 1.05 holds.
    d_legacy, _ = decide(snap(10, {RATE: 105.0}), State(),
                         hpa_spec(MetricTarget(RATE, AVG, 10.0)), 0.0)
    assert d_legacy.replicas == 10


def test_the_highest_proposal_wins_and_demand_is_reported() -> None:
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0), MetricTarget(QUEUE, VAL, 5.0))
    # rate: ceil(50 / 10) = 5; queue: ratio 30/5 = 6 x 4 ready = 24 -> capped by the
    # default scale-up rate max(4 + 4, 4 x 2) = 8.
    d, _ = decide(snap(4, {RATE: 50.0, QUEUE: 30.0}), State(), spec, 0.0)
    assert d.recommendation == 24
    assert d.replicas == 8
    assert d.reason == Reason.SCALE_UP_LIMIT
    assert d.demand_rps == 50.0
    assert QUEUE in d.message and "24" in d.message


# --- pre-checks (reconcileAutoscaler) ------------------------------------------------------

@pytest.mark.parametrize(
    ("current", "min_r", "max_r", "expected", "reason"),
    [
        pytest.param(0, 1, 10, 0, Reason.SCALING_DISABLED,
                     id="spec.replicas 0 and minReplicas 1: scaling disabled"),
        pytest.param(12, 1, 10, 10, Reason.TOO_MANY_REPLICAS, id="current above max -> max"),
        pytest.param(1, 3, 10, 3, Reason.TOO_FEW_REPLICAS, id="current below min -> min"),
    ],
)
def test_pre_checks_ignore_metrics(current: int, min_r: int, max_r: int, expected: int,
                                   reason: Reason) -> None:
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0), min_r=min_r, max_r=max_r)
    d, state = decide(snap(current, {RATE: 55.0}), State(), spec, 0.0)
    assert (d.replicas, d.reason, d.valid) == (expected, reason, True)
    # Seeded, but no recommendation recorded from metrics.
    assert state.recommendations == ((0.0, current),)


def test_a_pre_check_rescale_is_a_scale_event_with_behavior_only() -> None:
    _, with_b = decide(snap(12), State(), hpa_spec(MetricTarget(RATE, AVG, 10.0), max_r=10), 0.0)
    assert with_b.scale_down_events == ((0.0, 2),)
    _, legacy = decide(snap(12), State(),
                       hpa_spec(MetricTarget(RATE, AVG, 10.0), max_r=10, behavior=None), 0.0)
    assert legacy.scale_down_events == ()


def test_scale_to_zero_target_with_min_zero_scales_from_zero() -> None:
    spec = hpa_spec(MetricTarget(QUEUE, VAL, 4.0), min_r=0)
    d, _ = decide(snap(0, {QUEUE: 10.0}), State(), spec, 0.0)
    assert d.replicas == 3  # ceil(10 / 4) = 3, under the default up limit max(0 + 4, 0) = 4


# --- missing, stale, partial ------------------------------------------------------------------

def test_all_metrics_missing_holds_and_only_seeds_state() -> None:
    d, state = decide(snap(5), State(), hpa_spec(MetricTarget(RATE, AVG, 10.0)), 0.0)
    assert (d.replicas, d.valid, d.reason) == (5, False, Reason.METRICS_MISSING)
    assert state == State(recommendations=((0.0, 5),))


def test_a_stale_metric_is_told_apart_from_a_missing_one() -> None:
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0))
    d, _ = decide(snap(5, {RATE: (1.0, 900.0)}, now=1000.0), State(), spec, 1000.0)
    assert (d.replicas, d.valid, d.reason) == (5, False, Reason.METRICS_STALE)
    assert "100 s old" in d.message


def test_a_nan_metric_counts_as_missing() -> None:
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0))
    d, _ = decide(snap(5, {RATE: float("nan")}), State(), spec, 0.0)
    assert (d.valid, d.reason) == (False, Reason.METRICS_MISSING)


@pytest.mark.parametrize(
    ("rate", "expected", "valid"),
    [
        pytest.param(100.0, 10, True,
                     id="TestScaleUpOneMetricInvalid: the valid metric scales up 5 -> 10"),
        pytest.param(10.0, 5, False,
                     id="computeReplicasForMetrics: invalid + proposal 1 < 5: no scaling"),
        pytest.param(50.0, 5, True, id="invalid + proposal equal to current: proceeds"),
    ],
)
def test_partial_metrics_scale_up_only(rate: float, expected: int, valid: bool) -> None:
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0), MetricTarget(QUEUE, VAL, 5.0))
    d, _ = decide(snap(5, {RATE: rate}), State(), spec, 0.0)
    assert (d.replicas, d.valid) == (expected, valid)
    if not valid:
        assert d.reason == Reason.METRICS_MISSING


# --- sequences over time --------------------------------------------------------------------

def run(spec: Spec, rates: Sequence[float | None], current: int, dt: float = 15.0
        ) -> list[Decision]:
    """Feed one rate per sync period to a target that becomes ready at once."""
    state, out = State(), []
    for i, rate in enumerate(rates):
        now = i * dt
        values: dict[str, float | tuple[float, float]] = {} if rate is None else {RATE: rate}
        d, state = decide(snap(current, values, now=now), state, spec, now)
        out.append(d)
        current = d.replicas
    return out


def test_spike_then_drop_scales_down_only_after_the_window_then_by_policy() -> None:
    # AverageValue 10 req/s per replica; scale-down at most 2 pods per 60 s.
    down = ScalingRules(300, (ScalingPolicy(ScalingPolicyType.PODS, 2, 60),))
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0), behavior=Behavior(scale_down=down))
    rates: Sequence[float | None] = [20.0, 100.0, 100.0] + [20.0] * 27
    reps = [d.replicas for d in run(spec, rates, current=2)]
    # t=0: ratio 20/20 = 1 holds 2. t=15: ceil(100/10) = 10, limited to max(2+4, 2x2) = 6.
    # t=30: the t=15 event is exactly 15 s old, out; limit max(6+4, 12) -> 10.
    # t=45..: proposals 2, but the down window holds the 10 recorded at t=15 and t=30 until
    # t=330 (the t=30 sample is then exactly 300 s old). Then Pods 2 per 60 s: 8 at t=330,
    # held until the t=330 event is exactly 60 s old at t=390: 6; then 4 at t=450.
    assert reps[:3] == [2, 6, 10]
    t = {i * 15: r for i, r in enumerate(reps)}
    assert all(t[s] == 10 for s in range(30, 330, 15))
    assert [t[s] for s in (330, 345, 375, 390, 435)] == [8, 8, 8, 6, 6]


def test_legacy_path_holds_300s_then_drops_at_once() -> None:
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0), behavior=None)
    rates: Sequence[float | None] = [100.0, 20.0] + [20.0] * 22
    reps = [d.replicas for d in run(spec, rates, current=10)]
    # The 10 recorded at t=0 counts while t - 300 <= 0 (legacy: at-or-after), so 10 through
    # t=300 and 2 from t=315, with no rate limit on the way down.
    t = {i * 15: r for i, r in enumerate(reps)}
    assert t[300] == 10
    assert t[315] == 2


def test_missing_data_in_a_sequence_never_scales_down() -> None:
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0), behavior=Behavior(
        scale_down=ScalingRules(0, (ScalingPolicy(ScalingPolicyType.PERCENT, 100, 15),))))
    ds = run(spec, [80.0, None, None, 10.0], current=8)
    assert [d.replicas for d in ds] == [8, 8, 8, 1]
    assert [d.valid for d in ds] == [True, False, False, True]


def test_decide_is_deterministic() -> None:
    spec = hpa_spec(MetricTarget(RATE, AVG, 10.0))
    s = snap(3, {RATE: 77.0})
    state = State(recommendations=((-20.0, 4),), scale_up_events=((-5.0, 1),))
    assert decide(s, state, spec, 0.0) == decide(s, state, spec, 0.0)
