"""The collector against a real Prometheus scraping a real exporter on loopback.

The exporter's values are set by the test, so every expected figure is derived here by
hand (sums of the pods' gauges, the counter rates we set, the quantile of the buckets we set),
never copied from the code under test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from promserver import DelayProxy, PrometheusServer, ScriptedExporter

from autoscaler.cli import main
from autoscaler.config import parse_spec
from autoscaler.core.decide import decide
from autoscaler.core.types import Signal, State
from autoscaler.metrics.collect import (
    Collector,
    CollectorConfig,
    Status,
    TargetKey,
    plan_queries,
)
from autoscaler.metrics.presets import PRESETS, VLLM, Preset, get_preset
from autoscaler.metrics.rules import rule_group
from autoscaler.metrics.source import (
    PrometheusConfig,
    PrometheusSource,
    PrometheusUnavailable,
    QueryError,
)

pytestmark = pytest.mark.prometheus

CHAT = TargetKey("llm", "chat")
CODE = TargetKey("llm", "code")
TTFT = "vllm:time_to_first_token_seconds"

# Per pod: waiting, running, kv usage, requests/s (TTFT count rate), prompt tokens/s.
PODS = {
    ("chat", "chat-0"): (3.0, 10.0, 0.50, 2.0, 100.0),
    ("chat", "chat-1"): (4.0, 20.0, 0.70, 2.0, 300.0),
    ("code", "code-0"): (1.0, 5.0, 0.20, 0.0, 0.0),
}
# Cumulative TTFT bucket rates per chat pod (per second): 1 of 2 requests under 0.1 s,
# 1.5 under 0.5 s, all under 1 s. Summed over both pods: 2, 3, 4, 4 per second.
CHAT_BUCKETS = {"0.1": 1.0, "0.5": 1.5, "1.0": 2.0, "+Inf": 2.0}
ZERO_BUCKETS = {"0.1": 0.0, "0.5": 0.0, "1.0": 0.0, "+Inf": 0.0}
PREDICTIVE_SPEC = Path(__file__).resolve().parents[1] / "deploy/examples/predictive-llama3-8b.yaml"


def labels(workload: str, pod: str) -> dict[str, str]:
    return {"namespace": "llm", "workload": workload, "pod": pod, "model_name": "m"}


def load_exporter(exporter: ScriptedExporter) -> None:
    for (workload, pod), (waiting, running, kv, rps, tokens) in PODS.items():
        lab = labels(workload, pod)
        exporter.set_gauge("vllm:num_requests_waiting", lab, waiting)
        exporter.set_gauge("vllm:num_requests_running", lab, running)
        exporter.set_gauge("vllm:kv_cache_usage_perc", lab, kv)
        exporter.set_counter_rate("vllm:prompt_tokens_total", lab, tokens)
        exporter.set_histogram_rates(TTFT, lab, CHAT_BUCKETS if rps else ZERO_BUCKETS,
                                     sum_rate=0.3 * rps)


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[ScriptedExporter, PrometheusServer]]:
    exporter = ScriptedExporter().start()
    load_exporter(exporter)
    prom = PrometheusServer([exporter.address]).start()
    # Enough scrapes for a 1m-window rate() to have several samples per series.
    prom.wait_for('count(vllm:num_requests_running)', lambda r: bool(r) and r[0]["value"][1] == "3")
    time.sleep(6)
    yield exporter, prom
    prom.cleanup()
    exporter.stop()


WINDOW = "5s"
"""rate() range for 1-s scrapes: 5 samples. rate() divides the increase by the whole range,
so a 1m window over 6 s of data would read a tenth of the true rate."""


def collector(url: str, preset: Preset = VLLM, **kw: object) -> Collector:
    source = PrometheusSource(PrometheusConfig(url=url, timeout_s=3, retries=0))
    return Collector(source, CollectorConfig(preset=preset, window=WINDOW,  # type: ignore[arg-type]
                                             **kw))


@pytest.mark.parametrize(("signal", "target", "expected", "tolerance"), [
    pytest.param(Signal.QUEUE_DEPTH, CHAT, 3.0 + 4.0, 0.0, id="queue depth is the sum over pods"),
    pytest.param(Signal.RUNNING, CHAT, 10.0 + 20.0, 0.0, id="running is the sum over pods"),
    pytest.param(Signal.CONCURRENCY, CHAT, 3 + 4 + 10 + 20.0, 0.0,
                 id="concurrency is waiting plus running"),
    pytest.param(Signal.KV_CACHE_USAGE, CHAT, (0.5 + 0.7) / 2, 1e-9,
                 id="kv cache is the mean over pods"),
    pytest.param(Signal.REQUEST_RATE, CHAT, 4.0, 0.05, id="request rate is the summed rate"),
    pytest.param(Signal.PROMPT_TOKENS_RATE, CHAT, 400.0, 0.05, id="token rate is summed"),
    # Summed buckets: 2, 3, 4, 4 per s. p50: rank 2 falls exactly at the 0.1 bound (2 <= 2).
    pytest.param(Signal.TTFT_P50, CHAT, 0.1, 0.01, id="p50 is at the first bucket bound"),
    # p95: rank 3.8 lies in (0.5, 1.0] holding 1 of the 4: 0.5 + 0.5 x (3.8 - 3) / 1 = 0.9.
    pytest.param(Signal.TTFT_P95, CHAT, 0.9, 0.01, id="p95 interpolates inside its bucket"),
    pytest.param(Signal.QUEUE_DEPTH, CODE, 1.0, 0.0, id="a one-pod target is its pod"),
])
def test_each_signal_matches_what_the_pods_exported(
        fleet: tuple[ScriptedExporter, PrometheusServer], signal: Signal, target: TargetKey,
        expected: float, tolerance: float) -> None:
    _, prom = fleet
    result = collector(prom.url).collect(time.time(), [CHAT, CODE])
    reading = result.observations[target].readings[signal]
    assert reading.status is Status.OK, reading.detail
    assert reading.value is not None
    assert reading.value == pytest.approx(expected, rel=tolerance, abs=1e-9)


def test_one_query_per_signal_serves_every_target(
        fleet: tuple[ScriptedExporter, PrometheusServer]) -> None:
    _, prom = fleet
    c = collector(prom.url)
    result = c.collect(time.time())
    assert set(result.observations) == {CHAT, CODE}
    # p50, p95 and p99 share one query of the TTFT buckets: 10 signals, 8 queries, + 2.
    assert result.queries == len(VLLM.queries) - 2 + 2
    assert c.source.queries_sent == result.queries  # type: ignore[attr-defined]
    assert result.observations[CHAT].pods_reporting == 2
    assert result.observations[CODE].pods_reporting == 1


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_quantiles_derived_locally_equal_prometheus_own_histogram_quantile(
        fleet: tuple[ScriptedExporter, PrometheusServer], q: float) -> None:
    _, prom = fleet
    now = time.time()
    inner = f'sum by (namespace, workload, le) (rate({TTFT}_bucket{{workload="chat"}}[{WINDOW}]))'
    source = PrometheusSource(PrometheusConfig(url=prom.url))
    theirs = source.query(f"histogram_quantile({q}, {inner})", now)[0].value
    ours = Collector(source, CollectorConfig(preset=VLLM, window=WINDOW))._quantiles(
        inner, [(Signal.TTFT_P50, q)], now)[Signal.TTFT_P50][CHAT][1]
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_the_recorded_mode_reads_the_same_values_from_recording_rules() -> None:
    exporter = ScriptedExporter().start()
    load_exporter(exporter)
    direct_cfg = CollectorConfig(preset=VLLM, window=WINDOW)
    rules = {"groups": [rule_group(direct_cfg.recording_rules(), name="autoscaler",
                                   interval="1s")]}
    recorded_cfg = dataclasses.replace(direct_cfg, recorded=True)
    bucket_rule = "autoscaler:vllm:time_to_first_token_seconds_bucket_rate"
    assert bucket_rule in {r["record"] for r in direct_cfg.recording_rules()}
    assert recorded_cfg.plan() == ({s: f"autoscaler:vllm:{s.value}" for s in VLLM.queries}, {})
    prom = PrometheusServer([exporter.address], rules=rules).start()
    try:
        prom.wait_for(bucket_rule, lambda r: len(r) >= 8)  # 2 targets x 4 buckets
        time.sleep(6)  # full rate() windows for both readings
        source = PrometheusSource(PrometheusConfig(url=prom.url))
        now = time.time()
        direct = Collector(source, direct_cfg).collect(now).observations[CHAT]
        recorded = Collector(source, recorded_cfg).collect(now).observations[CHAT]
        assert recorded_cfg.plan()[0][Signal.QUEUE_DEPTH] == "autoscaler:vllm:queue_depth"
        assert recorded.readings[Signal.TTFT_P95].status is Status.OK
        for signal in VLLM.queries:
            a, b = direct.readings[signal], recorded.readings[signal]
            assert a.status is b.status, (signal, a, b)  # ok, or missing in both
            if a.status is Status.OK:
                # Rules are evaluated up to 1 s before `now`; the rates are constant.
                assert b.value == pytest.approx(a.value, rel=0.05, abs=1e-9), signal
    finally:
        prom.cleanup()
        exporter.stop()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_presets_recording_rules_pass_promtool(preset: str, tmp_path: Path) -> None:
    cfg = CollectorConfig(preset=get_preset(preset), selector='job="x"')
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [rule_group(cfg.recording_rules(), name="a",
                                                          interval="15s")]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("query", "shared"), [
    pytest.param("histogram_quantile(0.9, sum by (le) (rate(x_bucket[1m])))", True,
                 id="a plain quantile is derived locally"),
    pytest.param("histogram_quantile(0.9, sum by (le) (rate(x_bucket[1m]))) / 1000", False,
                 id="arithmetic after the quantile is sent as written"),
    pytest.param("histogram_quantile(0.9, a) + histogram_quantile(0.5, b)", False,
                 id="two quantiles in one expression are sent as written"),
    pytest.param("histogram_quantile(1.5, a)", False, id="an out-of-range quantile is sent"),
    pytest.param("sum(rate(x[1m]))", False, id="anything else is sent"),
])
def test_only_bare_histogram_quantiles_are_derived_locally(query: str, shared: bool) -> None:
    plain, quantiles = plan_queries({Signal.TTFT_P95: query})
    assert bool(quantiles) is shared
    assert (Signal.TTFT_P95 in plain) is not shared


def test_an_empty_rate_window_is_nan_not_zero(
        fleet: tuple[ScriptedExporter, PrometheusServer]) -> None:
    _, prom = fleet
    reading = collector(prom.url).collect(time.time()).observations[CODE].readings[Signal.TTFT_P95]
    assert reading.status is Status.NAN
    assert reading.value is not None and math.isnan(reading.value)


def test_values_older_than_the_max_age_are_stale(
        fleet: tuple[ScriptedExporter, PrometheusServer]) -> None:
    _, prom = fleet
    # Evaluated 120 s in the future, Prometheus' 5-min lookback still finds the samples,
    # but they are 120 s old: past the 60-s max age.
    obs = collector(prom.url, max_age_s=60.0).collect(time.time() + 120).observations[CHAT]
    queue = obs.readings[Signal.QUEUE_DEPTH]
    assert queue.status is Status.STALE and "old" in queue.detail
    assert obs.snapshot(current_replicas=2, ready_replicas=2).metrics == {}


def test_sums_are_partial_when_fewer_pods_report_than_are_ready(
        fleet: tuple[ScriptedExporter, PrometheusServer]) -> None:
    _, prom = fleet
    obs = collector(prom.url).collect(time.time()).observations[CHAT]
    judged = obs.judged(ready_replicas=3)
    assert judged[Signal.QUEUE_DEPTH].status is Status.PARTIAL
    assert judged[Signal.REQUEST_RATE].status is Status.PARTIAL
    assert judged[Signal.KV_CACHE_USAGE].status is Status.OK  # a mean of 2 pods is still a mean
    snap = obs.snapshot(current_replicas=3, ready_replicas=3)
    assert Signal.QUEUE_DEPTH.value not in snap.metrics
    assert Signal.KV_CACHE_USAGE.value in snap.metrics


def test_a_bad_promql_string_is_a_query_error_naming_the_query(
        fleet: tuple[ScriptedExporter, PrometheusServer]) -> None:
    _, prom = fleet
    broken = Preset(name="broken", description="", liveness_metric="vllm:num_requests_running",
                    queries={Signal.QUEUE_DEPTH:
                             "sum by ($by) (rate(vllm:num_requests_waiting{$sel}[$window])"})
    with pytest.raises(QueryError) as info:
        collector(prom.url, preset=broken).collect(time.time())
    message = str(info.value)
    assert "vllm:num_requests_waiting" in message
    assert "parse error" in message


def test_a_slow_prometheus_times_out_and_a_patient_one_answers(
        fleet: tuple[ScriptedExporter, PrometheusServer]) -> None:
    _, prom = fleet
    proxy = DelayProxy(prom.url, delay_s=1.5)
    try:
        impatient = PrometheusSource(PrometheusConfig(url=proxy.url, timeout_s=0.5, retries=1,
                                                      backoff_s=0.0))
        start = time.monotonic()
        with pytest.raises(PrometheusUnavailable):
            impatient.query("up")
        # Two attempts of 0.5 s each (plus connection set-up), not the 1.5 s delay twice.
        assert time.monotonic() - start < 2.5
        patient = PrometheusSource(PrometheusConfig(url=proxy.url, timeout_s=5, retries=0))
        assert patient.query("up")
    finally:
        proxy.stop()


def test_a_counter_reset_does_not_read_as_a_drop_in_load(
        fleet: tuple[ScriptedExporter, PrometheusServer]) -> None:
    exporter, prom = fleet
    c = collector(prom.url)
    before = c.collect(time.time()).observations[CHAT].readings[Signal.PROMPT_TOKENS_RATE]
    exporter.reset_counters(labels("chat", "chat-1"))  # the pod restarted
    time.sleep(3 * prom.scrape_interval_s)
    after = c.collect(time.time()).observations[CHAT].readings[Signal.PROMPT_TOKENS_RATE]
    assert before.value == pytest.approx(400.0, rel=0.05)
    assert after.status is Status.OK and after.value is not None
    # rate() treats the drop as a reset and counts the new value from 0, so the rate stays
    # near 400/s instead of going negative. What it cannot see are chat-1's increments
    # between its last scrape before the restart and the restart itself: at most one
    # scrape interval (1 s) of 300/s, spread over the 5-s window, 60/s. Allow two
    # intervals for scheduling jitter: 400 - 2 x 300 / 5 = 280.
    assert 280.0 <= after.value <= 420.0


def test_a_vanished_target_is_missing_and_the_core_holds(tmp_path: Path) -> None:
    exporter = ScriptedExporter().start()
    load_exporter(exporter)
    prom = PrometheusServer([exporter.address]).start()
    try:
        prom.wait_for('count(vllm:num_requests_running)', lambda r: bool(r))
        c = collector(prom.url)
        assert c.collect(time.time()).observations[CODE].readings[Signal.QUEUE_DEPTH].status \
            is Status.OK
        exporter.remove(labels("code", "code-0"))
        # The next scrape writes staleness markers; from then on the series is gone.
        prom.wait_for('vllm:num_requests_waiting{workload="code"}', lambda r: not r)
        obs = c.collect(time.time(), [CHAT, CODE]).observations[CODE]
        assert obs.readings[Signal.QUEUE_DEPTH].status is Status.MISSING
        assert obs.pods_reporting == 0
        spec = parse_spec(PREDICTIVE_SPEC.read_text(), source=str(PREDICTIVE_SPEC))
        decision, _ = decide(obs.snapshot(current_replicas=4, ready_replicas=4), State(), spec,
                             time.time())
        assert not decision.valid
        assert decision.replicas == 4
    finally:
        prom.cleanup()
        exporter.stop()


def test_prometheus_stopped_mid_run_holds_and_recovers_after_restart() -> None:
    exporter = ScriptedExporter().start()
    load_exporter(exporter)
    prom = PrometheusServer([exporter.address]).start()
    try:
        prom.wait_for('count(vllm:num_requests_running)', lambda r: bool(r))
        time.sleep(3)
        c = collector(prom.url)
        spec = parse_spec(PREDICTIVE_SPEC.read_text(), source=str(PREDICTIVE_SPEC))
        state = State()
        now = time.time()
        healthy = c.collect(now).observations[CHAT]
        decision, state = decide(healthy.snapshot(6, 2), state, spec, now)
        assert decision.valid

        prom.stop()
        now = time.time()
        down = c.collect(now, [CHAT])
        assert set(down.errors) == {"liveness"}  # one failure, not one per signal
        assert down.queries == 2  # the two liveness queries (sent together), nothing more
        reading = down.observations[CHAT].readings[Signal.REQUEST_RATE]
        assert reading.status is Status.ERROR
        decision, state = decide(down.observations[CHAT].snapshot(6, 2), state, spec, now)
        assert not decision.valid and decision.replicas == 6  # held, not scaled down

        prom.start()  # same port, same TSDB directory
        prom.wait_for('count(vllm:num_requests_running)', lambda r: bool(r))
        back = c.collect(time.time()).observations[CHAT]
        assert back.readings[Signal.QUEUE_DEPTH].status is Status.OK
    finally:
        prom.cleanup()
        exporter.stop()


def test_metrics_show_prints_what_the_autoscaler_sees(
        fleet: tuple[ScriptedExporter, PrometheusServer],
        capsys: pytest.CaptureFixture[str]) -> None:
    _, prom = fleet
    code = main(["metrics", "show", "--prometheus", prom.url, "--target", "llm/code",
                 "--window", WINDOW, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {row["signal"]: row for row in doc["signals"]}
    assert rows["queue_depth"]["value"] == 1.0 and rows["queue_depth"]["status"] == "ok"
    # code-0 saw no requests: the TTFT quantile is NaN, shown as null with its reason.
    assert rows["ttft_p95_s"]["status"] == "nan" and rows["ttft_p95_s"]["value"] is None
    assert doc["pods_reporting"] == 1 and doc["queries"] == len(VLLM.queries)


@pytest.mark.parametrize(("args", "expect"), [
    pytest.param(["--target", "llm/nope"], "Targets Prometheus has: llm/chat, llm/code",
                 id="an unknown target lists the known ones"),
    pytest.param(["--target", "llm/chat", "--ready", "3"], "2 of 3 ready pods report",
                 id="too few pods reporting marks sums partial"),
])
def test_metrics_show_explains_why_a_value_is_not_used(
        fleet: tuple[ScriptedExporter, PrometheusServer], capsys: pytest.CaptureFixture[str],
        args: list[str], expect: str) -> None:
    _, prom = fleet
    assert main(["metrics", "show", "--prometheus", prom.url, "--window", WINDOW, *args]) == 0
    assert expect in capsys.readouterr().out
