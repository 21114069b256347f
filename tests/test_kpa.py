"""The Knative-style KPA policy: stable and panic modes, rate limits, delay, holds."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import decide
from autoscaler.core.policies import kpa
from autoscaler.core.policies.kpa import KpaState
from autoscaler.core.spec import Capacity, KpaParams, PolicyKind, Spec
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State

# capacity.concurrency 10 x target utilisation 0.7 = 7 requests in flight per pod.
CAPACITY = Capacity(requests_per_second=4.0, concurrency=10.0)


def make_spec(**kpa_overrides: float) -> Spec:
    return Spec(max_replicas=100, min_replicas=1, capacity=CAPACITY, policy=PolicyKind.KPA,
                sync_period_s=2.0, kpa=KpaParams(**kpa_overrides))


def snap(concurrency: float | None, *, current: int, ready: int | None = None,
         at: float = 0.0) -> Snapshot:
    metrics: dict[str, MetricValue] = (
        {} if concurrency is None else {Signal.CONCURRENCY: MetricValue(concurrency, at)})
    return Snapshot(current_replicas=current,
                    ready_replicas=current if ready is None else ready, metrics=metrics)


def drive(spec: Spec, series: list[tuple[float, float]], *, ready: int,
          state: State | None = None) -> tuple[list[Decision], State]:
    """Feed (time, concurrency) samples with a fixed ready count; current follows decisions."""
    state = state or State()
    current = ready
    out: list[Decision] = []
    for t, c in series:
        d, state = kpa.decide(snap(c, current=current, ready=ready, at=t), state, spec, t)
        current = d.replicas
        out.append(d)
    return out, state


def steady(start: float, stop: float, value: float) -> list[tuple[float, float]]:
    return [(float(t), value) for t in range(int(start), int(stop), 2)]


def warmed_up(spec: Spec, ready: int = 2) -> State:
    """Two pods at a steady 14 in flight for 120 s: past the start-up panic (it ends once
    more than 60 s have passed since t = 0, i.e. at t = 62)."""
    decisions, state = drive(spec, steady(0, 120, 14.0), ready=ready)
    assert decisions[-1].reason == Reason.DESIRED_WITHIN_RANGE
    assert decisions[-1].replicas == 2  # ceil(14 / 7) = 2
    return state


@pytest.mark.parametrize(("threshold", "expected", "reason", "recommendation"), [
    # Panic window (6 s) at t = 120 holds the samples at 116, 118, 120 = 14, 14, 70: mean
    # 98 / 3 = 32.67, ceil(32.67 / 7) = 5; 5 / 2 ready = 250 % >= 200 %, so it panics.
    # Stable window (60 s) holds 29 x 14 + 70 = 476 over 30 samples = 15.87 -> 3 pods.
    # Panic asks for max(3, 5) = 5.
    pytest.param(200.0, 5, Reason.PANIC, 5, id="default threshold panics to 5 pods"),
    # 250 % needed 250 %: still panics (the condition is >=).
    pytest.param(250.0, 5, Reason.PANIC, 5, id="threshold exactly met panics"),
    # With a 300 % threshold 250 % does not panic: the stable window alone asks for 3.
    pytest.param(300.0, 3, Reason.DESIRED_WITHIN_RANGE, 3, id="higher threshold stays stable"),
])
def test_a_step_of_concurrency_panics_or_scales_on_the_stable_window(
    threshold: float, expected: int, reason: Reason, recommendation: int
) -> None:
    spec = make_spec(panic_threshold_percentage=threshold)
    state = warmed_up(spec)
    d, _ = kpa.decide(snap(70.0, current=2, at=120.0), state, spec, 120.0)
    assert (d.replicas, d.reason, d.recommendation) == (expected, reason, recommendation)
    assert d.valid


def test_panic_never_scales_down_until_a_stable_window_passes_without_panic() -> None:
    spec = make_spec()
    state = warmed_up(spec)
    # The step to 70 at t = 120 panics to 5 (see above); then load falls back to 0.
    series = [(120.0, 70.0), *steady(122, 240, 0.0)]
    decisions, _ = drive(spec, series, ready=2, state=state)
    by_time = {t: d for (t, _), d in zip(series, decisions, strict=True)}
    # At t = 122 the panic window (118, 120, 122) = 14, 70, 0 has mean 28 -> 4 pods, and at
    # t = 124 (120, 122, 124) = 70, 0, 0 has mean 23.3 -> 4 pods: 4 / 2 >= 2 both times, so
    # the panic time moves to 124. From t = 126 on the window holds only zeros.
    for t in range(120, 186, 2):
        assert by_time[float(t)].replicas == 5, t
        assert by_time[float(t)].reason == Reason.PANIC
    # Panic ends once more than 60 s have passed since t = 124, i.e. at t = 186; the stable
    # window is all zeros by then and 2 ready pods may fall to floor(2 / 2) = 1.
    assert by_time[186.0].reason != Reason.PANIC
    assert by_time[186.0].replicas == 1


def test_a_fresh_autoscaler_with_several_ready_pods_starts_in_panic() -> None:
    spec = make_spec()
    decisions, _ = drive(spec, steady(0, 70, 0.0), ready=4)
    # Knative starts in panic at the ready count so that lost history cannot scale down.
    assert all(d.replicas == 4 and d.reason == Reason.PANIC for d in decisions[:31])  # t <= 60
    # At t = 62 (> 60 s after t = 0) panic ends; 4 ready may fall to floor(4 / 2) = 2.
    assert decisions[31].replicas == 2
    assert decisions[31].reason == Reason.SCALE_DOWN_LIMIT


@pytest.mark.parametrize(("concurrency", "ready", "overrides", "expected", "reason"), [
    # 5 ready at rate 2 may fall to floor(5 / 2) = 2 even though 0 pods are wanted.
    pytest.param(0.0, 5, {}, 2, Reason.SCALE_DOWN_LIMIT, id="scale down limited to half"),
    # 1 ready pod may fall to floor(1 / 2) = 0, but minReplicas 1 keeps it.
    pytest.param(0.0, 1, {}, 1, Reason.TOO_FEW_REPLICAS, id="min replicas bound"),
    # 126 in flight wants 18 pods (18 / 2 = 900 %, below the 1000 % threshold); rate 1.5 from
    # 2 ready allows ceil(3.0) = 3.
    pytest.param(126.0, 2, {"max_scale_up_rate": 1.5, "panic_threshold_percentage": 1000.0},
                 3, Reason.SCALE_UP_LIMIT, id="scale up limited by the rate"),
    # 1.1 from 3 ready: ceil(3.3) = 4, so it can always grow by at least one pod
    # (18 / 3 = 600 % does not panic).
    pytest.param(126.0, 3, {"max_scale_up_rate": 1.1, "panic_threshold_percentage": 1000.0},
                 4, Reason.SCALE_UP_LIMIT, id="slow rate still grows by one"),
    # 140 in flight wants 20 pods, 20 / 2 = exactly the 1000 % threshold: panics (>=), and
    # 2 ready at the default rate 1000 allow up to 2000, so 20.
    pytest.param(140.0, 2, {"panic_threshold_percentage": 1000.0}, 20, Reason.PANIC,
                 id="ratio exactly at the threshold panics"),
    # No ready pods count as one: 14 in flight -> 2 pods, 2 / 1 >= 2, panic to 2.
    pytest.param(14.0, 0, {}, 2, Reason.PANIC, id="zero ready counts as one"),
    # In panic the rate limit still applies: 700 in flight wants 100 pods, 10 ready at rate
    # 2 allow ceil(20) = 20.
    pytest.param(700.0, 10, {"max_scale_up_rate": 2.0}, 20, Reason.PANIC,
                 id="panic is rate limited too"),
])
def test_rate_limits_bound_each_step(
    concurrency: float, ready: int, overrides: dict[str, float], expected: int, reason: Reason
) -> None:
    spec = make_spec(**overrides)
    # A state that is not panicking and has no samples: only this step counts.
    state = State(policy=KpaState())
    d, _ = kpa.decide(snap(concurrency, current=ready, ready=ready, at=0.0), state, spec, 0.0)
    assert (d.replicas, d.reason) == (expected, reason)


def test_scale_to_zero_only_when_min_replicas_is_zero() -> None:
    spec = replace(make_spec(), min_replicas=0)
    d, _ = kpa.decide(snap(0.0, current=1, at=5.0), State(policy=KpaState()), spec, 5.0)
    assert (d.replicas, d.reason) == (0, Reason.DESIRED_WITHIN_RANGE)


def test_max_replicas_bounds_the_result() -> None:
    spec = replace(make_spec(panic_threshold_percentage=1000.0), max_replicas=3)
    d, _ = kpa.decide(snap(700.0, current=2, at=0.0), State(policy=KpaState()), spec, 0.0)
    assert (d.replicas, d.reason, d.recommendation) == (3, Reason.TOO_MANY_REPLICAS, 100)


def test_scale_down_delay_keeps_the_highest_count_of_the_delay_window() -> None:
    # A 6 s stable window without panic or down-rate limit isolates the delay (10 s).
    spec = make_spec(stable_window_s=6.0, panic_threshold_percentage=1000.0,
                     max_scale_down_rate=1000.0, scale_down_delay_s=10.0)
    series = [(0.0, 35.0), (2.0, 35.0), (4.0, 35.0), (6.0, 7.0), (8.0, 7.0), (10.0, 7.0),
              (12.0, 7.0), (14.0, 7.0), (16.0, 7.0), (18.0, 7.0)]
    decisions, _ = drive(spec, series, ready=5, state=State(policy=KpaState()))
    # Stable means (window of 6 s = the last 3 samples): 35, 35, 35, 25.67, 16.33, 7, ...
    # -> undelayed counts 5, 5, 5, 4, 3, 1, 1, 1, 1, 1 (ceil(mean / 7)).
    assert [d.recommendation for d in decisions] == [5, 5, 5, 4, 3, 1, 1, 1, 1, 1]
    # Delayed = max over counts newer than now - 10 s: at t = 12 the window is (2, 12] ->
    # 5, 4, 3, 1, 1 -> 5; at 14 -> (4, 14] -> 4; at 16 -> (6, 16] -> 3; at 18 -> 1.
    assert [d.replicas for d in decisions] == [5, 5, 5, 5, 5, 5, 5, 4, 3, 1]
    assert decisions[6].reason == Reason.SCALE_DOWN_DELAYED
    assert decisions[9].reason == Reason.DESIRED_WITHIN_RANGE


@pytest.mark.parametrize(("metrics", "reason"), [
    pytest.param({}, Reason.METRICS_MISSING, id="no concurrency sample"),
    pytest.param({Signal.CONCURRENCY: MetricValue(70.0, 100.0)}, Reason.METRICS_STALE,
                 id="sample older than the max age"),
    pytest.param({Signal.CONCURRENCY: MetricValue(float("nan"), 200.0)}, Reason.METRICS_STALE,
                 id="sample is NaN"),
    pytest.param({Signal.REQUEST_RATE: MetricValue(5.0, 200.0)}, Reason.METRICS_MISSING,
                 id="only other signals"),
])
def test_missing_or_stale_concurrency_holds_and_keeps_the_window(
    metrics: dict[str, MetricValue], reason: Reason
) -> None:
    spec = make_spec()
    state = warmed_up(spec)
    s = Snapshot(current_replicas=2, ready_replicas=2, metrics=metrics)
    d, new_state = kpa.decide(s, state, spec, 200.0)
    assert (d.valid, d.replicas, d.reason) == (False, 2, reason)
    assert new_state is state  # the missing sample is not added to the window


def test_the_window_drops_samples_older_than_the_stable_window() -> None:
    spec = make_spec()
    _, state = drive(spec, steady(0, 200, 14.0), ready=2)
    assert isinstance(state.policy, KpaState)
    times = [t for t, _ in state.policy.samples]
    assert times == [float(t) for t in range(140, 200, 2)]  # (198 - 60, 198]: 30 samples


@settings(max_examples=120, deadline=None)
@given(
    lo=st.integers(min_value=0, max_value=5),
    span=st.integers(min_value=0, max_value=20),
    steps=st.lists(
        st.tuples(st.one_of(st.none(), st.floats(min_value=0.0, max_value=5000.0)),
                  st.integers(min_value=0, max_value=40),
                  st.floats(min_value=0.5, max_value=30.0)),
        min_size=1, max_size=60),
    delay=st.sampled_from([0.0, 10.0]),
)
def test_replicas_stay_within_bounds_for_any_metric_sequence(
    lo: int, span: int, steps: list[tuple[float | None, int, float]], delay: float
) -> None:
    hi = max(1, lo + span)
    spec = replace(make_spec(scale_down_delay_s=delay), min_replicas=lo, max_replicas=hi)
    state = State()
    current = lo if lo > 0 else 1
    now = 0.0
    for value, ready_seed, dt in steps:
        now += dt
        ready = min(ready_seed, current)
        d, state = kpa.decide(snap(value, current=current, ready=ready, at=now), state, spec,
                              now)
        if d.valid:
            assert lo <= d.replicas <= hi
        else:
            assert d.replicas == current
        current = d.replicas
        assert lo <= current <= hi


@pytest.mark.parametrize(
    ("rate", "target_rps", "expected"),
    [
        pytest.param(14.0, None, 5, id="capacity rps 4 x 70% = 2.8 per pod: 14 rps needs 5"),
        pytest.param(14.0, 10.0, 2, id="explicit target 10 x 70% = 7 per pod: 14 rps needs 2"),
    ],
)
def test_the_rps_metric_scales_on_request_rate_against_a_per_replica_target(
    rate: float, target_rps: float | None, expected: int
) -> None:
    spec = Spec(max_replicas=20, capacity=Capacity(requests_per_second=4.0, concurrency=500.0),
                policy=PolicyKind.KPA, kpa=KpaParams(metric="rps", target_rps=target_rps))
    snap = Snapshot(current_replicas=1, ready_replicas=1, metrics={
        Signal.REQUEST_RATE: MetricValue(rate, 0.0),
        # A concurrency sample that would give a different answer must be ignored.
        Signal.CONCURRENCY: MetricValue(1.0, 0.0)})
    decision, _ = decide(snap, State(), spec, 0.0)
    assert decision.valid
    assert decision.replicas == expected
    assert "request rate" in decision.message


def test_the_rps_metric_holds_without_a_request_rate() -> None:
    spec = Spec(max_replicas=20, capacity=Capacity(requests_per_second=4.0, concurrency=500.0),
                policy=PolicyKind.KPA, kpa=KpaParams(metric="rps"))
    snap = Snapshot(current_replicas=3, ready_replicas=3,
                    metrics={Signal.CONCURRENCY: MetricValue(100.0, 0.0)})
    decision, _ = decide(snap, State(), spec, 0.0)
    assert (decision.valid, decision.replicas, decision.reason) == (
        False, 3, Reason.METRICS_MISSING)
