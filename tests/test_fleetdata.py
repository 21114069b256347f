"""Reconstruction of a workload and fitting of a profile from Prometheus series, against a
fake ``MetricsSource`` that answers range queries from per-pod arrays (no server)."""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.spec import Capacity, PolicyKind
from autoscaler.errors import SpecError, TraceError
from autoscaler.fleetdata.fit import ColdStartFit, fit_profile, profile_yaml
from autoscaler.fleetdata.history import (
    HistoryQuery,
    Target,
    at_scrape_step,
    conserving_nonnegative,
    counter_increase,
    onto_grid,
    parse_duration_s,
    read_per_pod,
    reconstruct,
    scrape_interval,
    time_range,
)
from autoscaler.fleetdata.tracefile import (
    is_fleet_trace,
    load_trace_file,
    trace_document,
    write_trace,
)
from autoscaler.metrics.source import RangeSeries, Sample
from autoscaler.replaying import ReplayOptions, busiest_rate, default_specs
from autoscaler.sim.profiles import load_profile, parse_profile
from autoscaler.traces.model import Trace

START = 1_800_000_000.0


class FakeSource:
    """Per-pod values sampled every ``scrape_s`` (60) s at START + offset + scrape_s x k,
    keyed by metric name; NaN = no sample.

    ``last_over_time(x[w])`` is answered as Prometheus 2.x does: the newest sample in the
    *closed* range [t - w, t], so ``[60s]`` at t still holds the sample taken at t - 60 s.
    ``timestamp(x)`` is the time of the newest sample at or before t (5-minute lookback).
    """

    def __init__(self, series: dict[str, dict[str, list[float]]],
                 instants: dict[str, list[Sample]] | None = None, *,
                 offset_s: float = 0.0, scrape_s: float = 60.0) -> None:
        self.series = series
        self.instants = instants or {}
        self.offset_s = offset_s
        self.scrape_s = scrape_s
        self.ranges: list[tuple[str, float, float, float]] = []

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        for name, samples in self.instants.items():
            if f"({name}{{" in promql:
                return samples
        return []

    def query_range(self, promql: str, start: float, end: float,
                    step_s: float) -> list[RangeSeries]:
        self.ranges.append((promql, start, end, step_s))
        m = re.search(r"last_over_time\(([^{]+)\{.*\[(\d+)(ms|s)\]\)", promql)
        stamp = re.search(r"timestamp\(([^{]+)\{", promql)
        assert m or stamp, promql
        if m:
            name = m.group(1)
            window = float(m.group(2)) / (1000.0 if m.group(3) == "ms" else 1.0)
        else:
            assert stamp is not None
            name, window = stamp.group(1), 300.0
        out = []
        for pod, values in self.series.get(name, {}).items():
            pts = []
            t = start
            while t <= end + 1e-9:
                # The newest sample with t - window <= its time <= t.
                k = math.floor((t - START - self.offset_s) / self.scrape_s + 1e-9)
                while k >= 0 and self._at(k) >= t - window - 1e-9:
                    if k < len(values) and math.isfinite(values[k]):
                        pts.append((t, values[k] if m else self._at(k)))
                        break
                    k -= 1
                t += step_s
            if pts:
                out.append(RangeSeries(labels={"pod": pod}, points=tuple(pts)))
        return out

    def _at(self, k: int) -> float:
        return START + self.offset_s + self.scrape_s * k

    def query_series(self, promql: str, at: float | None = None) -> list[RangeSeries]:
        """``x{...}[w]``: each pod's raw samples with at - w <= time <= at."""
        m = re.fullmatch(r"([^{]+)\{.*\}\[(\d+)ms\]", promql)
        assert m and at is not None, promql
        window = float(m.group(2)) / 1000.0
        out = []
        for pod, values in self.series.get(m.group(1), {}).items():
            pts = tuple((self._at(k), v) for k, v in enumerate(values)
                        if math.isfinite(v) and at - window - 1e-9 <= self._at(k) <= at + 1e-9)
            if pts:
                out.append(RangeSeries(labels={"pod": pod}, points=pts))
        return out


NAN = math.nan


@pytest.mark.parametrize(("values", "new_pod", "expected"), [
    pytest.param([0, 5, 9, 12], False, [NAN, 5, 4, 3], id="plain"),
    pytest.param([10, 15, 3, 7], False, [NAN, 5, 3, 4], id="reset-counts-new-value"),
    pytest.param([NAN, 5, 9, 2, NAN, 4], True, [NAN, 5, 4, 2, NAN, NAN],
                 id="new-pod-counts-from-zero-and-gap-breaks"),
    pytest.param([7, 9], True, [NAN, 2], id="pod-present-at-start-is-baseline"),
])
def test_counter_increase(values: list[float], new_pod: bool, expected: list[float]) -> None:
    got = counter_increase(np.asarray(values, dtype=float), new_pod=new_pod)
    np.testing.assert_array_equal(got, np.asarray(expected, dtype=float))


