"""The collector against a real Prometheus scraping a real exporter on loopback.

The exporter's values are set by the test, so every expected figure is derived here by
hand (sums of the pods' gauges, the counter rates we set, the quantile of the buckets we set),
never copied from the code under test.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from autoscaler.cli import main
from autoscaler.config import parse_spec
from autoscaler.core.decide import decide
from autoscaler.core.types import Signal, State
from autoscaler.metrics.collect import (
    Collector,
    CollectorConfig,
    Observation,
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
from autoscaler.sim.fleet import TTFT_BUCKETS_S, EngineSample
from autoscaler.sim.observe import CounterReset, FakePrometheus, PodSilent
from tests.support.promserver import DelayProxy, PrometheusServer, ScriptedExporter

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
    wait_for_full_windows(prom)
    yield exporter, prom
    prom.cleanup()
    exporter.stop()


WINDOW = "5s"
"""rate() range for 1-s scrapes: 5 samples. rate() divides the increase by the whole range,
so a 1m window over 6 s of data would read a tenth of the true rate."""


def wait_for_full_windows(prom: PrometheusServer, metric: str = TTFT + "_count") -> None:
    """Until every series of ``metric`` has samples across a whole rate window (and one
    more scrape), so rate() and the coverage rule both see a covered window."""
    prom.wait_for(f"min(count_over_time({metric}[{WINDOW}]))",
                  lambda r: bool(r) and float(r[0]["value"][1]) >= 5)
    newest = prom.wait_for(f"max(timestamp({metric}))", bool)[0]["value"][1]
    prom.wait_for(f"max(timestamp({metric})) > {newest}", bool)


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
    # p50, p95 and p99 share one query of the TTFT buckets: 10 signals, 8 queries, plus
    # two of the pods' series (their samples over the window, their instant count).
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
        wait_for_full_windows(prom, bucket_rule)  # full windows for both readings
        wait_for_full_windows(prom)
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
    # Evaluated 120 s in the future, Prometheus' 5-min lookback still finds the gauges, but
    # no pod has a sample in the rate window before then: stale, not read.
    obs = collector(prom.url, max_age_s=60.0).collect(time.time() + 120).observations[CHAT]
    queue = obs.readings[Signal.QUEUE_DEPTH]
    assert queue.status is Status.STALE and "no sample" in queue.detail
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
        with pytest.raises(PrometheusUnavailable):
            impatient.query("up")
        patient = PrometheusSource(PrometheusConfig(url=proxy.url, timeout_s=5, retries=0))
        assert patient.query("up")
    finally:
        proxy.stop()


def test_a_counter_reset_does_not_read_as_a_drop_in_load(
        fleet: tuple[ScriptedExporter, PrometheusServer]) -> None:
    exporter, prom = fleet
    c = collector(prom.url)
    before = c.collect(time.time()).observations[CHAT].readings[Signal.PROMPT_TOKENS_RATE]
    assert before.value == pytest.approx(400.0, rel=0.05)
    exporter.reset_counters(labels("chat", "chat-1"))  # the pod restarted
    # The first sample after the restart (t_after): where chat-1's counter dropped.
    series = f'{TTFT}_count{{pod="chat-1"}}[10s]'
    result = prom.wait_for(series, lambda r: bool(r) and any(
        float(b[1]) < float(a[1]) for a, b in itertools.pairwise(r[0]["values"])))
    values = [(float(t), float(v)) for t, v in result[0]["values"]]
    t_after = next(b[0] for a, b in itertools.pairwise(values) if b[1] < a[1])
    # chat-1's increments between its last scrape before the restart and the restart are
    # lost (rate() counts the new value from 0): while that sample is in the 5-s window the
    # rate is not yet valid, never a drop in load. Evaluated at fixed times after it, so
    # the verdict does not depend on when this machine gets round to asking.
    during = c.collect(t_after + 1.0).observations[CHAT].readings[Signal.PROMPT_TOKENS_RATE]
    assert during.status is Status.NOT_YET_VALID, during.detail
    assert "counter reset" in during.detail
    # Once it has left the window (plus a scrape, so the window is full again) it is valid
    # and reads the whole rate: nothing lost is inside the window any more.
    later = t_after + 5.0 + 1.5
    prom.wait_for(f'timestamp({TTFT}_count{{pod="chat-1"}}) > {later}', bool)
    after = c.collect(later).observations[CHAT].readings[Signal.PROMPT_TOKENS_RATE]
    assert after.status is Status.OK, after.detail
    assert after.value == pytest.approx(400.0, rel=0.05)


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
        # ... and its last samples have left the window: no pod of it reports.
        prom.wait_for(f'count_over_time({TTFT}_count{{workload="code"}}[{WINDOW}])',
                      lambda r: not r)
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
        wait_for_full_windows(prom)
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
        assert down.queries == 2  # the pods' two series queries (sent together), no more
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
    # 10 signals in 8 queries (p50/p95/p99 share one), plus the pods' series: 2.
    assert doc["pods_reporting"] == 1 and doc["queries"] == len(VLLM.queries) - 2 + 2


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


# --- the same raw samples through both paths ----------------------------------------------

SCRAPE_S = 15.0


QUERY_OFFSETS = (547.0, 622.0, 667.0, 907.0, 937.0, 1222.0, 1252.0, 1312.0, 1402.0)
"""Seconds after ``base``: 7 s after a scrape, so no sample sits on a window's edge, where
Prometheus 2's closed ranges and the fake's left-open ones (Prometheus 3) would differ."""


def fleet_stream(base: float) -> tuple[FakePrometheus, dict[float, int],
                                       dict[float, Observation]]:
    """30 minutes of a fleet through the fake Prometheus (absolute times from ``base``):
    20 first tokens/s on 4 pods, one pod restarting at +605, two more pods from +900, one
    pod silent in [+1200, +1300). Returns the fake (which recorded every stored per-pod
    sample), the ready count at each scrape and the fake's observation at each of
    ``QUERY_OFFSETS`` (taken as it streams: it answers for times after its newest scrape)."""
    prom = FakePrometheus(faults=(CounterReset(base + 605.0, 1),
                                  PodSilent(base + 1200.0, base + 1300.0, 1)))
    prom.recorded = []
    ready_at: dict[float, int] = {}
    seen: dict[float, Observation] = {}
    buckets = len(TTFT_BUCKETS_S) + 1
    for k in range(1, 121):
        t = base + SCRAPE_S * k
        for offset in QUERY_OFFSETS:
            if t - SCRAPE_S < base + offset < t:
                seen[offset] = prom.observe(base + offset)
        ready = 4 if k * SCRAPE_S < 900 else 6
        ready_at[t] = ready
        prom.scrape(EngineSample(
            t=t, requests_total=20.0 * k * SCRAPE_S, prompt_tokens_total=0.0,
            generation_tokens_total=0.0, ttft_buckets=(20.0 * k * SCRAPE_S,) * buckets,
            ttft_sum=0.0, waiting=3.0 * ready, running=0.0, kv_usage=0.5,
            gpu_busy_seconds_total=0.0, ready_replicas=ready,
            first_tokens_total=20.0 * k * SCRAPE_S))
    return prom, ready_at, seen


@pytest.fixture(scope="module")
def both_paths() -> Iterator[tuple[dict[float, Observation], dict[float, int],
                                   PrometheusServer, float]]:
    base = math.floor(time.time() / 3600) * 3600 - 2 * 3600.0
    fake, ready_at, seen = fleet_stream(base)
    assert fake.recorded is not None
    lines = [f"# TYPE {TTFT} histogram"]
    by_pod: dict[int, list[tuple[float, float]]] = {}
    for pod, t, value in fake.recorded:
        by_pod.setdefault(pod, []).append((t, value))
    for pod, points in sorted(by_pod.items()):
        lab = f'namespace="llm",workload="chat",pod="chat-{pod}"'
        lines += [f"{TTFT}_count{{{lab}}} {v:.6f} {t:.3f}" for t, v in points]
    # Each pod's queue, 3 requests, for every sample it was scraped at.
    lines.append("# TYPE vllm:num_requests_waiting gauge")
    for pod, points in sorted(by_pod.items()):
        lab = f'namespace="llm",workload="chat",pod="chat-{pod}"'
        lines += [f"vllm:num_requests_waiting{{{lab}}} 3 {t:.3f}" for t, _ in points]
    lines.append("# EOF")
    prom = PrometheusServer([])
    (prom.dir / "samples.om").write_text("\n".join(lines) + "\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q",
                    str(prom.dir / "samples.om"), str(prom.dir / "data")],
                   check=True, capture_output=True)
    prom.start()
    yield seen, ready_at, prom, base
    prom.cleanup()


@pytest.mark.parametrize("offset", [
    pytest.param(547.0, id="steady fleet"),
    pytest.param(622.0, id="right after a pod restarted (counter reset)"),
    pytest.param(667.0, id="a window holding the reset"),
    pytest.param(907.0, id="two new pods, one sample each"),
    pytest.param(937.0, id="two new pods, counted from zero"),
    pytest.param(1222.0, id="a pod silent for one scrape"),
    pytest.param(1252.0, id="a pod silent for three scrapes"),
    pytest.param(1312.0, id="the silent pod back, its window holed"),
    pytest.param(1402.0, id="the silent pod's window covered again"),
])
def test_the_same_samples_give_the_same_observation_live_and_in_the_replay(
        both_paths: tuple[dict[float, Observation], dict[float, int], PrometheusServer, float],
        offset: float) -> None:
    seen, ready_at, prom, base = both_paths
    at = base + offset
    ready = ready_at[max(t for t in ready_at if t <= at)]
    live = Collector(PrometheusSource(PrometheusConfig(url=prom.url)),
                     CollectorConfig(preset=VLLM, window="1m", max_age_s=300.0)
                     ).collect(at, [CHAT]).observations[CHAT]
    replay = seen[offset]
    assert live.pods_reporting == replay.pods_reporting
    for signal in (Signal.REQUEST_RATE, Signal.QUEUE_DEPTH):
        a, b = live.judged(ready)[signal], replay.judged(ready)[signal]
        assert a.status is b.status, (signal, a, b)
    snap_live, snap_replay = live.snapshot(ready, ready), replay.snapshot(ready, ready)
    shared = {Signal.REQUEST_RATE.value, Signal.QUEUE_DEPTH.value}
    assert {k for k in snap_live.metrics if k in shared} == {
        k for k in snap_replay.metrics if k in shared}
    for key in shared & set(snap_live.metrics):
        assert snap_live.metrics[key].value == pytest.approx(
            snap_replay.metrics[key].value, rel=1e-6), key
        assert snap_live.metrics[key].observed_at == pytest.approx(
            snap_replay.metrics[key].observed_at, abs=1e-3)
