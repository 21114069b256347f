"""A TTFT percentile read from a histogram only says which bucket the truth lies in.

vLLM's TTFT buckets are (..., 1.0, 2.5, ...) s and the default SLO is 2 s: once more than
1 % of a window's requests take over 1 s, the interpolated p99 reads 2.1-2.5 s whatever
they took. These tests pin: the bucket each quantile fell in (against a slow reference and
the samples' own order statistic), the verdict against an objective (certain breach /
ambiguous / met, on several layouts and objectives), what the observation layer reports,
that an ambiguous reading never scales down nor cuts the learned capacity, and that it
stops the learner's probes at the load it was seen at.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import capacity as cap
from autoscaler.core.histogram import (
    Verdict,
    histogram_quantile_buckets,
    histogram_quantiles,
    verdict,
)
from autoscaler.core.policies import predictive
from autoscaler.core.spec import (
    SLO,
    Behavior,
    Capacity,
    PolicyKind,
    PredictiveParams,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    Spec,
)
from autoscaler.core.types import MetricValue, Reason, Signal, Snapshot, State
from autoscaler.metrics.collect import Collector, CollectorConfig
from autoscaler.metrics.presets import VLLM, get_preset
from autoscaler.metrics.source import Sample
from autoscaler.sim.fleet import TTFT_BUCKETS_S, EngineSample
from autoscaler.sim.observe import FakePrometheus

VLLM_BOUNDS = list(TTFT_BUCKETS_S)
"""vLLM's ``time_to_first_token_seconds`` buckets: ..., 0.75, 1.0, 2.5, 5.0, 7.5, ..."""
COARSE_BOUNDS = [0.1, 0.5, 2.0, 5.0]
"""Triton's default latency buckets (100, 500, 2000, 5000 ms) in seconds: the 2-s SLO is a
bucket bound there, not inside a bucket."""


# -- the bucket a quantile fell in ----------------------------------------------------------


def slow_bucketed(q: float, bounds: list[float], samples: list[float]
                  ) -> tuple[float, float, float]:
    """Prometheus' interpolation written out from the raw samples: count each bucket by
    scanning, walk the buckets until the count reaches q x n, interpolate inside it."""
    n = len(samples)
    rank = q * n
    seen = 0
    lower = 0.0
    for upper in bounds:
        inside = sum(1 for x in samples if lower < x <= upper)
        if seen + inside >= rank:
            value = upper if inside == 0 else lower + (upper - lower) * (rank - seen) / inside
            return value, lower, upper
        seen += inside
        lower = upper
    return bounds[-1], bounds[-1], math.inf


def cumulative(bounds: list[float], samples: list[float]) -> list[float]:
    return [float(sum(1 for x in samples if x <= b)) for b in bounds] + [float(len(samples))]