def _query(steps: int, step: float = 60.0) -> HistoryQuery:
    return HistoryQuery(Target("llm", "chat"), START, START + (steps - 1) * step, step)


def test_arrivals_are_first_tokens_plus_queue_growth() -> None:
    # Two pods. Step 0->1: first tokens 60+60 = 120, queue 0 -> 30 (+30): 150 arrivals.
    # Step 1->2: first tokens 90+90 = 180, queue 30 -> 0 (-30): 150 arrivals.
    # 150 arrivals / 60 s = 2.5 req/s both steps.
    series = {
        "vllm:time_to_first_token_seconds_count": {"a": [0, 60, 150], "b": [0, 60, 150]},
        "vllm:num_requests_waiting": {"a": [0, 15, 0], "b": [0, 15, 0]},
        "vllm:request_prompt_tokens_sum": {"a": [0, 60_000, 150_000], "b": [0, 60_000,
                                                                              150_000]},
        "vllm:request_prompt_tokens_count": {"a": [0, 60, 150], "b": [0, 60, 150]},
        "vllm:request_generation_tokens_sum": {"a": [0, 12_000, 30_000], "b": [0, 12_000,
                                                                                 30_000]},
        "vllm:request_generation_tokens_count": {"a": [0, 60, 150], "b": [0, 60, 150]},
    }
    rec = reconstruct(FakeSource(series), _query(3))
    assert rec.trace.rates_rps is not None
    np.testing.assert_allclose(rec.trace.rates_rps, [2.5, 2.5])
    assert rec.trace.duration_s == 120.0
    assert rec.trace.gaps == ()
    # 300,000 prompt tokens over 300 requests = 1,000; 60,000 / 300 = 200.
    assert rec.trace.token_mix.mean_prompt_tokens == pytest.approx(1000.0)
    assert rec.trace.token_mix.mean_output_tokens == pytest.approx(200.0)
    assert rec.pods_seen == 2


@pytest.mark.parametrize(("steps", "valid", "expected"), [
    # cumulative [5, 14, 11, 15] -> lower envelope [5, 11, 11, 15]: 15 requests kept (a
    # clamp at 0 would give [5, 9, 0, 4] = 18).
    pytest.param([5, 9, -3, 4], [1, 1, 1, 1], [5, 6, 0, 4], id="shortfall-moves-back"),
    pytest.param([3, -5, 4], [1, 1, 1], [0, 0, 2], id="run-summing-negative-starts-at-0"),
    # The gap splits the runs: the -2 after it cannot take requests from before it.
    pytest.param([4, 7, 1, -2, 6], [1, 1, 0, 1, 1], [4, 7, 0, 0, 4], id="not-across-gaps"),
    pytest.param([1, 2, 3], [1, 1, 1], [1, 2, 3], id="non-negative-unchanged"),
])
def test_conserving_nonnegative(steps: list[float], valid: list[int],
                                expected: list[float]) -> None:
    got = conserving_nonnegative(np.asarray(steps, dtype=float), np.asarray(valid, bool))
    np.testing.assert_allclose(got, expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 100), st.booleans()), min_size=1, max_size=40))
def test_conserving_nonnegative_keeps_each_runs_total(cells: list[tuple[float, bool]]
                                                      ) -> None:
    steps = np.asarray([x for x, _ in cells])
    valid = np.asarray([v for _, v in cells])
    got = conserving_nonnegative(steps, valid)
    assert (got >= -1e-9).all()
    assert (got[~valid] == 0).all()
    # Every run's total is kept, except a run whose cumulative sum ends below 0 (that
    # shortfall has no earlier step to come from): it ends at max(0, its total), and
    # every prefix keeps at most what it counted.
    k = 0
    while k < len(cells):
        if not valid[k]:
            k += 1
            continue
        j = k
        while j < len(cells) and valid[j]:
            j += 1
        total = float(steps[k:j].sum())
        assert float(got[k:j].sum()) == pytest.approx(max(0.0, total), abs=1e-6)
        k = j


