"""Lower bounds: a partial sum or an uncovered rate window may scale up, never anything else.

A sum over pods while fewer pods report than are ready, or a ``rate()`` over a window the
series do not cover yet, cannot be above the fleet's load. ``Snapshot.lower_bounds`` carries
them (filled by ``autoscaler.observation``), and ``autoscaler.core.decide`` runs the policy on
them: a count above the current one, and above what the policy asks with those signals at
0, is taken (``ScaleUpOnLowerBound``); anything else holds exactly as before
(``valid=False``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from autoscaler.core.behavior import apply_behavior
from autoscaler.core.decide import POLICIES, decide
from autoscaler.core.policies.predictive import PredictiveState
from autoscaler.core.safety import Fallback, guard
from autoscaler.core.spec import (
    Capacity,
    CapacitySource,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    Spec,
)
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State
from autoscaler.observation import RawTarget, WindowSeries, judge

NOW = 600.0
CAP = Capacity(requests_per_second=4.0, concurrency=24.0)


def mv(value: float) -> MetricValue:
    return MetricValue(value, NOW)


def hpa_rate(per_replica: float = 6.0, **kw: object) -> Spec:
    return Spec(max_replicas=20, capacity=CAP, policy=PolicyKind.HPA, metrics=(
        MetricTarget(Signal.REQUEST_RATE.value, MetricTargetType.AVERAGE_VALUE, per_replica),),
        **kw)  # type: ignore[arg-type]


def keda_queue() -> Spec:
    return Spec(max_replicas=20, capacity=CAP, policy=PolicyKind.KEDA, metrics=(
        MetricTarget(Signal.QUEUE_DEPTH.value, MetricTargetType.AVERAGE_VALUE, 10.0),))


def snap(current: int, ready: int, bounds: dict[Signal, float],
         metrics: dict[Signal, float] | None = None) -> Snapshot:
    return Snapshot(current_replicas=current, ready_replicas=ready,
                    metrics={s: mv(v) for s, v in (metrics or {}).items()},
                    lower_bounds={s: mv(v) for s, v in bounds.items()})


# --- one decision --------------------------------------------------------------------------

CASES = [
    # 3 of 4 pods report 30 req/s: 30 / (6 x 4) = 1.25, outside the 10 % tolerance, and
    # ceil(30 / 6) = 5 > 4.
    pytest.param(hpa_rate(), snap(4, 4, {Signal.REQUEST_RATE: 30.0}), 5, True,
                 Reason.SCALE_UP_ON_LOWER_BOUND,
                 id="hpa: three of four pods already carry 30 req/s at 6 each: up to 5"),
    # 20 req/s: 20 / 24 = 0.83, outside the tolerance, but ceil(20 / 6) = 4 = current.
    pytest.param(hpa_rate(), snap(4, 4, {Signal.REQUEST_RATE: 20.0}), 4, False,
                 Reason.METRICS_MISSING,
                 id="hpa: the bound asks for the current 4: hold, invalid, as before"),
    # 6 req/s: ceil(6 / 6) = 1 < 4: a scale-down on partial data is never taken.
    pytest.param(hpa_rate(), snap(4, 4, {Signal.REQUEST_RATE: 6.0}), 4, False,
                 Reason.METRICS_MISSING,
                 id="hpa: the bound asks for 1 of 4: no scale-down, hold"),
    # 26 req/s: 26 / 24 = 1.083, inside the tolerance: upstream skips such a scale-up too.
    pytest.param(hpa_rate(), snap(4, 4, {Signal.REQUEST_RATE: 26.0}), 4, False,
                 Reason.METRICS_MISSING,
                 id="hpa: the bound within the tolerance: hold"),
    # At maxReplicas 20 nothing can go up: 300 req/s would ask ceil(300 / 6) = 50.
    pytest.param(hpa_rate(), snap(20, 20, {Signal.REQUEST_RATE: 300.0}), 20, False,
                 Reason.METRICS_MISSING, id="hpa: already at maxReplicas: hold"),
    # 35 req/s on a new pod's window: ceil(35 / 6) = 6 > 5, while 4 of 5 are ready.
    pytest.param(hpa_rate(), snap(5, 4, {Signal.REQUEST_RATE: 35.0}), 6, True,
                 Reason.SCALE_UP_ON_LOWER_BOUND,
                 id="hpa: a new pod's uncovered window already reads 35 req/s: up to 6"),
    # A queue of 95 summed over 2 of 3 pods: ceil(95 / 10) = 10 > 3, and the HPA's default
    # scale-up rate (the larger of +100 % and +4 pods per 15 s) allows 3 + 4 = 7 of them.
    pytest.param(keda_queue(), snap(3, 3, {Signal.QUEUE_DEPTH: 95.0}), 7, True,
                 Reason.SCALE_UP_ON_LOWER_BOUND,
                 id="keda: a partial queue of 95 at 10 per replica: up to 7, rate-limited"),
    pytest.param(keda_queue(), snap(3, 3, {Signal.QUEUE_DEPTH: 0.0}), 3, False,
                 Reason.METRICS_MISSING,
                 id="keda: a partial empty queue is not an empty queue: hold"),
    # A trusted value wins over a bound on the same signal (the judge never sends both;
    # a caller might): 12 req/s asks ceil(12 / 6) = 2 < 4, the HPA's own valid answer
    # after its 300-s scale-down window (4 here, seeded on first sight).
    pytest.param(hpa_rate(), snap(4, 4, {Signal.REQUEST_RATE: 300.0},
                                  {Signal.REQUEST_RATE: 12.0}), 4, True,
                 Reason.SCALE_DOWN_STABILIZED,
                 id="hpa: a trusted reading is used, the bound on it ignored"),
]


@pytest.mark.parametrize(("spec", "snapshot", "replicas", "valid", "reason"), CASES)
def test_a_lower_bound_scales_up_and_does_nothing_else(
        spec: Spec, snapshot: Snapshot, replicas: int, valid: bool, reason: Reason) -> None:
    decision, _ = decide(snapshot, State(), spec, NOW)
    assert (decision.replicas, decision.valid, decision.reason) == (replicas, valid, reason)
    if reason is Reason.SCALE_UP_ON_LOWER_BOUND:
        # The message names the bound it acted on.
        assert "lower bounds of the load" in decision.message
        assert ">= " in decision.message


def test_without_bounds_the_same_snapshot_holds() -> None:
    # The first case's snapshot with its bound dropped: what every caller saw before.
    decision, _ = decide(snap(4, 4, {}), State(), hpa_rate(), NOW)
    assert (decision.replicas, decision.valid) == (4, False)


# --- state ---------------------------------------------------------------------------------

def test_the_scale_up_is_recorded_for_rate_limits_and_stabilisation() -> None:
    spec = hpa_rate()
    _, state = decide(snap(4, 4, {Signal.REQUEST_RATE: 30.0}), State(), spec, NOW)
    assert state.scale_up_events == ((NOW, 1),)  # 4 -> 5
    assert (NOW, 5) in state.recommendations
    # The next cycle with a full, lower reading is held at 5 by the scale-down window,
    # as after any scale-up: a trusted 12 req/s asks ceil(12 / 6) = 2.
    out = apply_behavior(2, current=5, state=state, spec=spec, now=NOW + 15.0)
    assert out.replicas == 5


def _warm_predictive(spec: Spec, steps: int) -> State:
    """Predictive after ``steps`` decisions at a steady 8 req/s on 4 ready replicas."""
    state = State()
    metrics = {Signal.QUEUE_DEPTH: 0.0, Signal.TTFT_P99: 0.2, Signal.TTFT_P95: 0.15}
    for i in range(steps):
        t = NOW - 15.0 * (steps - i)
        s = Snapshot(4, 4, {sig: MetricValue(v, t) for sig, v in
                            {**metrics, Signal.REQUEST_RATE: 8.0}.items()})
        _, state = decide(s, state, spec, t)
    return state


def test_predictive_does_not_learn_a_lower_bound_as_a_sample() -> None:
    # Steady 8 req/s; then a new pod's window is uncovered and the three covered pods
    # already report 60 req/s: 60 / (4 x 0.8) = 18.75 replicas' worth, far above 4.
    spec = Spec(max_replicas=30, capacity=CAP, policy=PolicyKind.PREDICTIVE)
    before = _warm_predictive(spec, 12)
    s = snap(4, 4, {Signal.REQUEST_RATE: 60.0},
             {Signal.QUEUE_DEPTH: 0.0, Signal.TTFT_P99: 0.2, Signal.TTFT_P95: 0.15})
    decision, after = decide(s, before, spec, NOW)
    assert decision.reason is Reason.SCALE_UP_ON_LOWER_BOUND and decision.valid
    assert decision.replicas > 4
    assert isinstance(after.policy, PredictiveState)
    # The forecaster's history, trend and learned capacity are what they were: the bound
    # is not a sample.
    assert after.policy is before.policy
    # The behaviour part records the scale event (4 -> decision.replicas).
    assert after.scale_up_events[-1] == (NOW, decision.replicas - 4)


@pytest.mark.parametrize(("rate_bound", "taken"), [
    # TTFT p99 5 s against the 2 s SLO, read twice in a row: predictive's own correction
    # asks for ready + 1 = 5 whatever the rate; at 8 req/s (ceil(8 / 3.4) = 3 replicas'
    # worth) the bound adds nothing to that, so the scale-up is not the bound's to take.
    pytest.param(8.0, False, id="a TTFT slip alone asks for more: not taken on a bound"),
    # 60 req/s: ceil(60 / (4 x 0.85)) = 18 replicas' worth: the bound itself asks for it.
    pytest.param(60.0, True, id="the bound itself asks for more: taken"),
])
def test_only_what_the_bounds_ask_for_is_taken(rate_bound: float, taken: bool) -> None:
    spec = Spec(max_replicas=30, capacity=CAP, policy=PolicyKind.PREDICTIVE)
    state = State()
    slipping = {Signal.QUEUE_DEPTH: 0.0, Signal.TTFT_P99: 5.0, Signal.TTFT_P95: 4.0}
    for i in range(3):  # three trusted readings, the TTFT above the SLO in each
        t = NOW - 15.0 * (3 - i)
        s = Snapshot(4, 4, {sig: MetricValue(v, t) for sig, v in
                            {**slipping, Signal.REQUEST_RATE: 8.0}.items()})
        _, state = decide(s, state, replace(spec, max_replicas=4), t)  # held at 4
    decision, _ = decide(snap(4, 4, {Signal.REQUEST_RATE: rate_bound}, slipping),
                         state, spec, NOW)
    assert (decision.reason is Reason.SCALE_UP_ON_LOWER_BOUND) is taken
    assert decision.valid is taken
    assert (decision.replicas > 4) is taken


def test_a_spec_without_capacity_still_scales_up_on_a_bound() -> None:
    # The learner is frozen for the bounded run even where the spec must learn; the
    # CapacityUnknown rule concerns scale-downs only.
    spec = Spec(max_replicas=30, policy=PolicyKind.PREDICTIVE,
                capacity=Capacity(2.0, 12.0, source=CapacitySource.PRIOR))
    state = _warm_predictive(spec, 12)
    decision, _ = decide(snap(4, 4, {Signal.REQUEST_RATE: 60.0},
                              {Signal.QUEUE_DEPTH: 0.0, Signal.TTFT_P99: 0.2}),
                         state, spec, NOW)
    assert decision.reason is Reason.SCALE_UP_ON_LOWER_BOUND and decision.replicas > 4


# --- the safety rules ----------------------------------------------------------------------

def _on_bound(replicas: int) -> Decision:
    return Decision(replicas=replicas, reason=Reason.SCALE_UP_ON_LOWER_BOUND, message="b")


@pytest.mark.parametrize(("current", "failures", "decided", "rule", "acted", "reason"), [
    pytest.param(4, 0, 5, Fallback(6, 3), 5, Reason.SCALE_UP_ON_LOWER_BOUND,
                 id="first cycle: the scale-up on a bound is acted on"),
    # Hold, scale-up on a bound, and this third cycle without usable metrics: 5 -> 6.
    pytest.param(4, 2, 5, Fallback(6, 3), 6, Reason.FALLBACK,
                 id="it still counts as a cycle without usable metrics: fallback raises"),
    pytest.param(4, 2, 8, Fallback(6, 3), 8, Reason.SCALE_UP_ON_LOWER_BOUND,
                 id="above the fallback: the fallback never lowers it"),
])
def test_a_scale_up_on_a_bound_keeps_the_fallback_count(
        current: int, failures: int, decided: int, rule: Fallback, acted: int,
        reason: Reason) -> None:
    g = guard(_on_bound(decided), current=current, failures=failures, fallback=rule,
              max_replicas=20)
    assert (g.replicas, g.reason, g.failures) == (acted, reason, failures + 1)


# --- the judge fills the bounds ------------------------------------------------------------

REGULAR = [540.0, 555.0, 570.0, 585.0, 600.0]


def _counter(times: list[float], rate: float) -> list[tuple[float, float]]:
    return [(t, 1000.0 + rate * t) for t in times]


@pytest.mark.parametrize(("series", "ready", "bounded", "trusted"), [
    pytest.param([_counter(REGULAR, 5.0)] * 4, 4, set(),
                 {Signal.REQUEST_RATE, Signal.QUEUE_DEPTH, Signal.TTFT_P95},
                 id="every pod reports, window covered: no bounds"),
    pytest.param([_counter(REGULAR, 5.0)] * 3, 4, {Signal.REQUEST_RATE, Signal.QUEUE_DEPTH},
                 {Signal.TTFT_P95},
                 id="three of four report: the sums are bounds, the quantile is kept"),
    pytest.param([_counter(REGULAR, 5.0)] * 3 + [_counter([585.0, 600.0], 5.0)], 4,
                 {Signal.REQUEST_RATE}, {Signal.QUEUE_DEPTH, Signal.TTFT_P95},
                 id="a series 45 s into the window: the rate is a bound, the gauge kept"),
    pytest.param([_counter([480.0, 495.0], 5.0)] * 4, 4, set(), set(),
                 id="stale (newest sample 105 s old): no bound, the load may be anything"),
])
def test_the_judge_puts_partial_sums_and_uncovered_rates_into_lower_bounds(
        series: list[list[tuple[float, float]]], ready: int, bounded: set[Signal],
        trusted: set[Signal]) -> None:
    raw = RawTarget(at=NOW, window_s=60.0,
                    values={Signal.REQUEST_RATE: 15.0, Signal.QUEUE_DEPTH: 4.0,
                            Signal.TTFT_P95: 0.3},
                    series=WindowSeries.from_samples(series, counter=True))
    s = judge(raw, max_age_s=60.0).snapshot(ready, ready)
    assert set(s.lower_bounds) == bounded
    assert set(s.metrics) == trusted
    assert not set(s.lower_bounds) & set(s.metrics)


# --- invariant -----------------------------------------------------------------------------

SUMMED = (Signal.REQUEST_RATE, Signal.QUEUE_DEPTH, Signal.RUNNING, Signal.CONCURRENCY,
          Signal.PROMPT_TOKENS_RATE, Signal.GENERATION_TOKENS_RATE)
KEPT = (Signal.TTFT_P50, Signal.TTFT_P95, Signal.TTFT_P99, Signal.KV_CACHE_USAGE)


def _spec(kind: PolicyKind) -> Spec:
    metrics = {
        PolicyKind.HPA: (Signal.REQUEST_RATE, 3.2), PolicyKind.HPA_QUEUE: (Signal.QUEUE_DEPTH, 3.0),
        PolicyKind.KEDA: (Signal.QUEUE_DEPTH, 3.0), PolicyKind.HPA_RUNNING: (Signal.RUNNING, 10.0),
        PolicyKind.HPA_KV: (Signal.KV_CACHE_USAGE, 0.8)}.get(kind)
    targets = () if metrics is None else (MetricTarget(
        metrics[0].value, MetricTargetType.VALUE if kind == PolicyKind.HPA_KV
        else MetricTargetType.AVERAGE_VALUE, metrics[1]),)
    return Spec(max_replicas=20, capacity=CAP, policy=kind, metrics=targets)


# Tiny and subnormal floats (2e-313 req/s) are no reading a counter can give, but the
# decision must not fall over on them: predictive's KV floor once divided by the rate and
# overflowed (the @example below is the case hypothesis found).
def _reading(hi: float) -> st.SearchStrategy[float]:
    return st.floats(0.0, hi)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(POLICIES)),
       current=st.integers(1, 20), ready_short=st.integers(0, 3),
       bounds=st.dictionaries(st.sampled_from(SUMMED), _reading(500.0), min_size=1),
       kept=st.dictionaries(st.sampled_from(KEPT), _reading(1.0)),
       history=st.lists(_reading(200.0), max_size=6))
@example(kind=PolicyKind.PREDICTIVE, current=1, ready_short=0,
         bounds={Signal.REQUEST_RATE: 0.0}, kept={},
         history=[0.0, 1.0, 2.2250738585072014e-308])
def test_a_lower_bound_never_lowers_the_count_acted_on(
        kind: PolicyKind, current: int, ready_short: int, bounds: dict[Signal, float],
        kept: dict[Signal, float], history: list[float]) -> None:
    # Some trusted history first (a request rate, full data), so the policies have state.
    spec = _spec(kind)
    state = State()
    t = NOW - 15.0 * len(history)
    for rate in history:
        full = {Signal.REQUEST_RATE: rate, Signal.QUEUE_DEPTH: rate / 4,
                Signal.RUNNING: rate, Signal.CONCURRENCY: rate * 1.2,
                Signal.KV_CACHE_USAGE: min(1.0, rate / 200), Signal.TTFT_P99: 0.3}
        _, state = decide(Snapshot(current, current, {s: MetricValue(v, t)
                                                      for s, v in full.items()}),
                          state, spec, t)
        t += 15.0
    ready = max(0, current - ready_short)
    with_bounds = snap(current, ready, bounds, kept)
    without = replace(with_bounds, lower_bounds={})
    d_with, _ = decide(with_bounds, state, spec, NOW)
    d_without, _ = decide(without, state, spec, NOW)
    acted_with = guard(d_with, current=current, failures=0, fallback=None,
                       max_replicas=spec.max_replicas).replicas
    acted_without = guard(d_without, current=current, failures=0, fallback=None,
                          max_replicas=spec.max_replicas).replicas
    if d_with.reason is Reason.SCALE_UP_ON_LOWER_BOUND:
        # Taken only as a scale-up: above the current count and above the policy's own.
        assert acted_with > current and acted_with > acted_without
    else:
        # Otherwise the bounds changed nothing at all.
        assert d_with == d_without
    # Every signal a summed reading comes from is a bound here, so no policy that reads
    # one acts below the current count (hpa-kv reads a mean, static a fixed count: they
    # decide on trusted data as before).
    if kind not in (PolicyKind.HPA_KV, PolicyKind.STATIC):
        assert acted_with >= current


# --- a replay ------------------------------------------------------------------------------

def test_a_pod_silent_through_a_ramp_no_longer_freezes_the_scale_up() -> None:
    """A pod stops reporting for 10 minutes while the load climbs from 8 to 120 req/s.
    Without lower bounds every decision in the silence holds (the sums are partial); with
    them the fleet keeps scaling up on what the other pods already carry, and never acts
    below what it asked for before the bound."""
    from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
    from autoscaler.sim.observe import PodSilent
    from autoscaler.sim.profiles import load_profile
    from autoscaler.sim.replay import replay
    from autoscaler.traces.model import Trace

    rates = np.concatenate([np.full(10, 8.0), np.linspace(8.0, 120.0, 20), np.full(30, 120.0)])
    trace = Trace(name="ramp", duration_s=3600.0, rates_rps=rates, resolution_s=60.0)
    profile = load_profile()
    silent = (PodSilent(900.0, 1500.0, 1),)
    spec = default_specs(trace, profile, capacity_for(trace, profile, 2.0),
                         ReplayOptions(max_replicas=40))[PolicyKind.PREDICTIVE]

    def blind(s: Snapshot, st_: State, sp: Spec, now: float) -> tuple[Decision, State]:
        return decide(replace(s, lower_bounds={}), st_, sp, now)

    def run(fn: object) -> list[tuple[float, int, Decision]]:
        seen: list[tuple[float, int, Decision]] = []
        replay(trace, spec, profile, engine="fluid", faults=silent, decide=fn,  # type: ignore[arg-type]
               on_decision=lambda t, s, d: seen.append((t, s.current_replicas, d)))
        return seen

    def longest_hold(seen: list[tuple[float, int, Decision]]) -> int:
        longest = run_ = 0
        for t, _, d in seen:
            if 900.0 <= t <= 1500.0:
                run_ = 0 if d.valid else run_ + 1
                longest = max(longest, run_)
        return longest

    before, after = run(blind), run(decide)
    taken = [(cur, d) for _, cur, d in after if d.reason is Reason.SCALE_UP_ON_LOWER_BOUND]
    assert taken, "the ramp under a silent pod must scale up on a bound"
    assert all(d.replicas > cur and d.valid for cur, d in taken)
    assert longest_hold(after) < longest_hold(before)
    peak = {name: max(cur for t, cur, _ in seen if 900.0 <= t <= 1500.0)
            for name, seen in (("before", before), ("after", after))}
    assert peak["after"] > peak["before"]


# --- the live loop -------------------------------------------------------------------------

@pytest.mark.parametrize(("rate", "desired", "reason", "active"), [
    # 40 req/s summed over the 3 pods that report, 4 ready: ceil(40 / 6) = 7 > 4, and the
    # default scale-up rate allows max(4 x 2, 4 + 4) = 8, so 7.
    pytest.param(40.0, 7, "ScaleUpOnLowerBound", "True",
                 id="3 of 4 pods already report 40 req/s: scale to 7 and say why"),
    # 4 req/s over the 3 that report: ceil(4 / 6) = 1 < 4. A partial sum is not low load.
    pytest.param(4.0, 4, "MetricsMissing", "False",
                 id="3 of 4 pods report 4 req/s: hold 4, never scale down"),
])
def test_the_live_loop_acts_on_a_bound_only_to_scale_up(
        rate: float, desired: int, reason: str, active: str) -> None:
    from tests.test_controller_loop import run, world

    kube, prom, ctrl = world(replicas=4, rate=rate, policy="hpa", metrics=[
        {"metric": "request_rate", "target": {"type": "AverageValue", "value": 6}}])
    prom.reporting = lambda _workload: 3
    run(ctrl, prom, 1_000_000.0, 1)
    assert kube.deployments["chat"][0] == desired
    status = kube.statuses["chat"][-1]
    conds = {c["type"]: c for c in status["conditions"]}
    assert status["reason"] == reason
    assert conds["ScalingActive"]["status"] == active
    assert conds["MetricsAvailable"]["status"] == "False"  # the rate is still partial
