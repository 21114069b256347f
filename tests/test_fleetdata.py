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

from autoscaler.errors import SpecError, TraceError
from autoscaler.fleetdata.fit import ColdStartFit, fit_profile, profile_yaml
from autoscaler.fleetdata.history import (
    HistoryQuery,
    Target,
    conserving_nonnegative,
    counter_increase,
    onto_grid,
    parse_duration_s,
    read_per_pod,
    reconstruct,
    time_range,
)
from autoscaler.fleetdata.tracefile import (
    is_fleet_trace,
    load_trace_file,
    trace_document,
    write_trace,
)
from autoscaler.metrics.source import RangeSeries, Sample
from autoscaler.sim.profiles import load_profile, parse_profile

START = 1_800_000_000.0


class FakeSource:
    """Per-pod values sampled every 60 s at START + offset + 60 k, keyed by metric name; NaN
    = no sample.

    ``last_over_time(x[w])`` is answered as Prometheus 2.x does: the newest sample in the
    *closed* range [t - w, t], so ``[60s]`` at t still holds the sample taken at t - 60 s.
    ``timestamp(x)`` is the time of the newest sample at or before t (5-minute lookback).
    """

    def __init__(self, series: dict[str, dict[str, list[float]]],
                 instants: dict[str, list[Sample]] | None = None, *,
                 offset_s: float = 0.0) -> None:
        self.series = series
        self.instants = instants or {}
        self.offset_s = offset_s
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
                k = math.floor((t - START - self.offset_s) / 60.0 + 1e-9)
                while k >= 0 and START + self.offset_s + 60.0 * k >= t - window - 1e-9:
                    if k < len(values) and math.isfinite(values[k]):
                        pts.append((t, values[k] if m else START + self.offset_s + 60.0 * k))
                        break
                    k -= 1
                t += step_s
            if pts:
                out.append(RangeSeries(labels={"pod": pod}, points=tuple(pts)))
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


def test_samples_off_the_step_grid_are_placed_at_their_own_times() -> None:
    # Scrapes 30 s past each minute: 60, 60, 240, 60 requests between the samples at 30,
    # 90, 150, 210 and 270 s (1, 1, 4, 1 req/s). Read on the minute, each reading is 30 s
    # old, so the trace's bins start on the samples' phase (30 s before the range's start)
    # and hold exactly the requests between two of them: [30, 90) s is the trace's second
    # bin. Before, the 4 req/s was placed at [180, 240) s, 30 s after it happened.
    series = {"vllm:time_to_first_token_seconds_count": {"a": [0, 60, 120, 360, 420, 480]},
              "vllm:num_requests_waiting": {"a": [0] * 6}}
    rec = reconstruct(FakeSource(series, offset_s=30.0), _query(6))
    assert rec.start_unix == START - 30.0
    assert rec.trace.rates_rps is not None
    # Bin 0 ([-30, 30) s) ends with the first sample: before it nothing was seen.
    np.testing.assert_allclose(rec.trace.rates_rps, [0, 1, 1, 4, 1])
    assert rec.trace.gaps == ((0.0, 60.0),)


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