def test_a_twin_history_reads_back_as_its_trace_through_a_burst(tmp_path: Path) -> None:
    """The proof's OpenMetrics history, read through reconstruct (fake Prometheus with 2.x
    ranges): a burst that overloads a fixed fleet must read back minute by minute.

    Before, the twin counted a request both as served (first token) and as waiting (behind
    other prefills, which its waiting gauge includes), and arrivals = first tokens + queue
    growth counted it twice: the burst's busiest minute read 137 req/s for 100."""
    from autoscaler.fleetdata.openmetrics import HistorySpec, write_history
    from autoscaler.traces.model import TokenMix, Trace

    # 90 minutes at 20 req/s with 80 req/s from minute 40 to 50 (4 replicas hold ~52).
    rates = np.full(90, 20.0)
    rates[40:50] = 80.0
    trace = Trace(name="burst", duration_s=5400.0, rates_rps=rates, resolution_s=60.0,
                  token_mix=TokenMix(1000.0, 200.0))
    om = tmp_path / "h.om"
    write_history(HistorySpec(trace=trace, profile=load_profile("llama3-8b-h100"),
                              start_unix=START, replicas=[(0.0, 4)]), om)
    series: dict[str, dict[str, list[float]]] = {}
    pat = re.compile(r'^([^{ ]+)\{(.*)\} (\S+) (\S+)$')
    for line in om.read_text().splitlines():
        m = pat.match(line)
        if not m:
            continue
        pod = re.search(r'pod="([^"]+)"', m.group(2))
        if pod is None or m.group(1) not in ("vllm:time_to_first_token_seconds_count",
                                             "vllm:num_requests_waiting"):
            continue
        arr = series.setdefault(m.group(1), {}).setdefault(pod.group(1), [NAN] * 91)
        arr[round((float(m.group(4)) - START) / 60.0)] = float(m.group(3))
    rec = reconstruct(FakeSource(series), _query(91))
    got = rec.trace.rates_rps
    assert got is not None
    known = np.ones(90, bool)
    for a, b in rec.trace.gaps:  # the first minutes, before a replica was ready
        known[round(a / 60):round(b / 60)] = False
    assert known[10:].all(), rec.trace.gaps
    np.testing.assert_allclose(got[known], rates[known], rtol=1e-6)


@pytest.mark.parametrize("offset", [1.0, 15.0, 30.0, 45.0, 59.0])
def test_samples_off_the_step_grid_are_placed_at_their_own_times(offset: float) -> None:
    # Scrapes `offset` s past each minute: 60, 60, 240, 60 requests between the samples
    # (1, 1, 4, 1 req/s). Read on the minute, each reading is 60 - offset s old, so the
    # trace's bins start on the samples' phase (offset - 60 s from the range's start) and
    # hold exactly the requests between two of them, at every phase, not one tuned to.
    # Worked, 30 s: [30, 90) s is the trace's second bin; before, the 4 req/s was placed
    # at [180, 240) s, 30 s after it happened.
    series = {"vllm:time_to_first_token_seconds_count": {"a": [0, 60, 120, 360, 420, 480]},
              "vllm:num_requests_waiting": {"a": [0] * 6}}
    rec = reconstruct(FakeSource(series, offset_s=offset), _query(6))
    assert rec.start_unix == START + offset - 60.0
    assert rec.trace.rates_rps is not None
    # Bin 0 ([offset - 60, offset) s) ends with the first sample: before it nothing was seen.
    np.testing.assert_allclose(rec.trace.rates_rps, [0, 1, 1, 4, 1])
    assert rec.trace.gaps == ((0.0, 60.0),)


@pytest.mark.parametrize(("scrape_s", "missing", "expected"), [
    pytest.param(60.0, (), 60.0, id="60s"),
    pytest.param(15.0, (), 15.0, id="15s"),
    pytest.param(15.0, tuple(range(20, 60)), 15.0, id="15s-with-a-10-minute-gap"),
    pytest.param(7.5, (), 7.5, id="7.5s-kept"),
    # Sample times a few ms apart from whole seconds: the configured 15 s, not 15.004
    # (over 7 days a 15.004-s step drifts 161 s from the scrapes).
    pytest.param(15.004, (), 15.0, id="jitter-rounds-to-the-second"),
])
def test_scrape_interval_is_read_from_the_samples(scrape_s: float, missing: tuple[int, ...],
                                                  expected: float) -> None:
    n = round(3 * 3600 / scrape_s)
    values = [NAN if k in missing else float(k) for k in range(n)]
    src = FakeSource({"vllm:time_to_first_token_seconds_count": {"a": values, "b": values}},
                     scrape_s=scrape_s)
    q = HistoryQuery(Target("llm", "chat"), START, START + 3 * 3600.0, 60.0)
    assert scrape_interval(src, q) == expected
    stepped, note = at_scrape_step(src, q)
    assert stepped.step_s == expected and f"step {expected:g} s" in note
    assert stepped.start <= q.start and stepped.start % expected == pytest.approx(0.0)


def test_no_scrape_interval_found_keeps_the_step_and_says_so() -> None:
    # One sample per pod: no spacing to read.
    src = FakeSource({"vllm:time_to_first_token_seconds_count": {"a": [5.0]}})
    q = HistoryQuery(Target("llm", "chat"), START, START + 3600.0, 60.0)
    assert scrape_interval(src, q) is None
    stepped, note = at_scrape_step(src, q)
    assert stepped == q and "not found" in note and "step 60 s" in note


