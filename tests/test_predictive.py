"""Our predictive policy: forecast-led scale-up, reactive corrections, holds and bounds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.policies import predictive
from autoscaler.core.policies.predictive import PredictiveState
from autoscaler.core.spec import (
    Behavior,
    Capacity,
    PolicyKind,
    PredictiveParams,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    Spec,
)
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.forecast import Forecast

# 4 req/s per replica at the SLO, planned at 80 %: 3.2 req/s per replica.
CAPACITY = Capacity(requests_per_second=4.0, concurrency=8.0)
PER_REPLICA = 3.2

# Scale down at once on the behaviour side, so tests see the policy's own holds.
NO_DOWN_STABILIZATION = Behavior(
    scale_down=ScalingRules(
        stabilization_window_seconds=0,
        policies=(ScalingPolicy(ScalingPolicyType.PERCENT, 100, 15),)))


def fixed_params(**kw: object) -> PredictiveParams:
    """Predictive settings on a known capacity, without the scale-down band or cold-start
    hold, so the planning arithmetic shows on its own."""
    base = PredictiveParams(scale_down_band=1.0, learn_capacity=False, keep_idle_cold_starts=0.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def make_spec(*, scale_down_window_s: float = 0.0, **overrides: object) -> Spec:
    # These tests pin the planning arithmetic on a known capacity: learning it from the
    # fleet (test_capacity.py), the scale-down band and the cold-start hold are off here.
    base = Spec(max_replicas=200, min_replicas=1, capacity=CAPACITY,
                policy=PolicyKind.PREDICTIVE, behavior=NO_DOWN_STABILIZATION,
                predictive=fixed_params(target_utilization=0.8,
                                        scale_down_window_s=scale_down_window_s))
    return replace(base, **overrides)  # type: ignore[arg-type]


def snap(*, at: float, current: int, ready: int | None = None, rate: float | None = None,
         queue: float | None = 0.0, ttft: float | None = 0.5) -> Snapshot:
    metrics: dict[str, MetricValue] = {}
    for sig, value in ((Signal.REQUEST_RATE, rate), (Signal.QUEUE_DEPTH, queue),
                       (Signal.TTFT_P99, ttft)):
        if value is not None:
            metrics[sig] = MetricValue(value, at)
    return Snapshot(current_replicas=current,
                    ready_replicas=current if ready is None else ready, metrics=metrics)


def run(spec: Spec, rates: list[float], *, start: float = 0.0, current: int = 1,
        state: State | None = None) -> tuple[list[Decision], State, int]:
    """One decision per sync period; replicas become ready at once (a policy-level test)."""
    state = state or State()
    out: list[Decision] = []
    for i, r in enumerate(rates):
        t = start + i * spec.sync_period_s
        d, state = predictive.decide(snap(at=t, current=current, rate=r), state, spec, t)
        current = d.replicas
        out.append(d)
    return out, state, current


def test_a_rising_ramp_is_served_before_the_load_arrives() -> None:
    spec = make_spec()
    # 10 req/s growing by 0.1 req/s every second (1.5 per 15 s step), for 10 minutes.
    def rate(t: float) -> float:
        return 10.0 + 0.1 * t

    rates = [rate(15.0 * i) for i in range(41)]
    decisions, _, _ = run(spec, rates)
    for i in range(20, 41):  # once the trend has been learned (5 minutes)
        d = decisions[i]
        now = 15.0 * i
        assert d.demand_rps == pytest.approx(rate(now))
        # It plans for more than it sees now ...
        assert d.forecast_rps is not None and d.forecast_rps > rate(now) + 5.0
        assert d.replicas > math.ceil(rate(now) / PER_REPLICA)
        # ... enough that the replicas asked for now carry the demand of the moment they
        # can serve (now + 120 s cold start) at full capacity: 4 req/s each.
        assert d.replicas >= math.ceil(rate(now + spec.cold_start_s) / 4.0)
        assert d.reason == Reason.FORECAST


def test_a_steady_demand_asks_for_exactly_what_it_needs() -> None:
    # 9.6 req/s = 3 x 3.2: exactly three replicas (float noise must not make it four).
    decisions, _, current = run(make_spec(), [9.6] * 30, current=5)
    assert current == 3
    assert decisions[-1].forecast_rps == pytest.approx(9.6)
    assert "needs 3 replicas at 3.2 req/s each" in decisions[-1].message


@pytest.mark.parametrize(("queue", "rate", "expected", "reason"), [
    pytest.param(0.0, 9.0, 3, Reason.FORECAST, id="no queue"),
    # A replica asked for now serves from one cold start (120 s) on, so a backlog must be
    # gone within 30 s of that: by 150 s. 3 ready at 4 req/s carrying 9 req/s have 3 req/s
    # spare, 450 requests by then; only what they leave asks for replicas that serve the
    # last 30 s at 4 req/s (120 requests each).
    pytest.param(3.0, 9.0, 3, Reason.FORECAST, id="3 queued: the spare drains them"),
    pytest.param(120.0, 9.0, 3, Reason.FORECAST,
                 id="120 queued: the spare drains them in 40 s, before any new replica"),
    pytest.param(450.0, 9.0, 3, Reason.FORECAST, id="450 queued: exactly the spare by 150 s"),
    pytest.param(480.0, 9.0, 4, Reason.BACKLOG_DRAIN,
                 id="480 queued: 30 left at 150 s -> ceil(30 / 120) = 1 more"),
    # 930 queued: 480 left, ceil(480 / 120) = 4 more on a shared queue; but the backlog
    # stays with the 3 ready that hold it, and past 3 + ceil(9 / 4) = 6 (others carrying
    # every arrival) no replica drains it sooner.
    pytest.param(930.0, 9.0, 6, Reason.BACKLOG_DRAIN,
                 id="930 queued: 4 more on a shared queue, 3 + ceil(9 / 4) = 6 help"),
    # 15 req/s: the forecast needs ceil(15 / 3.2) = 5; the 3 ready fall 3 req/s behind for
    # 150 s: 60 + 15 x 150 - 12 x 150 = 510 left -> ceil(510 / 120) = 5 more: 8 in all,
    # which cover the forecast's 5 as well (counted once, not 5 + 5); 3 + ceil(15 / 4) = 7
    # is the most that drains sooner (and the HPA's default scale-up limit, 4 pods or
    # 100 % per 15 s, the larger: max(3 + 4, 6) = 7).
    pytest.param(60.0, 15.0, 7, Reason.BACKLOG_DRAIN,
                 id="60 queued at 15 req/s: grows until new replicas serve -> 7"),
])
def test_a_backlog_adds_replicas_to_drain_it(queue: float, rate: float, expected: int,
                                              reason: Reason) -> None:
    # 9 req/s needs ceil(9 / 3.2) = 3 replicas before the backlog.
    d, _ = predictive.decide(snap(at=0.0, current=3, rate=rate, queue=queue), State(),
                             make_spec(), 0.0)
    assert (d.replicas, d.reason) == (expected, reason)


@pytest.mark.parametrize(("ttft", "current", "ready", "expected", "reason"), [
    # Control: TTFT within the SLO, 3 req/s needs 1 replica, so 10 fall to 1.
    pytest.param(0.5, 10, 10, 1, Reason.FORECAST, id="within SLO scales down"),
    # TTFT p99 3 s > 2 s on two readings in a row: no scale-down, one more than the 10 ready.
    pytest.param(3.0, 10, 10, 11, Reason.SLO_CORRECTION, id="slip adds one replica"),
    # Two replicas are still starting (12 asked, 10 ready): they are the correction, so it
    # holds 12 rather than asking for a 13th every step of the cold start.
    pytest.param(3.0, 12, 10, 12, Reason.SLO_CORRECTION, id="slip while replicas start holds"),
    # Exactly at the SLO is not a slip.
    pytest.param(2.0, 10, 10, 1, Reason.FORECAST, id="exactly at the SLO is no slip"),
])
def test_ttft_above_the_slo_blocks_scale_down(
    ttft: float, current: int, ready: int, expected: int, reason: Reason
) -> None:
    state = State()
    for t in (0.0, 15.0):
        s = snap(at=t, current=current, ready=ready, rate=3.0, ttft=ttft)
        d, state = predictive.decide(s, state, make_spec(), t)
    assert (d.replicas, d.reason) == (expected, reason)


@pytest.mark.parametrize(("ttfts", "expected"), [
    # One slipping reading forbids scaling down (10 held, not 1) but asks for nothing more.
    pytest.param((3.0,), 10, id="one slip holds"),
    # A good reading between two slips restarts the count.
    pytest.param((3.0, 0.5, 3.0), 10, id="slips broken by a good reading hold"),
    pytest.param((3.0, 3.0), 11, id="two slips in a row add one"),
])
def test_slo_correction_asks_for_a_replica_from_the_second_slip(
        ttfts: tuple[float, ...], expected: int) -> None:
    # With TTFT at 0.5 s in between, 3 req/s needs 1 replica: the step with the good reading
    # releases nothing here only because current stays 10 in these snapshots.
    state = State()
    d = None
    for i, ttft in enumerate(ttfts):
        t = 15.0 * i
        d, state = predictive.decide(snap(at=t, current=10, rate=3.0, ttft=ttft), state,
                                     make_spec(), t)
    assert d is not None and d.replicas == expected
    assert d.reason == Reason.SLO_CORRECTION


def test_ttft_p95_is_read_when_p99_is_absent() -> None:
    s = Snapshot(current_replicas=10, ready_replicas=10, metrics={
        Signal.REQUEST_RATE: MetricValue(3.0, 0.0), Signal.QUEUE_DEPTH: MetricValue(0.0, 0.0),
        Signal.TTFT_P95: MetricValue(2.5, 0.0)})
    # One slipping reading: the 10 are held (3 req/s alone would need 1).
    d, _ = predictive.decide(s, State(), make_spec(), 0.0)
    assert (d.replicas, d.reason) == (10, Reason.SLO_CORRECTION)


@pytest.mark.parametrize(("metrics", "reason"), [
    pytest.param({}, Reason.METRICS_MISSING, id="nothing at all"),
    pytest.param({Signal.QUEUE_DEPTH: MetricValue(0.0, 100.0)}, Reason.METRICS_MISSING,
                 id="queue but no request rate"),
    pytest.param({Signal.REQUEST_RATE: MetricValue(50.0, 30.0)}, Reason.METRICS_STALE,
                 id="request rate older than 60 s"),
])
def test_missing_or_stale_request_rate_holds(
    metrics: dict[str, MetricValue], reason: Reason
) -> None:
    spec = make_spec()
    _, state, _ = run(spec, [9.0] * 5, current=3)
    s = Snapshot(current_replicas=3, ready_replicas=3, metrics=metrics)
    d, new_state = predictive.decide(s, state, spec, 100.0)
    assert (d.valid, d.replicas, d.reason) == (False, 3, reason)
    if Signal.QUEUE_DEPTH not in metrics or not predictive.QUEUE_THROUGH_HOLDS:
        assert new_state is state
        return
    # Only the queue's reading is remembered (``QUEUE_THROUGH_HOLDS``): nothing is learned.
    old, new = state.policy, new_state.policy
    assert isinstance(old, predictive.PredictiveState)
    assert isinstance(new, predictive.PredictiveState)
    assert new.last_queue == (100.0, 0.0) and new.queue_recent[-1] == (100.0, 0.0)
    assert replace(new, last_queue=old.last_queue, queue_recent=old.queue_recent) == old
    assert replace(new_state, policy=old) == state


@pytest.mark.parametrize(("rate", "queue", "ttft", "expected", "reason"), [
    pytest.param(3.0, 0.0, 0.5, 1, Reason.FORECAST, id="all signals: scales down"),
    pytest.param(3.0, None, 0.5, 10, Reason.METRICS_MISSING, id="no queue: holds"),
    pytest.param(3.0, 0.0, None, 10, Reason.METRICS_MISSING, id="no TTFT: holds"),
    # 64 req/s needs ceil(64 / 3.2) = 20; 10 -> 20 is within the 100 % per 15 s limit.
    pytest.param(64.0, None, None, 20, Reason.FORECAST, id="no queue nor TTFT: still scales up"),
])
def test_partial_data_only_scales_up(
    rate: float, queue: float | None, ttft: float | None, expected: int, reason: Reason
) -> None:
    s = snap(at=0.0, current=10, rate=rate, queue=queue, ttft=ttft)
    d, _ = predictive.decide(s, State(), make_spec(), 0.0)
    assert (d.valid, d.replicas, d.reason) == (True, expected, reason)


def test_scale_down_waits_for_the_scale_down_window() -> None:
    spec = make_spec(scale_down_window_s=120.0)
    # 32 req/s (10 replicas) for 5 minutes, then 3.2 req/s (1 replica).
    rates = [32.0] * 20 + [3.2] * 20
    decisions, _, _ = run(spec, rates, current=10)
    drop = 20  # index of the first low sample, t = 300 s
    # Recommendations newer than now - 120 s still include a 10 while the last high one
    # (t = 285) is inside: 285 > now - 120 holds for now < 405, i.e. t = 300 .. 390.
    for i in range(drop, drop + 7):
        assert decisions[i].replicas == 10, i
        assert decisions[i].reason == Reason.FORECAST_HOLD
    assert decisions[drop + 7].replicas < 10  # t = 405 s: the window no longer holds a 10
    assert max(d.replicas for d in decisions[drop + 7:]) < 10


def test_the_behavior_scale_down_stabilization_also_applies() -> None:
    spec = replace(make_spec(), behavior=Behavior())  # HPA defaults: 300 s down window
    decisions, _, _ = run(spec, [32.0] * 4 + [3.2] * 4, current=10)
    assert [d.replicas for d in decisions] == [10] * 8
    assert decisions[-1].reason == Reason.SCALE_DOWN_STABILIZED


def test_decisions_are_deterministic() -> None:
    spec = make_spec(scale_down_window_s=60.0)
    rates = [10 + 8 * math.sin(i / 5) + (i % 7) for i in range(120)]
    a = run(spec, rates, current=4)
    b = run(spec, rates, current=4)
    assert a[0] == b[0]
    assert a[1] == b[1]


def test_history_keeps_only_history_seconds() -> None:
    spec = make_spec()
    _, state, _ = run(spec, [5.0] * 200)
    assert isinstance(state.policy, PredictiveState)
    times = [t for t, _ in state.policy.history]
    # Last sample at 199 x 15 = 2985 s; kept are those newer than 2985 - 1800 = 1185 s.
    assert times[0] == 1200.0 and times[-1] == 2985.0 and len(times) == 120


def test_an_unknown_forecaster_is_a_spec_error_naming_the_field() -> None:
    # Caught when the spec is built (spec validation), before any decision runs.
    with pytest.raises(SpecError) as err:
        replace(make_spec(), predictive=PredictiveParams(forecaster="prophet"))
    assert err.value.field == "predictive.forecaster"
    assert "auto" in err.value.allowed and "trend" in err.value.allowed


def test_the_message_states_forecast_quantile_lead_time_and_per_replica_rate() -> None:
    d, _ = predictive.decide(snap(at=0.0, current=3, rate=9.0), State(), make_spec(), 0.0)
    assert d.message.startswith("forecast 9.0 req/s (p90 9.0) over the next 135 s")
    assert "needs 3 replicas at 3.2 req/s each" in d.message
    assert d.forecast_rps == pytest.approx(9.0) and d.demand_rps == pytest.approx(9.0)


@settings(max_examples=100, deadline=None)
@given(
    lo=st.integers(min_value=0, max_value=5),
    span=st.integers(min_value=0, max_value=30),
    steps=st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e4)),
            st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e5)),
            st.one_of(st.none(), st.floats(min_value=0.0, max_value=60.0)),
            st.integers(min_value=0, max_value=50),
            st.sampled_from([15.0, 15.0, 15.0, 30.0, 3600.0]),
        ),
        min_size=1, max_size=40),
    default_behavior=st.booleans(),
)
def test_replicas_stay_within_bounds_for_any_metric_sequence(
    lo: int, span: int, steps: list[tuple[float | None, float | None, float | None, int, float]],
    default_behavior: bool,
) -> None:
    hi = max(1, lo + span)
    spec = replace(make_spec(scale_down_window_s=60.0), min_replicas=lo, max_replicas=hi)
    if default_behavior:
        spec = replace(spec, behavior=Behavior())
    state = State()
    current = max(1, lo)
    now = 0.0
    for rate, queue, ttft, ready_seed, dt in steps:
        now += dt
        s = snap(at=now, current=current, ready=min(ready_seed, current), rate=rate,
                 queue=queue, ttft=ttft)
        d, state = predictive.decide(s, state, spec, now)
        if d.valid:
            assert lo <= d.replicas <= hi
        else:
            assert d.replicas == current
        current = d.replicas


# --- named forecasters (autoscaler.forecast) behind the seam --------------------------------


def named(forecaster: str) -> Spec:
    return replace(make_spec(), predictive=fixed_params(
        target_utilization=0.8, scale_down_window_s=0.0, forecaster=forecaster))


def run_until(spec: Spec, rate_at: Callable[[float], float], *, start: float, end: float,
              current: int = 3) -> tuple[list[Decision], list[State]]:
    state, out, states = State(), [], []
    t = start
    while t < end:
        d, state = predictive.decide(snap(at=t, current=current, rate=rate_at(t)), state,
                                     spec, t)
        current = d.replicas
        out.append(d)
        states.append(state)
        t += spec.sync_period_s
    return out, states


def test_a_named_forecaster_plans_from_its_own_model_once_history_suffices() -> None:
    # 9.6 req/s (3 replicas at 3.2) for 7 hours, then 3.2 req/s from 7:00 on. The ``last``
    # model forecasts the last completed 60-s bin, 9.6, so the first step of the drop still
    # plans 3 replicas; the trend forecaster (alpha 0.5) would already plan for ~6.4.
    drop = 7 * 3600.0

    def rate(t: float) -> float:
        return 9.6 if t < drop else 3.2

    ds, _ = run_until(named("last"), rate, start=0.0, end=drop + 15.0)
    assert ds[-1].forecast_model == "last->last"
    assert ds[-1].forecast_rps == pytest.approx(9.6)
    assert ds[-1].replicas == 3
    assert "model last->last" in ds[-1].message
    trend_ds, _ = run_until(make_spec(), rate, start=0.0, end=drop + 15.0)
    assert trend_ds[-1].forecast_model == "trend"
    assert trend_ds[-1].forecast_rps is not None and trend_ds[-1].forecast_rps < 8.0


def test_short_history_falls_back_to_trend_and_counts_each_fallback() -> None:
    ds, states = run_until(named("auto"), lambda t: 5.0 + (t % 600) / 100, start=0.0,
                           end=3600.0)
    assert all(d.forecast_model == "trend (fallback)" for d in ds)
    last = states[-1].policy
    assert isinstance(last, PredictiveState)
    assert last.forecast_fallbacks == len(ds) == 240 and last.model is None
    # The plan is the trend's: same numbers as the trend-only policy.
    trend_ds, _ = run_until(make_spec(), lambda t: 5.0 + (t % 600) / 100, start=0.0,
                            end=3600.0)
    assert [d.forecast_rps for d in ds] == [d.forecast_rps for d in trend_ds]


def test_refits_happen_at_six_hour_boundaries_once_six_hours_of_bins_exist() -> None:
    # Start at 1000 s: the first bin is 16 (960-1020 s). 360 completed bins exist once bin
    # 376 opens (22,560 s); the first decision then is 1000 + 15 x 1438 = 22,570 s. The next
    # 6-hour boundary is 43,200 s; the first decision at or after it is 43,210 s.
    _, states = run_until(named("last"), lambda t: 4.0 + math.sin(t / 3000.0), start=1000.0,
                          end=50_000.0)
    fits = sorted({s.policy.fitted_at for s in states
                   if isinstance(s.policy, PredictiveState) and s.policy.fitted_at is not None})
    assert fits == [22_570.0, 43_210.0]


def test_named_forecaster_decisions_are_deterministic() -> None:
    def rate(t: float) -> float:
        return 20.0 + 10.0 * math.sin(2 * math.pi * t / 7200.0) + (int(t) % 7)

    a, sa = run_until(named("auto"), rate, start=0.0, end=7 * 3600.0)
    b, sb = run_until(named("auto"), rate, start=0.0, end=7 * 3600.0)
    assert a == b
    assert a[-1].forecast_model is not None and a[-1].forecast_model.startswith("auto->")
    pa, pb = sa[-1].policy, sb[-1].policy
    assert isinstance(pa, PredictiveState) and isinstance(pb, PredictiveState)
    assert (pa.fitted_at, pa.forecast_error, pa.bins) == (pb.fitted_at, pb.forecast_error, pb.bins)
    assert math.isfinite(pa.forecast_error)


@pytest.mark.parametrize(("q", "expected"), [
    pytest.param(0.9, 12.0, id="a stored level is read as is"),
    # Midway between 0.9 (12) and 0.95 (14).
    pytest.param(0.925, 13.0, id="between levels interpolates linearly"),
    # Past 0.99: q50 + (q99 - q50) x z(0.999)/z(0.99) = 10 + 6 x 3.0902/2.3263.
    pytest.param(0.999, 10 + 6 * 3.090232 / 2.326348, id="past the top extrapolates"),
])
def test_headroom_quantiles_between_and_beyond_the_forecast_levels(
        q: float, expected: float) -> None:
    levels = {0.01: 5.0, 0.05: 6.0, 0.5: 10.0, 0.9: 12.0, 0.95: 14.0, 0.99: 16.0}
    f = Forecast(np.array([10.0]), {k: np.array([v]) for k, v in levels.items()})
    assert predictive._quantile(f, q)[0] == pytest.approx(expected, rel=1e-5)


# --- calibrated headroom: the plan learns the forecaster's real lead-time error ------------


def test_forecasts_are_scored_once_their_lead_time_has_passed() -> None:
    # Lead 120 s + 15 s = 135 s. A forecast made at t=0 promising 10 req/s is scored at
    # t=135 against the highest rate seen in (0, 135]: 13 req/s -> error +3.
    lead = predictive.LeadErrors(pending=((0.0, 10.0, math.nan),))
    for t in range(15, 136, 15):
        lead = lead.step(float(t), 13.0 if t == 60 else 9.0, 135.0, 11.0)
    assert lead.errors == (3.0,)
    # The forecast made at 15 s (window (15, 150]) is not due yet; it has seen 13 so far.
    assert lead.pending[0] == (15.0, 11.0, 13.0)


def test_a_window_without_samples_is_not_scored() -> None:
    lead = predictive.LeadErrors(pending=((0.0, 10.0, math.nan),))
    lead = lead.step(200.0, 5.0, 135.0, 4.0)  # the first sample comes after the window
    assert lead.errors == ()
    assert [p[:2] for p in lead.pending] == [(200.0, 4.0)]


def test_the_sorted_errors_match_a_slow_sort_of_the_last_960() -> None:
    rng = np.random.default_rng(3)
    lead = predictive.LeadErrors()
    values = rng.normal(10.0, 3.0, 1100)
    for i, v in enumerate(values):
        lead = lead.step(15.0 * i, float(v), 15.0, 10.0)
    assert len(lead.errors) == predictive.LEAD_ERROR_SAMPLES
    assert lead.ordered == tuple(sorted(lead.errors))


@pytest.mark.parametrize(
    ("errors", "q", "expected"),
    [
        pytest.param(tuple(float(i) for i in range(1, 101)), 0.9, 10.0 + 90.0,
                     id="nearest rank: the 90th of 100 errors"),
        pytest.param(tuple(-1.0 for _ in range(50)), 0.9, 10.0,
                     id="over-forecasts never plan below the mean peak"),
        pytest.param(tuple(1.0 for _ in range(39)), 0.9, None,
                     id="39 errors are too few: the forecaster's own interval plans"),
    ],
)
def test_the_calibrated_peak_is_the_mean_peak_plus_an_error_quantile(
    errors: tuple[float, ...], q: float, expected: float | None
) -> None:
    lead = predictive.LeadErrors(errors=tuple(errors), ordered=tuple(sorted(errors)))
    assert lead.calibrated_peak(10.0, q) == expected


def test_after_a_burst_the_plan_keeps_headroom_for_the_next_one() -> None:
    # 20 minutes steady at 6.4 req/s (2 replicas at 3.2), a 3-minute burst to 16 req/s,
    # then steady again. Once the burst has been scored as a lead-time error, the p99 plan
    # carries headroom that the steady forecast alone does not.
    spec = make_spec(predictive=fixed_params(target_utilization=0.8, headroom_quantile=0.99))
    steady, burst = [6.4] * 80, [16.0] * 12
    decisions, state, _ = run(spec, steady + burst + steady * 2)
    assert decisions[79].replicas == 2  # before the burst: exactly what is needed
    after = decisions[-1]
    assert after.replicas > 2
    policy = state.policy
    assert isinstance(policy, predictive.PredictiveState)
    assert max(policy.lead_errors) >= 16.0 - 6.4 - 1.0
    assert len(policy.lead_errors) <= predictive.LEAD_ERROR_SAMPLES


# --- true demand, hysteresis, the cold-start hold ------------------------------------------


def test_under_overload_demand_is_served_plus_queue_growth() -> None:
    # Served (first tokens) 10 req/s both steps; the queue grows 40 -> 100 in 15 s:
    # arrivals = 10 + (100 - 40) / 15 = 14 req/s.
    spec = make_spec()
    _, state = predictive.decide(snap(at=0.0, current=4, rate=10.0, queue=40.0), State(), spec,
                                 0.0)
    d, _ = predictive.decide(snap(at=15.0, current=4, rate=10.0, queue=100.0), state, spec, 15.0)
    assert d.demand_rps == pytest.approx(14.0)


def test_a_gateway_arrival_counter_is_the_demand_when_present() -> None:
    s = snap(at=0.0, current=4, rate=10.0, queue=40.0)
    s = Snapshot(current_replicas=4, ready_replicas=4,
                 metrics={**s.metrics, Signal.ARRIVAL_RATE: MetricValue(17.5, 0.0)})
    d, _ = predictive.decide(s, State(), make_spec(), 0.0)
    assert d.demand_rps == pytest.approx(17.5)


def test_scale_down_waits_for_the_lower_band() -> None:
    # 3.2 req/s per replica planned (4 x 0.8). At 12 req/s four replicas are needed
    # (ceil(3.75)); at 9 req/s three would do (ceil(2.81)), but with a band of 0.85 the
    # scale-down count is ceil(9 / (3.2 x 0.85)) = ceil(3.31) = 4: hold at 4. At 8 req/s
    # it is ceil(2.94) = 3: release one.
    spec = make_spec(predictive=fixed_params(target_utilization=0.8, scale_down_band=0.85))
    _, _, current = run(spec, [12.0] * 8, current=4)
    assert current == 4
    _, _, held = run(spec, [9.0] * 30, current=4)
    assert held == 4
    _, _, released = run(spec, [8.0] * 30, current=4)
    assert released == 3


def test_a_replica_no_longer_needed_is_kept_for_one_cold_start() -> None:
    # Cold start 120 s: after demand drops from 4 replicas' worth to 2, the count holds for
    # 120 s of recommendations (8 steps of 15 s) and then falls.
    spec = make_spec(predictive=fixed_params(target_utilization=0.8, keep_idle_cold_starts=1.0))
    decisions, _, _ = run(spec, [12.0] * 4 + [6.0] * 20, current=4)
    after = [d.replicas for d in decisions[4:]]
    drop = next(i for i, r in enumerate(after) if r < 4)
    # The drop is allowed once the last high recommendation (t = 45 s) is 120 s old:
    # at t >= 165 s, i.e. the 8th low step (t = 60 + 7 x 15 = 165).
    assert drop == 7


def test_a_fresh_policy_holds_its_starting_count_for_one_hold_window() -> None:
    # The first rate() after a start covers part of a window and reads low: 3.2 req/s would
    # need one replica, but the 5 running are kept for the hold window (120 s here).
    spec = make_spec(scale_down_window_s=120.0)
    d, _ = predictive.decide(snap(at=0.0, current=5, rate=3.2), State(), spec, 0.0)
    assert d.replicas == 5 and d.reason == Reason.FORECAST_HOLD


@pytest.mark.parametrize(("prompt_rate", "ttft", "expected", "reason"), [
    # 2 s + 0.001 s/token x (6,000 tokens/s / 3 req/s = 2,000 tokens) = 4 s objective.
    pytest.param(6000.0, 3.0, 1, Reason.FORECAST, id="3 s within a 2,000-token prompt's 4 s"),
    # A slip (one reading) holds the 10 instead of falling to 1.
    pytest.param(6000.0, 4.5, 10, Reason.SLO_CORRECTION, id="4.5 s above its 4 s"),
    # 2 s + 0.001 x (300 / 3 = 100 tokens) = 2.1 s: 3 s slips.
    pytest.param(300.0, 3.0, 10, Reason.SLO_CORRECTION, id="3 s above a 100-token prompt's 2.1 s"),
    # No prompt-token rate: the flat 2 s.
    pytest.param(None, 3.0, 10, Reason.SLO_CORRECTION, id="no prompt rate reads the flat 2 s"),
])
def test_the_slo_check_uses_the_objective_of_the_mean_prompt(
        prompt_rate: float | None, ttft: float, expected: int, reason: Reason) -> None:
    spec = make_spec()
    spec = replace(spec, slo=replace(spec.slo, ttft_seconds_per_prompt_token=0.001))
    s = snap(at=0.0, current=10, ready=10, rate=3.0, ttft=ttft)
    if prompt_rate is not None:
        s = Snapshot(s.current_replicas, s.ready_replicas, {
            **s.metrics, Signal.PROMPT_TOKENS_RATE: MetricValue(prompt_rate, 0.0)})
    d, _ = predictive.decide(s, State(), spec, 0.0)
    assert (d.replicas, d.reason) == (expected, reason)


def _kv_snap(at: float, kv: float, *, current: int = 3, rate: float = 9.0) -> Snapshot:
    return Snapshot(current_replicas=current, ready_replicas=current, metrics={
        Signal.REQUEST_RATE: MetricValue(rate, at), Signal.QUEUE_DEPTH: MetricValue(0.0, at),
        Signal.TTFT_P99: MetricValue(0.5, at), Signal.KV_CACHE_USAGE: MetricValue(kv, at)})


@pytest.mark.parametrize(("readings", "expected"), [
    # 9 req/s at 4 x 0.8 = 3.2 per replica needs ceil(2.81) = 3 whatever the cache says.
    # One 15-s reading of 82 % between 5 % ones: the median of the minute, in replica caches
    # (3 x 0.05 = 0.15, 2.46, 0.15), is 0.15: the floor asks for nothing.
    pytest.param((0.05, 0.82, 0.05), 3, id="one spike starts nothing"),
    # Two readings of 82 % in a row: the median reads 2.46 caches, but starting on the
    # cache alone takes a level held across the lead time (120 s + 15 s: 9 readings).
    pytest.param((0.05, 0.82, 0.82), 3, id="a level held for two readings starts nothing"),
    # Nine readings of 82 %: 2.46 caches throughout, ceil(2.46 / 0.8) = 4.
    pytest.param((0.05,) + (0.82,) * 9, 4, id="a level held for a lead time scales up"),
])
def test_the_kv_floor_reads_the_median_of_the_last_minute(
        readings: tuple[float, ...], expected: int) -> None:
    state = State()
    d = None
    for i, kv in enumerate(readings):
        t = 15.0 * i
        d, state = predictive.decide(_kv_snap(t, kv), state, make_spec(), t)
    assert d is not None and d.replicas == expected


def test_the_kv_floor_releases_only_below_the_band() -> None:
    # 4 ready at 60 % hold 2.4 caches: ceil(2.4 / 0.8) = 3 would do, but releasing the 4th
    # needs 2.4 <= 3 x 0.8 x band; with band 0.85 that is 2.04, so the 4 stay; with band 1
    # (no hysteresis) they fall to 3. Demand is flat, so the planned growth is 1.
    def last(band: float) -> int:
        spec = replace(make_spec(), predictive=replace(make_spec().predictive,
                                                       scale_down_band=band))
        state, d = State(), None
        for i in range(3):
            t = 15.0 * i
            d, state = predictive.decide(_kv_snap(t, 0.6, current=4, rate=3.0), state, spec, t)
        assert d is not None
        return d.replicas

    assert last(0.85) == 4
    assert last(1.0) == 3


@pytest.mark.parametrize(("doublings", "pending", "now", "current", "replicas", "expected"), [
    # Base hold 120 s, horizon 16 x 120 = 1,920 s.
    pytest.param(0, None, 100.0, 3, 2, (0, 100.0), id="a release is remembered"),
    pytest.param(0, 100.0, 610.0, 2, 3, (1, None), id="asked back 510 s later doubles"),
    pytest.param(4, 100.0, 610.0, 2, 3, (4, None), id="never past 16x"),
    pytest.param(2, 100.0, 2021.0, 2, 2, (1, None), id="a quiet horizon halves"),
    pytest.param(2, 100.0, 2021.0, 2, 3, (1, None), id="asked back after the horizon: no flap"),
    pytest.param(1, None, 500.0, 2, 3, (1, None), id="a start with no release pending"),
])
def test_the_release_hold_doubles_after_a_flap(
        doublings: int, pending: float | None, now: float, current: int, replicas: int,
        expected: tuple[int, float | None]) -> None:
    prev = PredictiveState(hold_doublings=doublings, last_release=pending)
    assert predictive._next_hold(prev, 120.0, now, current, replicas) == expected