bounds_st = st.lists(st.floats(0.001, 100.0), min_size=1, max_size=12, unique=True).map(sorted)
samples_st = st.lists(st.floats(0.0001, 200.0), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(bounds=bounds_st, samples=samples_st, q=st.floats(0.01, 1.0))
def test_the_bucket_holds_the_interpolated_value_and_the_true_quantile(
        bounds: list[float], samples: list[float], q: float) -> None:
    (value, low, high), = histogram_quantile_buckets((q,), bounds, cumulative(bounds, samples))
    assert low <= value <= high
    # The true quantile: the ceil(q x n)-th smallest sample (Prometheus' rank is q x n).
    k = math.ceil(q * len(samples))
    truth = sorted(samples)[k - 1]
    assert low < truth <= high
    # The same bucket and value as the slow walk, and the same value as before.
    slow = slow_bucketed(q, bounds, samples)
    assert (low, high) == (slow[1], slow[2])
    assert value == pytest.approx(slow[0], rel=1e-9, abs=1e-12)
    assert histogram_quantiles((q,), bounds, cumulative(bounds, samples)) == [value]


@pytest.mark.parametrize(("samples", "q", "expected"), [
    # 100 requests, 2 over 1.0 s (at 1.1 s): rank 99 lies in (1.0, 2.5], holding 2;
    # 1.0 + 1.5 x (99 - 98) / 2 = 1.75 s while the true p99 is 1.1 s.
    pytest.param([0.3] * 98 + [1.1] * 2, 0.99, (1.75, 1.0, 2.5), id="two of 100 at 1.1 s"),
    # 4 over 1.0 s: 1.0 + 1.5 x (99 - 96) / 4 = 2.125 s, above a 2-s SLO they all met.
    pytest.param([0.3] * 96 + [1.1] * 4, 0.99, (2.125, 1.0, 2.5), id="four of 100 at 1.1 s"),
    # Every request in the first bucket: low is 0 (Prometheus interpolates from 0).
    pytest.param([0.0005] * 10, 0.5, (0.0005, 0.0, 0.001), id="first bucket starts at 0"),
    # Past the highest bound: Prometheus returns that bound, the truth lies above it.
    pytest.param([3000.0] * 10, 0.99, (2560.0, 2560.0, math.inf), id="the +Inf bucket"),
])
def test_hand_cases_on_vllm_buckets(samples: list[float], q: float,
                                    expected: tuple[float, float, float]) -> None:
    got = histogram_quantile_buckets((q,), VLLM_BOUNDS, cumulative(VLLM_BOUNDS, samples))[0]
    assert got == pytest.approx(expected)


def test_an_empty_histogram_has_no_bucket() -> None:
    got = histogram_quantile_buckets((0.99,), [1.0, 2.5], [0.0, 0.0, 0.0])[0]
    assert all(math.isnan(x) for x in got)


# -- the verdict against an objective --------------------------------------------------------


def read(bounds: list[float], samples: list[float], q: float = 0.99) -> tuple[float, float]:
    value, low, _ = histogram_quantile_buckets((q,), bounds, cumulative(bounds, samples))[0]
    return value, low


@pytest.mark.parametrize(("bounds", "samples", "objective", "expected"), [
    # vLLM buckets, 2-s SLO inside (1.0, 2.5].
    pytest.param(VLLM_BOUNDS, [0.3] * 96 + [1.1] * 4, 2.0, Verdict.AMBIGUOUS,
                 id="vllm 2s: 4% at 1.1s reads 2.125 ambiguous"),
    pytest.param(VLLM_BOUNDS, [0.3] * 96 + [2.4] * 4, 2.0, Verdict.AMBIGUOUS,
                 id="vllm 2s: 4% at 2.4s reads 2.125 the same ambiguous"),
    pytest.param(VLLM_BOUNDS, [0.3] * 90 + [3.0] * 10, 2.0, Verdict.BREACH,
                 id="vllm 2s: 10% at 3s reads in (2.5, 5] a certain breach"),
    pytest.param(VLLM_BOUNDS, [0.3] * 98 + [1.1] * 2, 2.0, Verdict.MET,
                 id="vllm 2s: 2% at 1.1s reads 1.75 met"),
    pytest.param(VLLM_BOUNDS, [0.3] * 100, 2.0, Verdict.MET, id="vllm 2s: all fast met"),
    # Length-aware: 2 s + 0.001 s/token x 1,000 tokens = 3 s, inside (2.5, 5.0].
    pytest.param(VLLM_BOUNDS, [0.3] * 96 + [1.1] * 4, 3.0, Verdict.MET,
                 id="vllm 3s: 2.125 in (1, 2.5] is met"),
    pytest.param(VLLM_BOUNDS, [0.3] * 90 + [3.0] * 10, 3.0, Verdict.AMBIGUOUS,
                 id="vllm 3s: 10% at 3s reads 4.25 in (2.5, 5] ambiguous"),
    pytest.param(VLLM_BOUNDS, [0.3] * 90 + [6.0] * 10, 3.0, Verdict.BREACH,
                 id="vllm 3s: 10% at 6s reads in (5, 7.5] a certain breach"),
    # Triton's coarse buckets: 2 s is a bound, so nothing above it is doubtful.
    pytest.param(COARSE_BOUNDS, [0.3] * 296 + [2.1] * 4, 2.0, Verdict.BREACH,
                 id="coarse 2s: a bound, 2.75 in (2, 5] is a certain breach"),
    pytest.param(COARSE_BOUNDS, [0.3] * 96 + [1.9] * 4, 2.0, Verdict.MET,
                 id="coarse 2s: 1.625 in (0.5, 2] is met"),
    # 300 requests, 4 in (2, 5]: rank 297 reads 2 + 3 x (297 - 296) / 4 = 2.75 s.
    pytest.param(COARSE_BOUNDS, [0.3] * 296 + [2.1] * 4, 3.0, Verdict.MET,
                 id="coarse 3s: 2.75 in (2, 5] is met"),
    pytest.param(COARSE_BOUNDS, [0.3] * 90 + [2.1] * 10, 3.0, Verdict.AMBIGUOUS,
                 id="coarse 3s: 4.7 in (2, 5] ambiguous"),
])
def test_verdict_on_each_layout_and_objective(bounds: list[float], samples: list[float],
                                              objective: float, expected: Verdict) -> None:
    value, low = read(bounds, samples)
    assert verdict(value, low, objective) is expected


@pytest.mark.parametrize(("value", "low", "objective", "expected"), [
    pytest.param(2.2, None, 2.0, Verdict.BREACH, id="no bucket known: taken at its value"),
    pytest.param(2.2, math.nan, 2.0, Verdict.BREACH, id="a NaN bound is no bucket"),
    pytest.param(2.0, 1.0, 2.0, Verdict.MET, id="exactly at the objective is met"),
    pytest.param(2.6, 2.5, 2.5, Verdict.BREACH, id="low at the objective: truth above it"),
])
def test_verdict_edges(value: float, low: float | None, objective: float,
                       expected: Verdict) -> None:
    assert verdict(value, low, objective) is expected


# -- what the observation layer reports ------------------------------------------------------


def engine_sample(t: float, per_bucket: list[float]) -> EngineSample:
    """A fleet whose TTFT histogram grows by ``per_bucket`` (per bucket, +Inf last) each
    second."""
    cum, total = [], 0.0
    for c in per_bucket:
        total += c
        cum.append(total * t)
    return EngineSample(
        t=t, requests_total=total * t, prompt_tokens_total=100 * total * t,
        generation_tokens_total=10 * total * t, ttft_buckets=tuple(cum), ttft_sum=0.0,
        waiting=0.0, running=5.0, kv_usage=0.25, gpu_busy_seconds_total=0.5 * t * 2,
        ready_replicas=2, first_tokens_total=total * t)


def four_percent_slow() -> list[float]:
    """96 requests/s in (0.25, 0.5], 4 in (1.0, 2.5]: p99 reads 2.125 s, p95 0.5 s."""
    per = [0.0] * (len(TTFT_BUCKETS_S) + 1)
    per[TTFT_BUCKETS_S.index(0.5)] = 96.0
    per[TTFT_BUCKETS_S.index(2.5)] = 4.0
    return per


@pytest.mark.parametrize("cache", [True, False], ids=["memo path", "slow path"])
def test_the_replay_reports_the_bucket_of_p95_and_p99(cache: bool) -> None:
    prom = FakePrometheus(preset="vllm", rate_window_s=60.0, cache=cache)
    for k in range(1, 9):
        prom.scrape(engine_sample(15.0 * k, four_percent_slow()))
    m = prom.query(120.0)
    assert m[Signal.TTFT_P99].value == pytest.approx(2.125)
    assert m[Signal.TTFT_P99_BUCKET_LOW].value == 1.0
    # p95: rank 95 of 100 lies in (0.25, 0.5] holding 96: 0.25 + 0.25 x 95 / 96.
    assert m[Signal.TTFT_P95].value == pytest.approx(0.25 + 0.25 * 95 / 96)
    assert m[Signal.TTFT_P95_BUCKET_LOW].value == 0.25
    assert m[Signal.TTFT_P99_BUCKET_LOW].observed_at == m[Signal.TTFT_P99].observed_at


def test_a_quantile_prometheus_computes_comes_without_a_bucket() -> None:
    # Triton's TTFT query is histogram_quantile(...) / 1000: Prometheus computes it, live
    # and in the replay alike, so no bucket is known.
    prom = FakePrometheus(preset="triton", rate_window_s=60.0)
    for k in range(1, 9):
        prom.scrape(engine_sample(15.0 * k, four_percent_slow()))
    m = prom.query(120.0)
    assert Signal.TTFT_P99 in m
    assert Signal.TTFT_P99_BUCKET_LOW not in m
    assert Signal.TTFT_P95_BUCKET_LOW not in m


class BucketSource:
    """Answers any query with one target's TTFT bucket rates (a fake Prometheus)."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = rates

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        return [Sample(labels={"namespace": "a", "workload": "chat", "le": le},
                       time=at or 0.0, value=v) for le, v in self.rates.items()]


def test_the_live_collector_reports_the_bucket_of_its_local_quantiles() -> None:
    # Cumulative rates: 96/s up to 0.5 s, 100/s up to 2.5 s and in all.
    rates = {"0.25": 0.0, "0.5": 96.0, "1.0": 96.0, "2.5": 100.0, "5.0": 100.0,
             "+Inf": 100.0}
    c = Collector(BucketSource(rates), CollectorConfig(preset=VLLM))  # type: ignore[arg-type]
    out = c._quantiles("X", [(Signal.TTFT_P99, 0.99), (Signal.TTFT_P50, 0.5)], 10.0)
    key = next(iter(out[Signal.TTFT_P99]))
    assert out[Signal.TTFT_P99][key] == (10.0, pytest.approx(2.125))
    assert out[Signal.TTFT_P99_BUCKET_LOW][key] == (10.0, 1.0)
    assert Signal.TTFT_P50 in out  # p50 has no bucket signal: none is asked of it
    assert len(out) == 3


def test_the_collector_plans_no_bucket_for_a_scaled_quantile() -> None:
    plain, quantiles = CollectorConfig(preset=get_preset("triton")).plan()
    assert Signal.TTFT_P99 in plain and not quantiles


# -- the decision: never scale down on an ambiguous reading, ask nothing on it ---------------

NO_DOWN_STABILIZATION = Behavior(
    scale_down=ScalingRules(
        stabilization_window_seconds=0,
        policies=(ScalingPolicy(ScalingPolicyType.PERCENT, 100, 15),)))


def make_spec(*, ttft_s: float = 2.0, per_token: float = 0.0) -> Spec:
    """4 req/s per replica planned at 80 %, no hold: 3 req/s needs 1 replica."""
    return Spec(max_replicas=200, min_replicas=1,
                capacity=Capacity(requests_per_second=4.0, concurrency=8.0),
                slo=SLO(ttft_seconds=ttft_s, ttft_seconds_per_prompt_token=per_token),
                policy=PolicyKind.PREDICTIVE, behavior=NO_DOWN_STABILIZATION,
                predictive=PredictiveParams(scale_down_band=1.0, learn_capacity=False,
                                            keep_idle_cold_starts=0.0,
                                            target_utilization=0.8, scale_down_window_s=0.0))


def snap(at: float, ttft: float, low: float | None, *, current: int = 10,
         prompt_rate: float | None = None) -> Snapshot:
    metrics = {Signal.REQUEST_RATE: MetricValue(3.0, at),
               Signal.QUEUE_DEPTH: MetricValue(0.0, at),
               Signal.TTFT_P99: MetricValue(ttft, at)}
    if low is not None:
        metrics[Signal.TTFT_P99_BUCKET_LOW] = MetricValue(low, at)
    if prompt_rate is not None:
        metrics[Signal.PROMPT_TOKENS_RATE] = MetricValue(prompt_rate, at)
    return Snapshot(current_replicas=current, ready_replicas=current, metrics=metrics)


@pytest.mark.parametrize(("ttft", "low", "spec_kw", "prompt_rate", "expected", "reason"), [
    # 3 req/s needs 1 of the 10; the readings decide whether they may go.
    pytest.param(0.5, 0.25, {}, None, 1, Reason.FORECAST, id="met: scales down"),
    pytest.param(2.2, 1.0, {}, None, 10, Reason.SLO_CORRECTION,
                 id="ambiguous in (1, 2.5] of a 2s SLO: held, nothing added"),
    pytest.param(2.2, None, {}, None, 11, Reason.SLO_CORRECTION,
                 id="no bucket known: a slip as before, one added"),
    pytest.param(2.6, 2.5, {}, None, 11, Reason.SLO_CORRECTION,
                 id="certain breach above 2.5: one added"),
    # 2 s + 0.001 x (3,000 / 3 = 1,000 tokens) = 3 s: 2.2 s is met; 4 s in (2.5, 5] is not
    # certain; 6 s in (5, 7.5] is.
    pytest.param(2.2, 1.0, {"per_token": 0.001}, 3000.0, 1, Reason.FORECAST,
                 id="length-aware 3s: 2.2 met"),
    pytest.param(4.0, 2.5, {"per_token": 0.001}, 3000.0, 10, Reason.SLO_CORRECTION,
                 id="length-aware 3s: 4.0 in (2.5, 5] ambiguous"),
    pytest.param(6.0, 5.0, {"per_token": 0.001}, 3000.0, 11, Reason.SLO_CORRECTION,
                 id="length-aware 3s: 6.0 in (5, 7.5] a breach"),
    # A 2.5-s SLO on a bucket bound: a reading above it is a breach.
    pytest.param(3.0, 2.5, {"ttft_s": 2.5}, None, 11, Reason.SLO_CORRECTION,
                 id="SLO on a bound: 3.0 in (2.5, 5] a breach"),
])
def test_ambiguous_readings_hold_but_ask_for_nothing(
        ttft: float, low: float | None, spec_kw: dict[str, float], prompt_rate: float | None,
        expected: int, reason: Reason) -> None:
    spec = make_spec(**spec_kw)
    state = State()
    for t in (0.0, 15.0, 30.0, 45.0):  # four readings in a row: past any confirmation
        d, state = predictive.decide(snap(t, ttft, low, prompt_rate=prompt_rate), state,
                                     spec, t)
    assert (d.replicas, d.reason) == (expected, reason)


@settings(max_examples=200, deadline=None)
@given(ttft=st.floats(2.0001, 2.5), low=st.floats(0.0, 1.9999), current=st.integers(1, 40),
       steps=st.integers(1, 6))
def test_an_ambiguous_reading_never_scales_down(ttft: float, low: float, current: int,
                                                steps: int) -> None:
    spec = make_spec()
    state = State()
    for i in range(steps):
        t = 15.0 * i
        d, state = predictive.decide(snap(t, ttft, low, current=current), state, spec, t)
        assert d.replicas >= current


def test_an_ambiguous_reading_between_slips_neither_confirms_nor_resets_them() -> None:
    # breach, ambiguous, breach: two certain slips with a doubtful one between are still
    # two in a row (the doubtful reading is evidence of neither).
    spec = make_spec()
    state = State()
    for t, (ttft, low) in zip((0.0, 15.0, 30.0), ((2.6, 2.5), (2.2, 1.0), (2.6, 2.5)),
                              strict=True):
        d, state = predictive.decide(snap(t, ttft, low), state, spec, t)
    assert d.replicas == 11


# -- the learner: an ambiguous reading is no breach, and it brakes probing ------------------

SLO_S = 2.0
PRIOR = 10.0  # req/s per replica


def observe(load_rps: float, ttft: float, low: float | None, ready: int = 4
            ) -> cap.FleetObservation:
    """A settled fleet of ``ready`` replicas each serving ``load_rps`` (requests only)."""
    return cap.FleetObservation(ready_replicas=ready, current_replicas=ready,
                                served=(None, None, load_rps * ready), ttft_s=ttft,
                                queue=0.0, kv_usage=0.3, ttft_bucket_low_s=low)


def step(est: cap.LearnedCapacity, obs: cap.FleetObservation, now: float
         ) -> cap.LearnedCapacity:
    return cap.update(est, obs, slo_ttft_s=SLO_S, now=now, prior_rps=PRIOR,
                      tokens_per_request=(None, None))


def settled(load_rps: float = 8.0) -> tuple[cap.LearnedCapacity, float]:
    """An estimate of 10 req/s whose fleet has been settled (and slack) for 2 minutes."""
    est = cap.start(PRIOR, (None, None))
    t = 0.0
    for _ in range(9):
        est = step(est, observe(load_rps, 0.4, 0.25), t)
        t += 15.0
    return est, t


@pytest.mark.parametrize(("ttft", "low", "cut"), [
    pytest.param(2.2, 1.0, False, id="ambiguous: no cut"),
    pytest.param(2.6, 2.5, True, id="certain breach: cut"),
    pytest.param(2.2, None, True, id="no bucket known: a breach as before"),
])
def test_only_a_certain_breach_cuts_the_estimate(ttft: float, low: float | None,
                                                 cut: bool) -> None:
    est, t = settled()
    before = est.capacity[2]
    for k in range(3):  # past OVERLOAD_CONFIRM
        est = step(est, observe(9.0, ttft, low), t + 15.0 * k)
    # A confirmed breach at 9 req/s per replica aims at 0.9 x 9 = 8.1: 10 + 0.3 x (8.1 -
    # 10) = 9.43 after the first, lower after the second.
    assert (est.capacity[2] < before) is cut
    assert (not math.isnan(est.breach[2]) if est.breach else False) is cut


def test_an_ambiguous_reading_neither_widens_the_envelope_nor_forgets_a_breach() -> None:
    est, t = settled()
    env = est.envelope[2]
    for k in range(2):  # a breach at 9 req/s per replica
        est = step(est, observe(9.0, 2.6, 2.5), t + 15.0 * k)
    t += 30.0
    breach, env = est.breach[2], est.envelope[2]
    # A doubtful reading at a load far past breach / 0.9 = 10 forgets nothing.
    est = step(est, observe(12.0, 2.2, 1.0), t)
    assert est.breach[2] == breach
    assert est.envelope[2] == env
    assert est.doubt[2] == 12.0


def closed_loop(doubtful_from: float, *, hours: float = 4.0
                ) -> list[tuple[float, float, float]]:
    """(time, estimate, per-replica load) of a fleet planned at 85 % of its estimate,
    whose TTFT p99 reads 0.6 s below ``doubtful_from`` req/s per replica and 2.2 s in
    vLLM's (1.0, 2.5] bucket from there on (a 2-s SLO: ambiguous)."""
    est, t = settled(8.5)
    out = []
    for _ in range(int(hours * 240)):
        load = 0.85 * est.capacity[2]
        ttft, low = (2.2, 1.0) if load >= doubtful_from else (0.6, 0.5)
        est = step(est, observe(load, ttft, low), t)
        out.append((t, est.capacity[2], load))
        t += 15.0
    return out


@pytest.mark.parametrize("doubtful_from", [9.0, 11.0, 14.0])
def test_probes_stop_at_the_load_that_read_ambiguous(doubtful_from: float) -> None:
    log = closed_loop(doubtful_from)
    first = next(i for i, (_, _, load) in enumerate(log) if load >= doubtful_from)
    seen_at = log[first][2]
    # The load where it read doubtful: the fleet never carries more, and the estimate is
    # neither cut nor probed past that load...
    assert max(load for _, _, load in log[first:]) == pytest.approx(seen_at)
    assert min(c for _, c, _ in log[first:]) == pytest.approx(log[first][1])
    # ...and 5 % a minute would have taken it well past: the same fleet reading 0.6 s
    # everywhere climbs to the probe ceiling (1.5 x the envelope, compounding).
    free = closed_loop(math.inf)
    assert max(load for _, _, load in free) > 1.5 * seen_at


def test_a_clearly_higher_load_meeting_the_slo_lifts_the_brake() -> None:
    est, t = settled(8.5)
    est = step(est, observe(9.0, 2.2, 1.0), t)
    assert not est.doubt or math.isnan(est.doubt[2])  # one reading is not yet evidence
    est = step(est, observe(9.0, 2.2, 1.0), t + 15.0)
    assert est.doubt[2] == 9.0
    # 9.5 < 9 / 0.9 = 10: not clearly higher, the doubt stands.
    est = step(est, observe(9.5, 0.6, 0.5), t + 30.0)
    assert est.doubt[2] == 9.0
    est = step(est, observe(10.0, 0.6, 0.5), t + 45.0)
    assert math.isnan(est.doubt[2])


def test_the_brake_is_forgotten_after_the_breach_memory() -> None:
    est, t = settled(8.5)
    est = step(est, observe(9.0, 2.2, 1.0), t)
    est = step(est, observe(9.0, 2.2, 1.0), t + 15.0)
    t += 15.0
    est = replace(est, capacity=(math.nan, math.nan, 9.0 / 0.85))
    # Slack readings at the doubtful load: no probe while the doubt is remembered...
    later = step(est, observe(9.0, 0.6, 0.5), t + 15.0)
    assert later.capacity[2] == pytest.approx(9.0 / 0.85)
    # ...and probes again once it is older than BREACH_MEMORY_S (4 h).
    old = step(est, observe(8.0, 0.6, 0.5), t + 4 * 3600.0 + 15.0)
    assert old.capacity[2] > 9.0 / 0.85