def test_fast_scrapes_are_reconstructed_at_their_own_interval() -> None:
    # 15-s scrapes 4 s past the quarter minute: 15, 15, 60, 15, 30, 15, 15 requests between
    # consecutive samples (1, 1, 4, 1, 2, 1, 1 req/s). At --step auto the step is 15 s and
    # each bin is one scrape interval; at 60 s the 4 req/s quarter minute would be averaged
    # with three others into one bin.
    cum = [0, 15, 30, 90, 105, 135, 150, 165, 180]
    series = {"vllm:time_to_first_token_seconds_count": {"a": [float(v) for v in cum]},
              "vllm:num_requests_waiting": {"a": [0.0] * len(cum)}}
    src = FakeSource(series, offset_s=4.0, scrape_s=15.0)
    q, _ = at_scrape_step(src, _query(3))
    assert q.step_s == 15.0
    rec = reconstruct(src, q)
    assert rec.step_s == 15.0 and rec.start_unix == START + 4.0 - 15.0
    assert rec.trace.rates_rps is not None
    np.testing.assert_allclose(rec.trace.rates_rps, [0, 1, 1, 4, 1, 2, 1, 1])
    assert rec.trace.gaps == ((0.0, 15.0),)


@pytest.mark.parametrize(("knots", "origin", "expected", "known"), [
    # Samples 20 s early: [0, 60) takes 40 s of the first interval and 20 s of the second.
    pytest.param([-20, 40, 100], 0.0, [80, 0], [True, False], id="interpolated"),
    pytest.param([-20, 40, 100], -20.0, [60, 120], [True, True], id="on-the-samples"),
    # Two pods at different phases move the mean reading time by 10 s in the middle.
    pytest.param([0, 70, 120], 0.0, [60 * 60 / 70, 60 * 10 / 70 + 120],
                 [True, True], id="uneven-readings"),
])
def test_onto_grid(knots: list[float], origin: float, expected: list[float],
                   known: list[bool]) -> None:
    got, ok = onto_grid(np.asarray([60.0, 120.0]), np.asarray([True, True]),
                        np.asarray(knots, dtype=float), 60.0, origin=origin)
    np.testing.assert_allclose(got, expected)
    assert ok.tolist() == known


def test_collection_gap_is_a_gap_not_zero_traffic() -> None:
    # Samples missing at steps 3 and 4: steps [2,3), [3,4) and [4,5) cannot be counted
    # (the increase from 2 to 5 spans the outage), so the gap is [120, 300) s.
    ft = [0, 60, 120, NAN, NAN, 300, 360]
    series = {"vllm:time_to_first_token_seconds_count": {"a": ft},
              "vllm:num_requests_waiting": {"a": [0] * 7}}
    rec = reconstruct(FakeSource(series), _query(7))
    assert rec.trace.gaps == ((120.0, 300.0),)
    assert rec.trace.rates_rps is not None
    np.testing.assert_allclose(rec.trace.rates_rps, [1, 1, 0, 0, 0, 1])
    assert rec.missing_steps == 3
    assert rec.notes  # no token histograms: said so, defaults used


def test_range_queries_are_chunked_under_the_point_limit() -> None:
    n = 25
    series = {"vllm:time_to_first_token_seconds_count": {"a": list(range(n))}}
    src = FakeSource(series)
    got = read_per_pod(src, "last_over_time(vllm:time_to_first_token_seconds_count{x}[60s])",
                       _query(n), max_points=10)
    # 25 points in chunks of at most 10: 10 + 10 + 5, each point asked for once.
    points = [round((e - s) / st) + 1 for _, s, e, st in src.ranges]
    assert points == [10, 10, 5]
    np.testing.assert_array_equal(got["a"], np.arange(n, dtype=float))


def test_unknown_target_is_a_spec_error_naming_the_selector() -> None:
    with pytest.raises(SpecError, match="--target"):
        reconstruct(FakeSource({}), _query(3))


@pytest.mark.parametrize(("text", "ok"), [
    pytest.param("llm/chat", True, id="ok"),
    pytest.param("chat", False, id="no-namespace"),
    pytest.param("LLM/chat", False, id="namespace-uppercase"),
    pytest.param("llm/", False, id="no-name"),
])
def test_target_parse(text: str, ok: bool) -> None:
    if ok:
        assert str(Target.parse(text)) == text
    else:
        with pytest.raises(SpecError, match="NAMESPACE/NAME"):
            Target.parse(text)


def test_time_range_since_and_start() -> None:
    assert parse_duration_s("7d", "--since") == 7 * 86_400
    assert time_range(None, None, "2h", now=10_000.0) == (2_800.0, 10_000.0)
    assert time_range("2026-11-24T00:00:00Z", "1795000000", None, now=0.0) == (
        1_795_478_400.0, 1_795_000_000.0)
    with pytest.raises(SpecError, match="--since"):
        time_range("0", None, "1h", now=1.0)


