"""The fake Prometheus: rate() and histogram_quantile() against slow references."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.types import Signal
from autoscaler.sim.fleet import TTFT_BUCKETS_S, EngineSample
from autoscaler.sim.observe import FakePrometheus, histogram_quantile, prom_rate


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


def sample(t: float, *, rps: float = 2.0, waiting: float = 3.0) -> EngineSample:
    n = len(TTFT_BUCKETS_S) + 1
    return EngineSample(
        t=t, requests_total=rps * t, prompt_tokens_total=100 * rps * t,
        generation_tokens_total=10 * rps * t, ttft_buckets=tuple([rps * t] * n),
        ttft_sum=0.0, waiting=waiting, running=5.0, kv_usage=0.25,
        gpu_busy_seconds_total=0.5 * t * 2, ready_replicas=2)


def test_snapshot_uses_the_last_four_scrapes_and_stamps_the_newest() -> None:
    prom = FakePrometheus(rate_window_s=60.0)
    for k in range(1, 9):
        prom.scrape(sample(15.0 * k))
    m = prom.query(120.0)
    assert m[Signal.REQUEST_RATE].value == pytest.approx(2.0)
    assert m[Signal.REQUEST_RATE].observed_at == 120.0
    assert m[Signal.PROMPT_TOKENS_RATE].value == pytest.approx(200.0)
    assert m[Signal.CONCURRENCY].value == 8.0
    assert m[Signal.GPU_UTILIZATION].value == pytest.approx(0.5)
    # Every observation sits in the first bucket: p50 is half of its bound.
    assert m[Signal.TTFT_P50].value == pytest.approx(TTFT_BUCKETS_S[0] / 2)
    assert set(m) == set(Signal)


def test_an_outage_leaves_only_old_samples_and_then_nothing() -> None:
    prom = FakePrometheus(rate_window_s=60.0, outages=[(100.0, 400.0)])
    for k in range(1, 27):
        prom.scrape(sample(15.0 * k))
    during = prom.query(200.0)
    assert Signal.REQUEST_RATE not in during  # no two samples in (140, 200]
    assert during[Signal.QUEUE_DEPTH].observed_at == 90.0  # the newest seen, old
    late = prom.query(395.0)
    assert Signal.QUEUE_DEPTH not in late  # beyond the 5-minute lookback


@given(steps=st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=3, max_size=40),
       resets=st.sets(st.integers(min_value=1, max_value=39), max_size=4))
@settings(max_examples=100, deadline=None)
def test_query_rates_equal_prom_rate_on_the_raw_window_even_across_resets(
    steps: list[float], resets: set[int]
) -> None:
    # A counter that grows by `steps` and restarts from 0 (a replica restart) at `resets`.
    raw: list[tuple[float, float]] = []
    value = 0.0
    prom = FakePrometheus(rate_window_s=60.0)
    for k, inc in enumerate(steps, start=1):
        value = inc if k in resets else value + inc
        t = 15.0 * k
        raw.append((t, value))
        prom.scrape(EngineSample(
            t=t, requests_total=value, prompt_tokens_total=0.0, generation_tokens_total=0.0,
            ttft_buckets=tuple([0.0] * (len(TTFT_BUCKETS_S) + 1)), ttft_sum=0.0, waiting=0.0,
            running=0.0, kv_usage=0.0, gpu_busy_seconds_total=0.0, ready_replicas=1))
    now = raw[-1][0]
    window = [(t, v) for t, v in raw if t > now - 60.0]
    expected = prom_rate(window)
    got = prom.query(now).get(Signal.REQUEST_RATE)
    assert expected is not None and got is not None
    assert got.value == pytest.approx(expected, rel=1e-9, abs=1e-9)
