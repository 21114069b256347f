"""End to end: the digital twin exports a simulated vLLM fleet, a real Prometheus scrapes it,
and the collector's snapshot must match the twin's own ground truth.

The twin's clock is driven by the test (``clock=False``): it advances the simulation, then
waits for Prometheus to scrape, so every comparison is between the same instants and the
tolerances come only from PromQL itself (``rate()`` over scrape-aligned samples and
``histogram_quantile``'s interpolation inside a bucket).
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from autoscaler.core.types import Signal
from autoscaler.metrics.collect import Collector, CollectorConfig, Status, TargetKey
from autoscaler.metrics.presets import get_preset
from autoscaler.metrics.source import PrometheusConfig, PrometheusSource
from autoscaler.sim.profiles import load_profile
from autoscaler.traces import default_workload
from autoscaler.twin.serving import Twin
from tests.support.promserver import PrometheusServer

pytestmark = pytest.mark.prometheus
TARGET = TargetKey("llm", "chat")
SERIES = 'vllm:num_requests_running{workload="chat"}'
SIM_START_S = 2 * 3600.0  # into the synthetic day's busy hours: a queue and a full batch


@pytest.fixture(scope="module")
def twin_and_prometheus() -> Iterator[tuple[Twin, PrometheusServer]]:
    twin = Twin.from_trace(default_workload(seed=3), load_profile(), namespace="llm",
                           workload="chat", initial_replicas=6)
    port = twin.start(0, clock=False)
    twin.advance_to(SIM_START_S)
    prom = PrometheusServer([f"127.0.0.1:{port}"]).start()
    prom.wait_for(f"count({SERIES})", lambda r: bool(r))
    yield twin, prom
    prom.cleanup()
    twin.stop()


def plateau(prom: PrometheusServer) -> None:
    """Wait until Prometheus has scraped the twin's current values at least twice."""
    prom.wait_for_scrapes(SERIES, 2)


def fleet(twin: Twin) -> dict[str, Any]:
    target: dict[str, Any] = twin.truth()["targets"][0]
    return target


def test_gauges_match_the_twin_exactly(
        twin_and_prometheus: tuple[Twin, PrometheusServer]) -> None:
    twin, prom = twin_and_prometheus
    twin.advance_to(SIM_START_S + 30)
    plateau(prom)
    truth = fleet(twin)
    obs = Collector(PrometheusSource(PrometheusConfig(url=prom.url)),
                    CollectorConfig(preset=get_preset("vllm"), window="5s")
                    ).collect(time.time()).observations[TARGET]
    # Sums over pods of per-pod gauges: the same numbers, up to float formatting.
    assert obs.readings[Signal.QUEUE_DEPTH].value == pytest.approx(truth["waiting"], abs=1e-6)
    assert obs.readings[Signal.RUNNING].value == pytest.approx(truth["running"], abs=1e-6)
    assert obs.pods_reporting == truth["ready_replicas"] == len(truth["pods"])


def test_rates_and_quantiles_match_the_twins_counters(
        twin_and_prometheus: tuple[Twin, PrometheusServer]) -> None:
    twin, prom = twin_and_prometheus
    plateau(prom)
    start = fleet(twin)["exported"]
    t_start = time.time()  # Prometheus holds `start` at this instant (the `@` modifier)
    # 40 simulated seconds appear to Prometheus as one jump between two plateaus. Rather
    # than model rate()'s extrapolation, compare raw counters and the bucket differences
    # between the two plateaus.
    twin.advance_to(fleet(twin)["sim_time_s"] + 40)
    plateau(prom)
    end = fleet(twin)["exported"]
    q = 'sum(vllm:time_to_first_token_seconds_count{workload="chat"})'
    got = prom.wait_for(q, lambda r: bool(r))[0]["value"][1]
    assert float(got) == pytest.approx(end["ttft_cumulative"][-1], abs=1e-6)  # counters: exact

    # The p95 of the requests of those 40 s, from the difference of the bucket counters.
    bounds = fleet(twin)["ttft_bounds_s"]
    delta = [e - s for s, e in zip(start["ttft_cumulative"], end["ttft_cumulative"],
                                   strict=True)]
    promql = ('histogram_quantile(0.95, sum by (le) (vllm:time_to_first_token_seconds_bucket'
              '{workload="chat"} - vllm:time_to_first_token_seconds_bucket{workload="chat"} '
              f'@ {t_start:.3f}))')
    if delta[-1] <= 0:
        pytest.skip("no requests in the window (the trace was idle)")
    rank = 0.95 * delta[-1]
    b = bisect.bisect_left(delta, rank)  # bucket index holding the p95 (le bounds + Inf)
    lo = 0.0 if b == 0 else bounds[b - 1]
    hi = bounds[b] if b < len(bounds) else bounds[-1]
    result = prom.wait_for(promql, lambda r: bool(r), timeout_s=10)
    # histogram_quantile's error is bounded by its bucket: the value lies inside the truth's.
    assert lo - 1e-9 <= float(result[0]["value"][1]) <= hi + 1e-9


def test_a_twin_counter_reset_reads_as_a_reset_not_as_negative_load(
        twin_and_prometheus: tuple[Twin, PrometheusServer]) -> None:
    twin, prom = twin_and_prometheus
    cfg = CollectorConfig(preset=get_preset("vllm"), window="10s")
    collector = Collector(PrometheusSource(PrometheusConfig(url=prom.url)), cfg)
    twin.counter_reset(workload="chat")
    for _ in range(5):
        twin.advance_to(fleet(twin)["sim_time_s"] + 1)
        prom.wait_for_scrapes(SERIES, 1)  # one simulated second per scrape
    # The series must span the whole 10-s window: a younger one is not yet valid.
    prom.wait_for("min(count_over_time(vllm:time_to_first_token_seconds_count[10s]))",
                  lambda r: bool(r) and float(r[0]["value"][1]) >= 10)
    # So must the time since the reset: what each pod counted between its last scrape
    # before the restart and the restart is lost, and the window is not valid while that is
    # in it. Read a whole window (plus two scrapes) after the first sample after the reset.
    series = 'vllm:time_to_first_token_seconds_count{workload="chat"}[30s]'
    result = prom.wait_for(series, lambda r: any(
        float(b[1]) < float(a[1]) for row in r for a, b in itertools.pairwise(row["values"])))
    t_after = max(float(b[0]) for row in result
                  for a, b in itertools.pairwise(row["values"]) if float(b[1]) < float(a[1]))
    later = t_after + 10.0 + 2 * prom.scrape_interval_s
    prom.wait_for("min(timestamp(vllm:time_to_first_token_seconds_count"
                  f'{{workload="chat"}})) > {later}', bool)
    reading = collector.collect(later).observations[TARGET].readings[Signal.REQUEST_RATE]
    assert reading.status is Status.OK, reading.detail
    assert reading.value is not None and reading.value >= 0


def test_a_dropped_target_goes_missing(
        twin_and_prometheus: tuple[Twin, PrometheusServer]) -> None:
    twin, prom = twin_and_prometheus
    twin.drop_workload("chat")
    try:
        prom.wait_for('vllm:num_requests_running{workload="chat"}', lambda r: not r)
        obs = Collector(PrometheusSource(PrometheusConfig(url=prom.url)),
                        CollectorConfig(preset=get_preset("vllm"), window="5s")
                        ).collect(time.time(), [TARGET]).observations[TARGET]
        assert obs.readings[Signal.QUEUE_DEPTH].status is Status.MISSING
        assert obs.snapshot(current_replicas=6, ready_replicas=6).metrics == {}
    finally:
        twin.drop_workload("chat", dropped=False)