def test_trace_file_round_trip_and_anonymise(tmp_path: Path) -> None:
    series = {"vllm:time_to_first_token_seconds_count": {"chat-abc": [0, 60, NAN, NAN, 240]},
              "vllm:num_requests_waiting": {"chat-abc": [0, 0, NAN, NAN, 0]}}
    rec = reconstruct(FakeSource(series), _query(5))
    doc = trace_document(rec, source={"target": "llm/chat", "prometheus": "http://x"},
                         anonymise=True)
    path = tmp_path / "t.json.gz"
    write_trace(path, doc)
    raw = gzip.decompress(path.read_bytes()).decode()
    for secret in ("llm", "chat", "http://x", str(int(START))):
        assert secret not in raw
    assert is_fleet_trace(path)
    back = load_trace_file(path)
    assert rec.trace.rates_rps is not None and back.rates_rps is not None
    np.testing.assert_allclose(back.rates_rps, rec.trace.rates_rps)
    assert back.gaps == rec.trace.gaps == ((60.0, 240.0),)
    assert back.resolution_s == 60.0


def _count_trace_file(tmp_path: Path, days: int = 3) -> tuple[Path, np.ndarray]:
    """An exported fleet trace of whole counts per 60-s step (what a real fleet's counters
    give), with a 10-minute gap on day 2."""
    rng = np.random.default_rng(5)
    n = days * 1440
    t = np.arange(n) * 60.0
    counts = rng.poisson(600 + 400 * np.sin(2 * np.pi * t / 86_400)).astype(float)
    gap = (1440 + 600, 1440 + 610)
    counts[gap[0]:gap[1]] = 0
    doc = {"format": "autoscaler-fleet-trace/v1", "name": "fleet", "step_s": 60,
           "duration_s": n * 60.0, "rates_rps": [round(c / 60, 6) for c in counts],
           "gaps": [[gap[0] * 60.0, gap[1] * 60.0]],
           "token_mix": {"mean_prompt_tokens": 1000, "mean_output_tokens": 200}}
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(doc))
    return path, counts


def test_exported_trace_reads_back_whole_counts(tmp_path: Path) -> None:
    path, counts = _count_trace_file(tmp_path, days=1)
    back = load_trace_file(path)
    assert back.rates_rps is not None
    # 7 requests in 60 s were written as 0.116667 req/s: read back as exactly 7.
    np.testing.assert_allclose(back.rates_rps * 60.0, counts, rtol=0, atol=1e-9)


def test_rate_scale_superposes_whole_days_of_an_exported_trace(tmp_path: Path) -> None:
    from autoscaler.cli.common import load_trace_input

    path, x = _count_trace_file(tmp_path)
    got = load_trace_input(str(path), None, rate_scale=2.0, seed=1)
    assert got.rates_rps is not None and got.resolution_s == 60.0
    # x2 on a 3-day trace: the trace plus the copy one day ahead (wrapping), step by step;
    # a source step in the gap takes the next day; the gap itself stays empty.
    n = x.size
    src = (np.arange(n) + 1440) % n
    gap = np.zeros(n, bool)
    gap[2040:2050] = True
    src[gap[src]] = (src[gap[src]] + 1440) % n
    want = x + x[src]
    want[gap] = 0
    np.testing.assert_array_equal(np.rint(got.rates_rps * 60.0), want)
    assert got.gaps == ((122_400.0, 123_000.0),)


def test_rate_scale_thins_an_exported_trace_and_start_cuts_it(tmp_path: Path) -> None:
    from autoscaler.cli.common import load_trace_input

    path, x = _count_trace_file(tmp_path)
    got = load_trace_input(str(path), None, rate_scale=0.5, seed=1, start="1d",
                           duration="6h")
    assert got.rates_rps is not None and got.duration_s == 6 * 3600.0
    c = got.rates_rps * 60.0
    part = x[1440:1440 + 360]
    np.testing.assert_allclose(c, np.rint(c), rtol=0, atol=1e-9)
    c = np.rint(c)
    # Binomial(count, 0.5) per step: whole, never more than the step had; the total
    # within 5 sd (sd = sqrt(N / 4) = 0.5 x sqrt(216,000) = 232) of half.
    assert (c <= part).all()
    assert abs(c.sum() - part.sum() / 2) <= 5 * 0.5 * math.sqrt(part.sum())
    # --start alone: the same steps, unscaled.
    cut = load_trace_input(str(path), None, start="1d", duration="6h")
    assert cut.rates_rps is not None
    np.testing.assert_array_equal(np.rint(cut.rates_rps * 60.0), part)


