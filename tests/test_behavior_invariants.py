"""Invariants of the ``hpa`` policy and its behaviour, over random specs and metric series.

The rate-limit check uses a slow, obviously-correct reference: it keeps the *full* history
of replica counts and reads the count at the start of each policy period straight from it
(the count after every change at or before ``now - period``), instead of the event lists
the fast code keeps. Upstream overwrites events of one direction older than that
direction's longest period (``storeScaleEvent``), which only matters when the *other*
direction reads them over a longer period; the generated behaviours therefore give both
directions the same longest period, where the two must agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import decide
from autoscaler.core.behavior import scale_down_limit, scale_up_limit
from autoscaler.core.spec import (
    Behavior,
    Capacity,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
    Spec,
)
from autoscaler.core.types import MetricValue, Signal, Snapshot, State

DT = 15.0
RATE, QUEUE = Signal.REQUEST_RATE.value, Signal.QUEUE_DEPTH.value
PERIODS = (15, 30, 60, 120)


@st.composite
def scaling_rules(draw: st.DrawFn, longest: int) -> ScalingRules:
    n = draw(st.integers(1, 3))
    policies = [ScalingPolicy(draw(st.sampled_from(ScalingPolicyType)),
                              draw(st.integers(1, 150)), longest)]
    for _ in range(n - 1):
        policies.append(ScalingPolicy(draw(st.sampled_from(ScalingPolicyType)),
                                      draw(st.integers(1, 150)),
                                      draw(st.sampled_from([p for p in PERIODS if p <= longest]))))
    return ScalingRules(draw(st.sampled_from((0, 15, 45, 120, 300))), tuple(policies),
                        draw(st.sampled_from(SelectPolicy)))


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    min_r = draw(st.integers(0, 4))
    max_r = draw(st.integers(max(min_r, 1), 40))
    behavior: Behavior | None = None
    if draw(st.booleans()):
        longest = draw(st.sampled_from(PERIODS))
        behavior = Behavior(draw(scaling_rules(longest)), draw(scaling_rules(longest)))
    return Spec(max_replicas=max_r, min_replicas=min_r, capacity=Capacity(1.0, 1.0),
                policy=PolicyKind.HPA, behavior=behavior,
                metrics=(MetricTarget(RATE, MetricTargetType.AVERAGE_VALUE, 10.0),
                         MetricTarget(QUEUE, MetricTargetType.VALUE, 4.0)))


# A step's metric: a value, None (absent) or ("stale", value).
metric = st.one_of(st.floats(0, 500), st.none(), st.tuples(st.just("stale"), st.floats(0, 500)))


@dataclass
class Step:
    now: float
    current: int
    state: State
    replicas: int
    valid: bool
    invalid_input: bool


def simulate(spec: Spec, start: int, series: list[tuple[object, object]]) -> list[Step]:
    state, current, steps = State(), start, []
    for i, (rate, queue) in enumerate(series):
        now = i * DT
        metrics = {}
        invalid = False
        for name, v in ((RATE, rate), (QUEUE, queue)):
            if v is None:
                invalid = True
            elif isinstance(v, tuple):
                invalid = True
                metrics[name] = MetricValue(float(v[1]), now - spec.max_metric_age_s - 1)
            else:
                assert isinstance(v, float)
                metrics[name] = MetricValue(v, now)
        snap = Snapshot(current_replicas=current, ready_replicas=current, metrics=metrics)
        d, new_state = decide(snap, state, spec, now)
        steps.append(Step(now, current, state, d.replicas, d.valid, invalid))
        state, current = new_state, d.replicas
    return steps


def count_at(history: list[tuple[float, int]], t: float) -> int:
    """Replicas in effect at time ``t``: after every change at or before ``t``."""
    value = history[0][1]
    for when, replicas in history:
        if when <= t:
            value = replicas
    return value


def reference_limit(rules: ScalingRules, current: int, history: list[tuple[float, int]],
                    now: float, up: bool) -> int:
    if rules.select_policy == SelectPolicy.DISABLED:
        return current
    proposals = []
    for p in rules.policies:
        start = count_at(history, now - p.period_seconds)
        if p.type == ScalingPolicyType.PODS:
            proposals.append(start + p.value if up else start - p.value)
        else:
            proposals.append(math.ceil(start * (1 + p.value / 100)) if up
                             else int(start * (1 - p.value / 100)))
    most_permissive = max if up else min
    least = min if up else max
    return (most_permissive if rules.select_policy == SelectPolicy.MAX else least)(proposals)


series_st = st.lists(st.tuples(metric, metric), min_size=1, max_size=40)


@settings(max_examples=400, deadline=None)
@given(spec=specs(), start_frac=st.floats(0, 1), series=series_st)
def test_bounds_limits_and_invalid_metrics(spec: Spec, start_frac: float,
                                           series: list[tuple[object, object]]) -> None:
    lo = max(spec.min_replicas, 1)
    start = lo + round(start_frac * (spec.max_replicas - lo))
    steps = simulate(spec, start, series)
    # Full history of counts; a start long before t=0 so that count_at(t<0) is `start`.
    history: list[tuple[float, int]] = [(-1e9, start)]
    for s in steps:
        assert spec.min_replicas <= s.replicas <= spec.max_replicas
        if s.invalid_input:
            assert s.replicas >= s.current, "invalid metrics must never lower replicas"
        if not s.valid:
            assert s.replicas == s.current
        b = spec.behavior
        if b is not None:
            fast_up = scale_up_limit(s.current, s.state, b.scale_up, s.now)
            fast_down = scale_down_limit(s.current, s.state, b.scale_down, s.now)
            assert fast_up == reference_limit(b.scale_up, s.current, history, s.now, True)
            assert fast_down == reference_limit(b.scale_down, s.current, history, s.now, False)
            if s.replicas > s.current:
                assert s.replicas <= max(fast_up, s.current)
            if s.replicas < s.current:
                assert s.replicas >= min(fast_down, s.current)
        elif s.replicas > s.current:
            assert s.replicas <= max(2 * s.current, 4)
        if s.replicas != s.current:
            history.append((s.now, s.replicas))


@settings(max_examples=60, deadline=None)
@given(spec=specs(), series=series_st)
def test_decide_is_deterministic(spec: Spec, series: list[tuple[object, object]]) -> None:
    lo = max(spec.min_replicas, 1)
    assert simulate(spec, lo, series) == simulate(spec, lo, series)
