"""History backfill from a real Prometheus whose TSDB holds hours of past samples.

The past is written with ``promtool tsdb create-blocks-from openmetrics`` (Prometheus' own
backfill tool): two targets whose request counters grew at known rates for 7 hours. The test
then backfills through range queries and warms the predictive policy, which must forecast
with its seasonal model from the very first live decision.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from autoscaler.config import parse_spec
from autoscaler.controller.kube import Competitor, ScaleInfo
from autoscaler.controller.loop import Controller
from autoscaler.controller.resource import TargetRef
from autoscaler.core.decide import decide
from autoscaler.core.types import MetricValue, Signal, Snapshot
from autoscaler.core.warmup import warm_up
from autoscaler.metrics.backfill import HistoryRequest, backfill, backfill_many
from autoscaler.metrics.collect import CollectorConfig, TargetKey
from autoscaler.metrics.presets import VLLM
from autoscaler.metrics.source import PrometheusConfig, PrometheusSource, RangeSeries, Sample
from tests.support.promserver import PrometheusServer

pytestmark = pytest.mark.prometheus

HOURS = 7
STEP_S = 15
PERIOD_S = 3600.0
PREDICTIVE_SPEC = Path(__file__).resolve().parents[1] / "deploy/examples/predictive-llama3-8b.yaml"


def true_rate(workload: str, t: float) -> float:
    """Requests/s of each synthetic target: chat swings 6 +- 3 over an hour, code is flat 2."""
    if workload == "chat":
        return 6.0 + 3.0 * math.sin(2 * math.pi * t / PERIOD_S)
    return 2.0


@pytest.fixture(scope="module")
def history_prometheus() -> Iterator[tuple[PrometheusServer, float, float]]:
    end = math.floor(time.time() / STEP_S) * STEP_S - 60.0
    start = end - HOURS * 3600.0
    prom = PrometheusServer([])
    lines = ["# HELP vllm:time_to_first_token_seconds TTFT.",
             "# TYPE vllm:time_to_first_token_seconds histogram"]
    counts = {"chat": 0.0, "code": 0.0}
    t = start
    while t <= end:
        for wl in counts:
            # Counter = integral of the rate; a midpoint step is exact enough at 15 s.
            counts[wl] += true_rate(wl, t - STEP_S / 2) * STEP_S
            lab = f'namespace="llm",workload="{wl}",pod="{wl}-0"'
            lines.append(
                f"vllm:time_to_first_token_seconds_count{{{lab}}} {counts[wl]:.6f} {t:.0f}")
        t += STEP_S
    lines.append("# EOF")
    source = prom.dir / "history.om"
    source.write_text("\n".join(lines) + "\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(source),
                    str(prom.dir / "data")], check=True, capture_output=True)
    prom.start()
    yield prom, start, end
    prom.cleanup()


def config() -> CollectorConfig:
    return CollectorConfig(preset=VLLM, window="1m")


def test_backfill_returns_each_targets_past_rate(
        history_prometheus: tuple[PrometheusServer, float, float]) -> None:
    prom, start, end = history_prometheus
    source = PrometheusSource(PrometheusConfig(url=prom.url))
    got = backfill(source, config(), start + 300, end, 60.0)
    assert set(got) == {TargetKey("llm", "chat"), TargetKey("llm", "code")}
    assert source.queries_sent == 1
    for key, points in got.items():
        assert len(points) == pytest.approx((end - start - 300) / 60 + 1, abs=1)
        for t, v in points:
            # rate() over 1m averages the rate over the minute before t; the sine moves at
            # most 3 x 2pi / 3600 x 60 = 0.31 req/s in a minute, so 0.35 is a safe bound.
            assert v == pytest.approx(true_rate(key.name, t - 30), abs=0.35)


def test_a_long_backfill_is_chunked_and_gives_the_same_points(
        history_prometheus: tuple[PrometheusServer, float, float]) -> None:
    prom, start, end = history_prometheus
    whole = backfill(PrometheusSource(PrometheusConfig(url=prom.url)), config(),
                     start + 300, end, 60.0)
    source = PrometheusSource(PrometheusConfig(url=prom.url))
    chunked = backfill(source, config(), start + 300, end, 60.0, max_points=50)
    n_points = len(whole[TargetKey("llm", "chat")])
    assert source.queries_sent == math.ceil(n_points / 50)
    assert chunked == whole


def test_a_warmed_policy_forecasts_with_its_model_from_the_first_decision(
        history_prometheus: tuple[PrometheusServer, float, float]) -> None:
    prom, start, end = history_prometheus
    chat = TargetKey("llm", "chat")
    history = backfill(PrometheusSource(PrometheusConfig(url=prom.url)), config(),
                       start + 300, end, STEP_S, [chat])[chat]
    base = parse_spec(PREDICTIVE_SPEC.read_text(), source=str(PREDICTIVE_SPEC))
    spec = replace(base, predictive=replace(base.predictive, forecaster="damped"))
    now = end + STEP_S
    snap = Snapshot(current_replicas=3, ready_replicas=3,
                    metrics={Signal.REQUEST_RATE.value: MetricValue(true_rate("chat", now), now)})

    cold, _ = decide(snap, warm_up(spec, [], 3), spec, now)
    warm, _ = decide(snap, warm_up(spec, history, 3), spec, now)

    assert cold.valid and warm.valid
    assert cold.forecast_model == "trend (fallback)"  # no history: the trend stands in
    assert warm.forecast_model == "damped->damped"  # configured -> fitted model


class CountingSource:
    """A real Prometheus source that counts the range queries sent through it."""

    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner
        self.range_queries = 0

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        return self.inner.query(promql, at)

    def query_series(self, promql: str, at: float | None = None) -> list[RangeSeries]:
        return self.inner.query_series(promql, at)

    def query_range(self, promql: str, start: float, end: float,
                    step_s: float) -> list[RangeSeries]:
        self.range_queries += 1
        return self.inner.query_range(promql, start, end, step_s)


class QuietKube:
    """Autoscalers and Deployments in memory; writes are accepted and forgotten."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def list_autoscalers(self, namespace: str | None) -> list[dict[str, Any]]:
        return [{"metadata": {"namespace": "llm", "name": n, "uid": f"uid-{n}",
                              "generation": 1},
                 "spec": {"policy": "predictive", "minReplicas": 1, "maxReplicas": 20,
                          "capacity": {"requestsPerSecond": 4.0, "concurrency": 24},
                          "syncPeriodSeconds": 60,
                          "predictive": {"historySeconds": 3 * 3600},
                          "scaleTargetRef": {"apiVersion": "apps/v1",
                                             "kind": "Deployment", "name": n}}}
                for n in self.names]

    def list_workloads(self, kind: str, namespace: str | None
                       ) -> dict[tuple[str, str], ScaleInfo]:
        return {("llm", n): ScaleInfo(2, 2, "1") for n in self.names}

    def get_scale(self, namespace: str, ref: TargetRef) -> ScaleInfo:
        return ScaleInfo(2, 2, "1")

    def update_scale(self, namespace: str, ref: TargetRef, replicas: int,
                     resource_version: str) -> None:
        pass

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        pass

    def list_competitors(self, namespace: str) -> list[Competitor]:
        return []  # no HPA or ScaledObject shares these workloads

    def create_event(self, namespace: str, involved: Mapping[str, str], event_type: str,
                     reason: str, message: str) -> None:
        pass