def test_replay_takes_rate_scale_and_start_on_an_exported_trace(tmp_path: Path) -> None:
    path, _ = _count_trace_file(tmp_path)
    proc = _cli("replay", "--trace", str(path), "--rate-scale", "1.5", "--start", "1d",
                "--duration", "2h", "--policies", "static", "--engine", "fluid", "--json", "-",
                "--no-progress")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["trace"]["duration_s"] == 7200.0
    assert doc["trace"]["name"].startswith("fleet[rate=1.5]")


def test_trace_file_bad_field_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "autoscaler-fleet-trace/v1", "step_s": 60,
                                "rates_rps": [1, -2]}))
    with pytest.raises(TraceError, match=r"bad\.json: rates_rps: numbers >= 0"):
        load_trace_file(path)


def _fit_series(batch: list[float]) -> dict[str, dict[str, list[float]]]:
    """TPOT = 0.01 + 0.0002 x batch, 1,000 tokens a step; 2,000 prompt tokens per 0.1 s of
    prefill (20,000 tokens/s)."""
    n = len(batch)
    tpot = np.cumsum([0.0] + [1000 * (0.01 + 0.0002 * b) for b in batch[1:]])
    return {
        "vllm:time_per_output_token_seconds_sum": {"a": list(tpot)},
        "vllm:time_per_output_token_seconds_count": {"a": [1000.0 * k for k in range(n)]},
        "vllm:num_requests_running": {"a": batch},
        "vllm:request_prompt_tokens_sum": {"a": [2000.0 * k for k in range(n)]},
        "vllm:request_prefill_time_seconds_sum": {"a": [0.1 * k for k in range(n)]},
    }


def test_fit_recovers_a_linear_step_time_and_reports_defaults() -> None:
    batch = [4.0, 4.0, 8.0, 16.0, 32.0, 12.0, 20.0]
    info = [Sample(labels={"num_gpu_blocks": "1000", "block_size": "16", "pod": "a"},
                   time=0.0, value=1.0)]
    src = FakeSource(_fit_series(batch), {"vllm:cache_config_info": info})
    base = load_profile("llama3-8b-h100")
    fit = fit_profile(src, _query(len(batch)), base)
    assert fit.profile.step_base_s == pytest.approx(0.01, rel=1e-6)
    assert fit.profile.step_per_decode_seq_s == pytest.approx(0.0002, rel=1e-6)
    # 0.1 s of prefill per 2,000 prompt tokens: 0.00005 s per token (20,000 tokens/s).
    assert fit.profile.step_per_prefill_token_s == pytest.approx(0.00005)
    assert fit.profile.kv_cache_tokens == 16_000  # 1,000 blocks x 16 tokens
    assert set(fit.unfitted()) == {"max_num_seqs", "max_num_batched_tokens", "cold_start_s",
                                   "cold_start_jitter_s", "gpus_per_replica",
                                   "gpu_hour_cost"}
    assert "default kept" in fit.fields["cold_start_s"].how
    # The written file is a valid profile with the fitted values.
    import yaml

    prof = parse_profile(yaml.safe_load(profile_yaml(fit, source="test")), "fit.yaml")
    assert prof.step_per_decode_seq_s == pytest.approx(0.0002, rel=1e-5)
    assert prof.kv_cache_tokens == 16_000


def test_fit_without_batch_spread_keeps_the_default_and_says_why() -> None:
    src = FakeSource(_fit_series([8.0] * 6))
    base = load_profile("llama3-8b-h100")
    fit = fit_profile(src, _query(6), base)
    f = fit.fields["step_per_decode_seq_s"]
    assert not f.fitted and f.value == base.step_per_decode_seq_s
    assert "spans 0.0 sequences" in f.how


def test_cold_start_estimates_are_unbiased_and_the_interval_covers() -> None:
    """2,000 fleets of 8 pod starts, each 90 s + uniform(0, 30 s): the jitter estimate is
    unbiased (the plain range averages 30 x 7/9 = 23.3 s) and the 90% interval holds the
    true 30 s in 90% of fleets (binomial sd 0.7 points over 2,000)."""
    rng = np.random.default_rng(7)
    fits = [ColdStartFit.of(list(90.0 + rng.uniform(0.0, 30.0, 8))) for _ in range(2000)]
    jitter = np.asarray([f.jitter_s for f in fits])
    base = np.asarray([f.base_s for f in fits])
    # sd of one estimate: 30 x sqrt(2 / (7 x 10)) = 5.1 s; of the mean of 2,000: 0.11 s.
    assert jitter.mean() == pytest.approx(30.0, abs=0.5)
    assert base.mean() == pytest.approx(90.0, abs=0.3)
    covered = np.mean([f.low_s <= 30.0 <= f.high_s for f in fits])
    assert 0.87 <= covered <= 0.93
    # Below the true value in about 5% of fleets, above it in about 5%: both tails.
    assert 0.03 <= np.mean([f.low_s > 30.0 for f in fits]) <= 0.07


