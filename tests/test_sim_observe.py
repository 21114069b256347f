"""The fake Prometheus: rate() and histogram_quantile() against slow references, per-pod
series, the preset's own request counter, faults, and every policy held through them."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.decide import decide
from autoscaler.core.safety import guard
from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.core.types import MetricValue, Signal, Snapshot, State
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.fleet import TTFT_BUCKETS_S, EngineSample
from autoscaler.sim.fluid_engine import FluidEngine
from autoscaler.sim.observe import (
    CounterReset,
    FakePrometheus,
    Fault,
    PodSilent,
    PrometheusRestart,
    ScrapeGap,
    extrapolated_rate,
    histogram_quantile,
    prom_rate,
)
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.request_engine import RequestEngine
from autoscaler.traces.model import Trace


def slow_quantile(q: float, bounds: list[float], cum: list[float]) -> float:
    """Walk the piecewise-linear CDF in tiny steps until it reaches q x total."""
    total = cum[-1]
    rank = q * total
    lo = 0.0
    before = 0.0
    for upper, c in zip(bounds, cum, strict=False):
        if c >= rank and c > before:
            steps = 20_000
            for k in range(steps + 1):
                x = lo + (upper - lo) * k / steps
                if before + (c - before) * k / steps >= rank - 1e-12:
                    return x
        if c >= rank:
            return upper
        lo, before = upper, c
    return bounds[-1]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 50), min_size=len(TTFT_BUCKETS_S) + 1,
                    max_size=len(TTFT_BUCKETS_S) + 1).filter(lambda c: sum(c) > 0),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_histogram_quantile_matches_a_slow_cdf_walk(counts: list[int], q: float) -> None:
    cum = [float(sum(counts[: i + 1])) for i in range(len(counts))]
    fast = histogram_quantile(q, TTFT_BUCKETS_S, cum)
    slow = slow_quantile(q, list(TTFT_BUCKETS_S), cum)
    # One step of the walk is at most (2560 - 640) / 20,000 ~ 0.1 s wide.
    assert fast == pytest.approx(slow, abs=0.1, rel=1e-3)


@pytest.mark.parametrize(
    ("q", "cum", "expected"),
    [
        pytest.param(0.5, [0, 10, 10], 1.5, id="middle of the second bucket"),
        pytest.param(0.95, [5, 5, 10], 2.0, id="in +Inf bucket -> highest finite bound"),
        pytest.param(0.5, [0, 0, 0], math.nan, id="empty -> NaN"),
    ],
)
def test_histogram_quantile_hand_cases(q: float, cum: list[float], expected: float) -> None:
    v = histogram_quantile(q, [1.0, 2.0], cum)
    if math.isnan(expected):
        assert math.isnan(v)
    else:
        assert v == pytest.approx(expected)


@given(st.lists(st.tuples(st.floats(0.5, 20), st.floats(0, 100)), min_size=2, max_size=8))
def test_rate_is_the_increase_over_the_span_of_the_samples(
        steps: list[tuple[float, float]]) -> None:
    t, v = 0.0, 0.0
    points = [(t, v)]
    for dt, dv in steps:
        t, v = t + dt, v + dv
        points.append((t, v))
    expected = (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])
    assert prom_rate(points) == pytest.approx(expected)


def test_rate_survives_a_counter_reset() -> None:
    assert prom_rate([(0.0, 10.0), (10.0, 20.0), (20.0, 5.0)]) == pytest.approx(
        (10.0 + 5.0) / 20.0)


@pytest.mark.parametrize(("points", "expected"), [
    # Scrapes 15 s apart from 545 to 590 in [540, 600]: both edges are within 1.1 x 15 s,
    # so the 45-s increase (225) is stretched to the 60-s range: 225 x 60/45 / 60 = 5/s.
    pytest.param([(545.0, 1000.0), (560.0, 1075.0), (575.0, 1150.0), (590.0, 1225.0)], 5.0,
                 id="a covered window reads the true rate"),
    # First seen at 585 with a large counter: the start is 45 s away, beyond 16.5 s, so it
    # extrapolates half a spacing: (75 x (15 + 7.5 + 0) / 15) / 60 = 1.875/s.
    pytest.param([(585.0, 5000.0), (600.0, 5075.0)], 1.875,
                 id="a series seen for 15 s of a 60-s window reads 3/8 of it"),
    # A counter born at 0 at 580: zero point 5 s before the first sample at 585 (25 / 5/s),
    # so the start extends 5 s: 75 x (15 + 5) / 15 / 60 = 1.667/s, all it served.
    pytest.param([(585.0, 25.0), (600.0, 100.0)], 100.0 / 60.0,
                 id="a new pod is extrapolated back to its zero only"),
])
def test_extrapolated_rate_is_prometheus_rate(points: list[tuple[float, float]],
                                              expected: float) -> None:
    assert extrapolated_rate(points, 540.0, 600.0) == pytest.approx(expected)


def sample(t: float, *, arrivals: float = 3.0, first_tokens: float = 2.0,
           ready: int = 2, waiting: float = 3.0) -> EngineSample:
    n = len(TTFT_BUCKETS_S) + 1
    return EngineSample(
        t=t, requests_total=arrivals * t, prompt_tokens_total=100 * first_tokens * t,
        generation_tokens_total=10 * first_tokens * t,
        ttft_buckets=tuple([first_tokens * t] * n), ttft_sum=0.0, waiting=waiting,
        running=5.0, kv_usage=0.25, gpu_busy_seconds_total=0.5 * t * ready,
        ready_replicas=ready, first_tokens_total=first_tokens * t)


@pytest.mark.parametrize(("preset", "expected"), [
    pytest.param("vllm", 2.0, id="vllm rates first tokens"),
    pytest.param("sglang", 2.0, id="sglang rates first tokens"),
    pytest.param("tensorrt-llm", 2.0, id="tensorrt-llm rates first tokens"),
    pytest.param("tgi", 3.0, id="tgi rates arrivals"),
])
def test_each_preset_reads_its_own_request_counter(preset: str, expected: float) -> None:
    prom = FakePrometheus(preset=preset, rate_window_s=60.0)
    for k in range(1, 9):
        prom.scrape(sample(15.0 * k))
    assert prom.query(120.0)[Signal.REQUEST_RATE].value == pytest.approx(expected)


@pytest.mark.parametrize(("preset", "has", "lacks"), [
    pytest.param("vllm", Signal.TTFT_P95, Signal.GPU_UTILIZATION, id="vllm has no GPU util"),
    pytest.param("vllm+dcgm", Signal.GPU_UTILIZATION, None, id="dcgm adds GPU util"),
    pytest.param("tgi", Signal.KV_CACHE_USAGE, Signal.TTFT_P95, id="tgi has no TTFT"),
])
def test_signals_are_those_the_preset_defines(preset: str, has: Signal,
                                              lacks: Signal | None) -> None:
    prom = FakePrometheus(preset=preset)
    for k in range(1, 9):
        prom.scrape(sample(15.0 * k))
    m = prom.query(120.0)
    assert has in m
    assert lacks is None or lacks not in m


def test_snapshot_uses_the_last_four_scrapes_and_stamps_the_newest() -> None:
    prom = FakePrometheus(preset="vllm+dcgm", rate_window_s=60.0)
    for k in range(1, 9):
        prom.scrape(sample(15.0 * k))
    m = prom.query(120.0)
    assert m[Signal.REQUEST_RATE].value == pytest.approx(2.0)
    assert m[Signal.REQUEST_RATE].observed_at == 120.0
    assert m[Signal.PROMPT_TOKENS_RATE].value == pytest.approx(200.0)
    assert m[Signal.CONCURRENCY].value == 3.0 + 5.0
    assert m[Signal.GPU_UTILIZATION].value == pytest.approx(0.5)
    # Every observation sits in the first bucket: p50 is half of its bound.
    assert m[Signal.TTFT_P50].value == pytest.approx(TTFT_BUCKETS_S[0] / 2)
    # Every signal but the gateway's arrival counter, which vLLM does not expose.
    assert set(m) == set(Signal) - {Signal.ARRIVAL_RATE}


def test_an_outage_leaves_only_old_samples_and_then_nothing() -> None:
    prom = FakePrometheus(rate_window_s=60.0, outages=[(100.0, 400.0)])
    for k in range(1, 27):
        prom.scrape(sample(15.0 * k))
    # At 105 the newest scrape (90) is one spacing old: gauges still read, rates have only
    # 60, 75 and 90 in (45, 105] and still cover the window.
    early = prom.query(105.0)
    assert early[Signal.QUEUE_DEPTH].observed_at == 90.0
    # At 200 no pod has a sample in the window (140, 200]: nothing is read, not even the
    # old queue (the window says no pod reports, so its age is unknown).
    during = prom.observe(200.0)
    assert during.pods_reporting == 0
    assert {r.status.value for r in during.judged(2).values()} <= {"missing", "stale"}
    assert prom.query(200.0) == {}


@given(steps=st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=5, max_size=40),
       resets=st.sets(st.integers(min_value=1, max_value=39), max_size=4))
@settings(max_examples=100, deadline=None)
def test_token_rates_equal_prom_rate_on_the_raw_window_even_across_resets(
    steps: list[float], resets: set[int]
) -> None:
    # A fleet counter that grows by `steps` and restarts from 0 at `resets`.
    raw: list[tuple[float, float]] = []
    value = 0.0
    prom = FakePrometheus(rate_window_s=60.0)
    for k, inc in enumerate(steps, start=1):
        value = inc if k in resets else value + inc
        t = 15.0 * k
        raw.append((t, value))
        prom.scrape(EngineSample(
            t=t, requests_total=0.0, prompt_tokens_total=value, generation_tokens_total=0.0,
            ttft_buckets=tuple([0.0] * (len(TTFT_BUCKETS_S) + 1)), ttft_sum=0.0, waiting=0.0,
            running=0.0, kv_usage=0.0, gpu_busy_seconds_total=0.0, ready_replicas=1))
    now = raw[-1][0]
    window = [(t, v) for t, v in raw if t > now - 60.0]
    expected = prom_rate(window)
    got = prom.query(now).get(Signal.PROMPT_TOKENS_RATE)
    assert expected is not None and got is not None
    assert got.value == pytest.approx(expected, rel=1e-9, abs=1e-9)


# --- faults --------------------------------------------------------------------------

def steady(faults: tuple[Fault, ...], until: float, ready: int = 4) -> FakePrometheus:
    """20 first tokens/s on 4 pods, scraped every 15 s up to ``until``."""
    prom = FakePrometheus(faults=faults)
    for k in range(1, int(until // 15) + 1):
        prom.scrape(sample(15.0 * k, first_tokens=20.0, ready=ready))
    return prom


@pytest.mark.parametrize(("fault", "at", "status"), [
    # Restart at 600 (head lost), up at 630: at 645 the window (585, 645] holds 630 and 645
    # only, counters in the thousands: rate() reads 20 x (15 + 7.5) / 60 = 7.5 of 20.
    pytest.param(PrometheusRestart(600.0, 30.0), 645.0, "not_yet_valid",
                 id="prometheus restart: not yet valid"),
    pytest.param(PrometheusRestart(600.0, 30.0), 690.0, "ok",
                 id="prometheus restart: valid again after one window"),
    pytest.param(PodSilent(600.0, 700.0, 1), 645.0, "partial",
                 id="a silent pod: 3 of 4 report, sums are partial"),
    pytest.param(PodSilent(600.0, 700.0, 1), 720.0, "not_yet_valid",
                 id="a silent pod back: its window has a hole"),
    pytest.param(ScrapeGap(600.0, 700.0), 720.0, "not_yet_valid",
                 id="after a long scrape gap: not yet valid"),
    pytest.param(ScrapeGap(600.0, 610.0), 660.0, "ok",
                 id="a missed scrape inside the window: counters bridge it"),
    # The same missed scrape at the window's start: rate() extrapolates only 7.5 s of the
    # 30 s before 615, reading (30 + 7.5) / 60 of the rate.
    pytest.param(ScrapeGap(600.0, 610.0), 645.0, "not_yet_valid",
                 id="a missed scrape at the window's start leaves it uncovered"),
    # Two pods restart at 605: (600, 605] is lost. The window holds the drop (600 -> 615)
    # until 660, where 600 is the sample before the window and 615 its first: still seen.
    pytest.param(CounterReset(605.0, 2), 645.0, "not_yet_valid",
                 id="a counter reset leaves (last scrape, reset] uncovered"),
    pytest.param(CounterReset(605.0, 2), 660.0, "not_yet_valid",
                 id="a counter reset just before the window's first sample is seen"),
    pytest.param(CounterReset(605.0, 2), 675.0, "ok",
                 id="a counter reset: valid again once the loss is outside the window"),
])
def test_each_fault_is_judged_as_a_live_prometheus_would_show_it(
        fault: Fault, at: float, status: str) -> None:
    prom = steady((fault,), at)
    reading = prom.observe(at).judged(prom.ready())[Signal.REQUEST_RATE]
    assert reading.status.value == status, reading.detail


def test_a_counter_reset_reads_close_to_the_true_rate() -> None:
    # Two of four pods restart at 605, 10 s before the scrape at 615: what they counted in
    # (600, 605] is lost, 2 pods x 5/s x 5 s = 50 of 20 x 60 = 1,200: the rate reads
    # (1200 - 50) / 60 = 19.17, not a drop to the 10/s the two other pods serve.
    # (The reading is not yet valid, so the value is read raw, before the rules.)
    prom = steady((CounterReset(605.0, 2),), 645.0)
    value = prom.raw(645.0).values[Signal.REQUEST_RATE]
    assert value is not None
    assert value == pytest.approx((1200.0 - 50.0) / 60.0, rel=0.02)


def test_new_pods_are_counted_from_their_first_sample() -> None:
    # 4 pods until 885, 6 from 900: the new pods' series start inside the window at a
    # count near 0, so the sum stays valid (and near 20) from their second sample on.
    prom = FakePrometheus()
    for k in range(1, 65):
        t = 15.0 * k
        prom.scrape(sample(t, first_tokens=20.0, ready=4 if t < 900 else 6))
    obs = prom.observe(960.0).judged(6)[Signal.REQUEST_RATE]
    assert obs.status.value == "ok" and obs.value == pytest.approx(20.0, rel=0.05)


def test_under_overload_first_tokens_flatten_at_capacity_and_arrivals_do_not() -> None:
    profile = load_profile()
    prompt, output = 1000, 200
    capacity = profile.max_throughput_rps(prompt, output)  # one replica, requests/s
    rng = np.random.default_rng(1)
    arrivals = np.sort(rng.uniform(0.0, 600.0, int(3 * capacity * 600)))
    n = len(arrivals)
    engine = RequestEngine(profile, arrivals, np.full(n, prompt), np.full(n, output),
                           initial_replicas=1)
    vllm, tgi = FakePrometheus(preset="vllm"), FakePrometheus(preset="tgi")
    for k in range(1, 41):
        engine.advance(15.0 * k)
        s = engine.sample(15.0 * k)
        vllm.scrape(s)
        tgi.scrape(s)
    first_tokens = vllm.query(600.0)[Signal.REQUEST_RATE].value
    arrived = tgi.query(600.0)[Signal.REQUEST_RATE].value
    assert arrived == pytest.approx(3 * capacity, rel=0.15)
    assert first_tokens == pytest.approx(capacity, rel=0.25)


# --- every policy through every fault (closed loop) --------------------------------------

FAULT_T = 1800.0
FAULTS: dict[str, tuple[Fault, ...]] = {
    "scrape gap": (ScrapeGap(FAULT_T, FAULT_T + 120.0),),
    "silent pod": (PodSilent(FAULT_T, FAULT_T + 120.0, 1),),
    "prometheus restart": (PrometheusRestart(FAULT_T, 30.0),),
    "counter reset": (CounterReset(FAULT_T + 5.0, 2),),
}
POLICIES = (PolicyKind.HPA, PolicyKind.KPA, PolicyKind.PREDICTIVE, PolicyKind.STATIC)


def eager(spec: Spec) -> Spec:
    """No scale-down delay anywhere: a low reading would show at once."""
    behavior = spec.behavior
    if behavior is not None:
        behavior = replace(behavior, scale_down=replace(
            behavior.scale_down, stabilization_window_seconds=0))
    return replace(spec, behavior=behavior,
                   predictive=replace(spec.predictive, scale_down_window_s=0.0),
                   kpa=replace(spec.kpa, scale_down_delay_s=0.0))


def closed_loop(policy: PolicyKind, faults: tuple[Fault, ...], *, naive: bool = False,
                seconds: float = 2700.0) -> list[tuple[float, int]]:
    """A flat 40 req/s through the fluid engine, the fake Prometheus and the core: the
    replay's loop in miniature. ``naive`` reads every value Prometheus returns, judged by
    nothing (what the controller did before the observation rules)."""
    profile = load_profile()
    trace = Trace(name="flat", duration_s=seconds, rates_rps=np.full(int(seconds // 60), 40.0),
                  resolution_s=60.0)
    specs = default_specs(trace, profile, capacity_for(trace, profile, 2.0), ReplayOptions())
    spec = eager(specs[policy])
    start = math.ceil(40.0 / spec.capacity.requests_per_second) + 1
    engine = FluidEngine(profile, trace.binned_rates(1.0),
                         prompt_tokens=trace.token_mix.mean_prompt_tokens,
                         output_tokens=trace.token_mix.mean_output_tokens, slo_ttft_s=2.0,
                         initial_replicas=start)
    prom = FakePrometheus(faults=faults)
    state, desired, failures = State(), start, 0
    out = []
    t = 0.0
    while t + 15.0 <= seconds:
        t += 15.0
        engine.advance(t)
        prom.scrape(engine.sample(t))
        if naive:
            values = prom.raw(t).values
            snap = Snapshot(desired, engine.ready_count(), {
                s.value: MetricValue(v, t) for s, v in values.items()
                if v is not None and math.isfinite(v)})
        else:
            snap = prom.snapshot(t, desired, engine.ready_count())
        decision, state = decide(snap, state, spec, t)
        g = guard(decision, current=desired, failures=failures, fallback=spec.fallback,
                  max_replicas=spec.max_replicas)
        failures = g.failures
        if g.replicas != desired:
            desired = g.replicas
            engine.set_target(desired, t)
        out.append((t, desired))
    return out


@pytest.mark.parametrize(("policy", "fault"), [
    pytest.param(p, f, id=f"{p.value} holds through a {f}") for p in POLICIES for f in FAULTS])
def test_every_policy_holds_and_never_scales_down_through_each_fault(
        policy: PolicyKind, fault: str) -> None:
    run = closed_loop(policy, FAULTS[fault])
    before = [n for t, n in run if FAULT_T - 300.0 <= t < FAULT_T]
    after = [n for t, n in run if FAULT_T <= t <= FAULT_T + 600.0]
    assert before and after
    assert min(after) >= before[-1], (before[-1], after)


@pytest.mark.parametrize(("policy", "fault"), [
    # The predictive policy's scale-down band and idle hold happen to ride out this restart
    # even unjudged, so the HPA and the KPA show what a naive reading does.
    pytest.param(PolicyKind.HPA, "prometheus restart",
                 id="the hpa, reading a restarted Prometheus unjudged, scales down"),
    pytest.param(PolicyKind.KPA, "prometheus restart",
                 id="the kpa, reading a restarted Prometheus unjudged, scales down"),
    pytest.param(PolicyKind.HPA, "scrape gap",
                 id="the hpa, reading the window after a gap unjudged, scales down"),
])
def test_without_the_rules_the_same_faults_scale_down(policy: PolicyKind, fault: str) -> None:
    # The faults above are real: read naively, they look like a drop in load.
    run = closed_loop(policy, FAULTS[fault], naive=True)
    before = [n for t, n in run if t < FAULT_T]
    after = [n for t, n in run if FAULT_T <= t <= FAULT_T + 600.0]
    assert min(after) < before[-1]