def test_forty_new_autoscalers_are_backfilled_in_one_round(
        history_prometheus: tuple[PrometheusServer, float, float]) -> None:
    prom, _start, end = history_prometheus
    names = ["chat", "code", *(f"m{i}" for i in range(38))]
    source = CountingSource(PrometheusSource(PrometheusConfig(url=prom.url)))
    ctrl = Controller(QuietKube(names), source)  # type: ignore[arg-type]
    ctrl.cycle(end + 60.0)
    # 3 hours at a 60-s period is 180 points, one chunk: one range query for all 40
    # (one per autoscaler sent 40).
    assert source.range_queries == 1
    assert all(m.warmed for m in ctrl.memory.values()) and len(ctrl.memory) == 40
    warmed = {key[1] for key, m in ctrl.memory.items() if m.state.policy is not None}
    assert {"chat", "code"} <= warmed


def test_each_target_keeps_its_own_span_from_the_shared_round(
        history_prometheus: tuple[PrometheusServer, float, float]) -> None:
    prom, _start, end = history_prometheus
    chat, code = TargetKey("llm", "chat"), TargetKey("llm", "code")
    source = PrometheusSource(PrometheusConfig(url=prom.url))
    got = backfill_many(source, config(), [HistoryRequest(chat, 3600.0, 60.0),
                                           HistoryRequest(code, 600.0, 60.0)], end)
    assert source.queries_sent == 1
    # [end - span, end - 60] every 60 s: 60 points for an hour, 10 for ten minutes.
    assert len(got[chat]) == pytest.approx(60, abs=1)
    assert len(got[code]) == pytest.approx(10, abs=1)
    assert min(t for t, _ in got[code]) >= end - 600.0