@pytest.mark.parametrize(("starts", "precise"), [
    pytest.param(8, False, id="8-starts-interval-0.82-1.47"),
    pytest.param(29, False, id="29-starts-just-short"),
    pytest.param(30, True, id="30-starts-within-10pct"),
])
def test_jitter_precision_needs_about_30_starts(starts: int, precise: bool) -> None:
    # Interval / estimate = ((n - 1) / (n + 1)) / q with q the 95% and 5% quantiles of
    # Beta(n - 1, 2): for 30 starts 0.935 / 0.988 = 0.947 and 0.935 / 0.851 = 1.099.
    assert ColdStartFit.within(starts) is precise
    assert ColdStartFit.starts_needed() == 30


def _cold_start_source(starts: list[float]) -> FakeSource:
    pods = [f"p{i}" for i in range(len(starts))]
    created = [Sample(labels={"pod": p}, time=0.0, value=START + 10.0 * i)
               for i, p in enumerate(pods)]
    ready = [Sample(labels={"pod": p}, time=0.0, value=START + 10.0 * i + c)
             for i, (p, c) in enumerate(zip(pods, starts, strict=True))]
    running = {p: [4.0] * 6 for p in pods}
    return FakeSource({"vllm:num_requests_running": running},
                      {"kube_pod_created": created, "kube_pod_status_ready_time": ready})


def test_fit_says_when_the_jitter_could_not_be_fitted_to_10_percent() -> None:
    # 8 starts from 90 to 117 s: range 27 s, jitter 27 x 9/7 = 34.7 s, base 90 - 27/7 =
    # 86.1 s; the interval 27/0.954 .. 27/0.529 = 28.3 .. 51.0 s.
    colds = [90.0, 93.0, 97.0, 101.0, 105.0, 109.0, 113.0, 117.0]
    fit = fit_profile(_cold_start_source(colds), _query(6), load_profile("llama3-8b-h100"))
    f = fit.fields["cold_start_jitter_s"]
    assert f.fitted and f.value == pytest.approx(34.714, abs=1e-3)
    assert fit.fields["cold_start_s"].value == pytest.approx(86.143, abs=1e-3)
    assert f.quality["jitter_low_s"] == pytest.approx(28.3, abs=0.05)
    assert f.quality["jitter_high_s"] == pytest.approx(51.0, abs=0.05)
    assert "could not be fitted to +/-10% with 8 starts" in f.warning
    assert "28.3..51 s" in f.warning and "30 starts would be needed" in f.warning
    assert fit.as_json()["fields"]["cold_start_jitter_s"]["warning"] == f.warning
    assert "# imprecise: could not be fitted" in profile_yaml(fit, source="test")
    # 40 starts spread the same way: precise, no warning.
    many = list(np.linspace(90.0, 119.0, 40))
    fit = fit_profile(_cold_start_source(many), _query(6), load_profile("llama3-8b-h100"))
    assert fit.fields["cold_start_jitter_s"].warning == ""
    assert "warning" not in fit.as_json()["fields"]["cold_start_jitter_s"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "code", "needle"), [
    pytest.param(("trace", "export", "--prometheus", "http://127.0.0.1:9", "--target", "x",
                  "--since", "1h", "--out", "/tmp/never.json"), 2, "--target", id="bad-target"),
    pytest.param(("profile", "fit", "--prometheus", "http://127.0.0.1:9", "--target", "a/b",
                  "--since", "soon"), 2, "--since", id="bad-since"),
    pytest.param(("replay", "--prometheus", "http://127.0.0.1:9", "--target", "a/b",
                  "--since", "1h"), 1, "unreachable", id="prometheus-down-is-transient"),
])
def test_cli_errors_are_one_line(args: tuple[str, ...], code: int, needle: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


# --- sizing the static fleet on a window several scrapes long ------------------------------

def _rate_trace(rates: list[float], res: float = 60.0) -> Trace:
    return Trace(name="t", duration_s=len(rates) * res,
                 rates_rps=np.asarray(rates, dtype=np.float64), resolution_s=res)


@pytest.mark.parametrize(("rates", "window", "expected"), [
    pytest.param([1, 1, 4, 1], 60.0, 4.0, id="one-bin"),
    pytest.param([1, 1, 4, 1], 120.0, 2.5, id="two-bins"),
    # 90 s: all of the 4 and half a 1 beside it: (240 + 30) / 90.
    pytest.param([1, 1, 4, 1], 90.0, 3.0, id="straddling-bins"),
    # Not clock-aligned: the busiest 120 s are bins 1-2 ((3 + 5) / 2), which no aligned
    # pair of bins ([0, 2) or [2, 4)) is.
    pytest.param([0, 3, 5, 0], 120.0, 4.0, id="sliding-not-aligned"),
    pytest.param([1, 1, 4, 1], 600.0, 7 / 4, id="longer-than-the-trace-is-its-mean"),
])
def test_busiest_rate_rate_level(rates: list[float], window: float, expected: float) -> None:
    assert busiest_rate(_rate_trace(rates), window) == pytest.approx(expected)


def test_busiest_rate_request_level() -> None:
    # Arrivals at 0, 10, 20 s, then a burst of 5 in [100, 101) s and one at 200 s: the
    # busiest 60 s hold the burst (5), the busiest 120 s ([0, 120) s) the burst and the
    # first three (8), more than the burst and the 200-s one (6).
    arr = np.asarray([0.0, 10.0, 20.0, 100.0, 100.2, 100.4, 100.6, 100.8, 200.0])
    tr = Trace(name="r", duration_s=300.0, arrivals_s=arr)
    assert busiest_rate(tr, 60.0) == pytest.approx(5 / 60)
    assert busiest_rate(tr, 120.0) == pytest.approx(8 / 120)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 50.0), min_size=2, max_size=12),
       st.integers(1, 600))
def test_busiest_rate_matches_a_brute_force_scan(rates: list[float], window: int) -> None:
    """Slow reference: every whole-second start (bins are 60 s and the window whole
    seconds, so the maximum starts or ends on a bin edge, which is a whole second)."""
    tr = _rate_trace(rates)
    if window >= tr.duration_s:
        return
    per_s = np.repeat(np.asarray(rates), 60)
    want = max(per_s[t:t + window].sum() for t in range(len(per_s) - window + 1)) / window
    assert busiest_rate(tr, float(window)) == pytest.approx(want, rel=1e-9, abs=1e-9)


def _scraped(tr: Trace, scrape_s: float, phase: float) -> Trace:
    """What a reconstruction from scrapes every ``scrape_s`` at ``phase`` holds: the
    trace's requests between consecutive scrapes (its cumulative curve at their times)."""
    assert tr.rates_rps is not None and tr.resolution_s is not None
    edges = np.arange(tr.rates_rps.size + 1) * tr.resolution_s
    cum = np.concatenate(([0.0], np.cumsum(tr.rates_rps * tr.resolution_s)))
    knots = np.arange(phase, tr.duration_s + 1e-9, scrape_s)
    counts = np.diff(np.interp(knots, edges, cum))
    return Trace(name="scraped", duration_s=counts.size * scrape_s,
                 rates_rps=counts / scrape_s, resolution_s=scrape_s)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 100.0), min_size=12, max_size=40), st.integers(0, 59))
def test_busiest_window_moves_with_the_scrape_phase_by_at_most_its_bound(
        rates: list[float], phase: int) -> None:
    """The claim ``busiest_rate`` sizes static on: read from 60-s scrapes at any phase, the
    busiest window of W moves by at most 2 x (60 x the largest rate step / 4) / W (the
    interpolation error of the cumulative curve, at each end of the window), so 1/10 of
    a rate step at W = 300 s, where the busiest single minute can move by half of it.
    Compared over the span the scrapes cover (before the first one nothing is known)."""
    tr = _rate_trace(rates)
    scraped = _scraped(tr, 60.0, float(phase))
    per_s = np.repeat(np.asarray(rates), 60)[phase:phase + round(scraped.duration_s)]
    jump = float(np.max(np.abs(np.diff(rates))))
    for window in (300, 600):
        if window > per_s.size:
            continue
        inside = max(per_s[t:t + window].sum() for t in range(per_s.size - window + 1))
        got = busiest_rate(scraped, float(window))
        assert abs(got - inside / window) <= 2 * 60.0 * jump / 4 / window + 1e-6


def test_static_sizing_window() -> None:
    # 10 req/s with one minute at 50: the busiest minute needs 5 replicas of 10 req/s; the
    # busiest 5 minutes hold (50 + 4 x 10) / 5 = 18 req/s: 2.
    tr = _rate_trace([10.0] * 10 + [50.0] + [10.0] * 10)
    cap = Capacity(10.0, 100.0)
    prof = load_profile("llama3-8b-h100")
    minute = default_specs(tr, prof, cap, ReplayOptions(max_replicas=20))
    five = default_specs(tr, prof, cap, ReplayOptions(max_replicas=20, static_window_s=300.0))
    assert minute[PolicyKind.STATIC].static_replicas == 5
    assert five[PolicyKind.STATIC].static_replicas == 2


@pytest.mark.parametrize(("args", "needle"), [
    pytest.param(("trace", "export", "--prometheus", "http://127.0.0.1:9", "--target", "a/b",
                  "--since", "1h", "--step", "often", "--out", "/tmp/never.json"),
                 "--step", id="bad-step"),
    pytest.param(("replay", "--static-window", "0"), "--static-window",
                 id="bad-static-window"),
])
def test_bad_step_and_static_window_are_one_line(args: tuple[str, ...], needle: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
