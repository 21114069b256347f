"""The twin exporter: engine expositions, per-pod counters, replicas, faults, HTTP."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.errors import SpecError
from autoscaler.metrics.presets import PRESETS, get_preset, render
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.traces.model import Trace
from autoscaler.twin import EXPOSITIONS, Twin, parse_replicas
from autoscaler.twin.closed_loop import (
    Run,
    Tolerances,
    compare,
    compress_profile,
    compress_spec,
    compress_trace,
)
from autoscaler.twin.ledger import PodLedger
from tests.support.wait import wait_until

RATE = 8.0  # requests/s of the constant test trace
COLD_S = 5.0


@pytest.fixture(scope="module")
def profile() -> ReplicaProfile:
    return dataclasses.replace(load_profile("llama3-8b-h100"), cold_start_s=COLD_S,
                               cold_start_jitter_s=0.0)


def constant_trace(rate: float = RATE, duration_s: float = 3600.0) -> Trace:
    n = int(duration_s)
    return Trace(name="flat", duration_s=duration_s, rates_rps=np.full(n, rate),
                 resolution_s=1.0)


def make_twin(profile: ReplicaProfile, preset: str = "vllm", *, replicas: int = 2,
              targets: int = 1, **kw: Any) -> Twin:
    return Twin.from_trace(constant_trace(), profile, preset=preset, targets=targets,
                           initial_replicas=replicas, **kw)


def series(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] from an exposition."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def per_pod(text: str | dict[str, list[tuple[dict[str, str], float]]], name: str,
            **match: str) -> dict[str, float]:
    rows = series(text) if isinstance(text, str) else text
    return {lab["pod"]: v for lab, v in rows.get(name, [])
            if all(lab.get(k) == v2 for k, v2 in match.items())}


# --- exposition -----------------------------------------------------------------------

# Written from the engines' sources, not from the twin: family -> type, and label names.
EXPECTED = {
    "vllm": ({"vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge",
              "vllm:kv_cache_usage_perc": "gauge", "vllm:gpu_cache_usage_perc": "gauge",
              "vllm:prompt_tokens": "counter", "vllm:generation_tokens": "counter",
              "vllm:request_success": "counter",
              "vllm:time_to_first_token_seconds": "histogram"}, {"model_name", "engine"}),
    "sglang": ({"sglang:num_running_reqs": "gauge", "sglang:num_queue_reqs": "gauge",
                "sglang:token_usage": "gauge", "sglang:prompt_tokens": "counter",
                "sglang:time_to_first_token_seconds": "histogram"}, {"model_name"}),
    "tgi": ({"tgi_queue_size": "gauge", "tgi_batch_current_size": "gauge",
             "tgi_request_count": "counter", "tgi_request_input_length": "histogram",
             "tgi_request_generated_tokens": "histogram"}, set()),
    "triton": ({"nv_inference_request_success": "counter",
                "nv_inference_queue_duration_us": "counter",
                "nv_inference_pending_request_count": "gauge",
                "nv_inference_first_response_histogram_ms": "histogram"},
               {"model", "version"}),
    "tensorrt-llm": ({"trtllm_server_queue_length": "gauge",
                      "trtllm_num_active_requests": "gauge",
                      "trtllm_request_success": "counter",
                      "trtllm_time_to_first_token_seconds": "histogram"},
                     {"model_name", "engine_type"}),
    "tensorrt-llm-triton": ({"nv_trt_llm_request_metrics": "gauge",
                             "nv_trt_llm_kv_cache_block_metrics": "gauge",
                             "nv_inference_request_success": "counter"},
                            {"model", "version"}),
}
VLLM_TTFT_LE = ["0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5",
                "0.75", "1.0", "2.5", "5.0", "7.5", "10.0", "20.0", "40.0", "80.0", "160.0",
                "640.0", "2560.0", "+Inf"]


@pytest.mark.parametrize("preset", list(EXPECTED), ids=list(EXPECTED))
def test_metrics_parse_and_carry_the_engines_names_types_and_labels(
        profile: ReplicaProfile, preset: str) -> None:
    twin = make_twin(profile, preset)
    twin.advance_to(30)
    text = twin.metrics_text()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    types, labels = EXPECTED[preset]
    for name, typ in types.items():
        assert name in fams, name
        assert fams[name].type == typ, name
        for s in fams[name].samples:
            assert labels | {"pod", "namespace", "workload"} <= set(s.labels), name
    pods = {s.labels["pod"] for f in fams.values() for s in f.samples if "pod" in s.labels}
    assert len(pods) == 2


def test_vllm_ttft_buckets_are_vllms_own_bounds(profile: ReplicaProfile) -> None:
    twin = make_twin(profile)
    twin.advance_to(10)
    les = [lab["le"] for lab, _ in series(twin.metrics_text())[
        "vllm:time_to_first_token_seconds_bucket"]]
    assert les[: len(VLLM_TTFT_LE)] == VLLM_TTFT_LE


@pytest.mark.parametrize(("preset", "type_line"), [
    pytest.param("triton", "# TYPE nv_inference_request_success counter\n", id="triton"),
    pytest.param("tgi", "# TYPE tgi_request_count counter\n", id="tgi"),
    pytest.param("vllm", "# TYPE vllm:prompt_tokens_total counter\n", id="vllm"),
])
def test_counters_keep_the_engines_own_name_without_an_added_total(
        profile: ReplicaProfile, preset: str, type_line: str) -> None:
    twin = make_twin(profile, preset)
    twin.advance_to(5)
    text = twin.metrics_text()
    assert type_line in text
    name = type_line.split()[2]
    assert re.search(rf"^{re.escape(name)}{{", text, re.M)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "dcgm"] + ["vllm+dcgm"])
def test_every_metric_a_preset_queries_is_exported_by_the_twin(
        profile: ReplicaProfile, preset: str) -> None:
    twin = make_twin(profile, preset)
    twin.advance_to(5)
    exported = set(series(twin.metrics_text()))
    p = get_preset(preset)
    wanted = {p.liveness_metric}
    for t in p.queries.values():
        wanted |= set(re.findall(r"([a-zA-Z_:][\w:]*)\{", render(t, sel="", by="x",
                                                                  window="1m")))
    # prometheus_client's parser names every counter sample ``<name>_total``, also for
    # engines whose counters have no such suffix (Prometheus itself keeps the raw name).
    missing = {w for w in wanted if w not in exported and f"{w}_total" not in exported}
    assert not missing


def test_dcgm_gpu_util_is_a_whole_percent_per_gpu(profile: ReplicaProfile) -> None:
    prof = dataclasses.replace(profile, gpus_per_replica=2)
    twin = make_twin(prof, "vllm+dcgm")
    twin.advance_to(20)
    rows = series(twin.metrics_text())["DCGM_FI_DEV_GPU_UTIL"]
    assert len(rows) == 4  # 2 pods x 2 GPUs
    assert {lab["gpu"] for lab, _ in rows} == {"0", "1"}
    for _, v in rows:
        assert 0 <= v <= 100 and v == int(v)


# --- per-pod counters -----------------------------------------------------------------

def test_fleet_counts_match_an_independent_count_of_the_constant_trace(
        profile: ReplicaProfile) -> None:
    twin = make_twin(profile, replicas=3)
    twin.advance_to(100.0)
    text = twin.metrics_text()
    # 8 req/s for 100 s: 800 requests, all served at once (3 replicas, well under capacity)
    assert sum(per_pod(text, "vllm:time_to_first_token_seconds_count").values()) == 800
    assert sum(per_pod(text, "vllm:request_success_total").values()) == 800
    truth = twin.truth()["targets"][0]
    assert truth["arrival_rate_1m"] == pytest.approx(RATE)
    assert truth["fleet"]["arrivals"] == 800


def test_counters_stay_monotonic_per_pod_across_replica_changes(
        profile: ReplicaProfile) -> None:
    twin = make_twin(profile, replicas=2)
    last: dict[str, dict[str, float]] = {}
    names = ["vllm:request_success_total", "vllm:prompt_tokens_total",
             "vllm:time_to_first_token_seconds_count", "vllm:time_to_first_token_seconds_sum"]
    seen_pods: set[str] = set()
    plan = {10: 5, 40: 1, 60: 3, 90: 2}
    for t in range(1, 121):
        if t in plan:
            twin.set_replicas(plan[t])
        twin.advance_to(float(t))
        rows = series(twin.metrics_text())
        for name in names:
            now = per_pod(rows, name)
            before = last.get(name, {})
            # what the fleet handed out this step: a new pod can hold no more than that
            handed_out = sum(now.values()) - sum(before.get(p, 0.0) for p in now)
            for pod, v in now.items():
                if pod in before:
                    assert v >= before[pod], (name, pod, t)
                else:
                    assert v <= handed_out + 1e-9, (name, pod, t)
            last[name] = now
        seen_pods |= set(per_pod(rows, names[0]))
    assert len(seen_pods) >= 5


def test_sum_over_pods_equals_the_fleets_truth_after_scale_changes(
        profile: ReplicaProfile) -> None:
    twin = make_twin(profile, replicas=4)
    twin.advance_to(30)
    twin.set_replicas(1)  # three pods go away with their counts
    twin.advance_to(60)
    twin.set_replicas(3)
    twin.advance_to(90)
    text = twin.metrics_text()
    truth = twin.truth()["targets"][0]
    exported = sum(per_pod(text, "vllm:request_success_total").values())
    assert exported == truth["exported"]["success"]
    assert (truth["exported"]["arrivals"] + truth["retired"]["arrivals"]
            + truth["unattributed"]["arrivals"]) == truth["fleet"]["arrivals"] == 720
    buckets = [v for lab, v in series(text)["vllm:time_to_first_token_seconds_bucket"]]
    n_le = len(VLLM_TTFT_LE)
    summed = np.sum(np.reshape(buckets, (-1, n_le)), axis=0).tolist()
    assert summed == truth["exported"]["ttft_cumulative"]


def test_gauges_split_the_fleets_queue_and_batch_evenly(profile: ReplicaProfile) -> None:
    twin = make_twin(profile, replicas=4)
    twin.advance_to(50)
    text = twin.metrics_text()
    truth = twin.truth()["targets"][0]
    assert sum(per_pod(text, "vllm:num_requests_running").values()) == pytest.approx(
        truth["running"])
    assert sum(per_pod(text, "vllm:num_requests_waiting").values()) == pytest.approx(
        truth["waiting"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sets(st.sampled_from("abcde")),
                          st.floats(0, 50, allow_nan=False), st.booleans()),
                min_size=1, max_size=25))
def test_the_ledger_conserves_counts_and_keeps_pods_monotonic(
        steps: list[tuple[set[str], float, bool]]) -> None:
    led = PodLedger(2, 1)
    total = 0.0
    fair_since: dict[str, int] = {}
    prev: dict[str, int] = {}
    for i, (pods, inc, reset) in enumerate(steps):
        led.set_pods(sorted(pods))
        if reset and led.pods:
            led.reset_pod(led.pods[0])
            prev.pop(led.pods[0], None)
        total += inc
        led.add(np.array([total, 2 * total]), np.array([inc]), [(0, 1)])
        for p, row in zip(led.pods, led.ints, strict=True):
            assert row[0] >= prev.get(p, 0)
            prev[p] = int(row[0])
        prev = {p: v for p, v in prev.items() if p in led.pods}
        fair_since = {p: fair_since.get(p, i) for p in led.pods}
        conserved = led.exported_ints() + led.retired_ints + led.unattributed_ints
        assert conserved.tolist() == [math.floor(total + 1e-9), math.floor(2 * total + 1e-9)]
        assert float(led.floats.sum() + led.retired_floats.sum()
                     + led.unattributed_floats.sum()) == pytest.approx(total)


def test_integer_shares_differ_by_at_most_one_while_the_pod_set_is_stable() -> None:
    led = PodLedger(1, 0)
    led.set_pods(["a", "b", "c"])
    total = 0
    for inc in [7, 1, 1, 5, 0, 2, 11, 3]:
        total += inc
        led.add(np.array([float(total)]), np.zeros(0), [])
        col = led.ints[:, 0]
        assert col.sum() == total
        assert col.max() - col.min() <= 1


# --- replicas -------------------------------------------------------------------------

def test_new_replicas_are_ready_only_after_the_cold_start(profile: ReplicaProfile) -> None:
    twin = make_twin(profile, replicas=2)
    twin.advance_to(10)
    twin.set_replicas(4)
    twin.advance_to(10 + COLD_S - 1)
    assert twin.truth()["targets"][0]["ready_replicas"] == 2
    assert twin.replicas()["llm"] == {"desired": 4, "ready": 2, "provisioned": 4}
    twin.advance_to(10 + COLD_S + 1)
    assert twin.truth()["targets"][0]["ready_replicas"] == 4
    assert len(per_pod(twin.metrics_text(), "vllm:num_requests_running")) == 4


def test_the_replicas_file_is_reread_when_it_changes_and_bad_content_is_ignored(
        profile: ReplicaProfile, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "replicas"
    twin = make_twin(profile, replicas=2, replicas_file=f)
    twin.advance_to(5)  # no file yet: keep 2
    f.write_text("3\n")
    twin.advance_to(6)
    assert twin.replicas()["llm"]["desired"] == 3
    f.write_text("three")
    _bump_mtime(f)
    twin.advance_to(7)
    assert twin.replicas()["llm"]["desired"] == 3
    assert "ignored" in caplog.text
    f.write_text(json.dumps({"replicas": 1}))
    _bump_mtime(f)
    twin.advance_to(8 + COLD_S)
    assert twin.truth()["targets"][0]["ready_replicas"] == 1


def _bump_mtime(p: Path) -> None:
    """Some filesystems keep one mtime for two writes within their resolution."""
    st_ = p.stat()
    os.utime(p, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param(4, {"w-0": 4, "w-1": 4}, id="bare-number"),
    pytest.param({"replicas": 2}, {"w-0": 2, "w-1": 2}, id="all"),
    pytest.param({"replicas": 2, "workload": "w-1"}, {"w-1": 2}, id="one"),
    pytest.param({"replicas": {"w-0": 1, "w-1": 0}}, {"w-0": 1, "w-1": 0}, id="map"),
    pytest.param({"w-1": 7}, {"w-1": 7}, id="bare-map"),
])
def test_replica_requests_accept_every_documented_form(data: object,
                                                       expected: dict[str, int]) -> None:
    assert parse_replicas(data, ["w-0", "w-1"]) == expected


@pytest.mark.parametrize("data", [
    pytest.param(-1, id="negative"), pytest.param(2.5, id="fraction"),
    pytest.param(True, id="bool"), pytest.param("3", id="string"),
    pytest.param({"replicas": 2, "workload": "nope"}, id="unknown-workload"),
    pytest.param({}, id="empty"), pytest.param(10**6, id="too-many"),
])
def test_bad_replica_requests_are_spec_errors(data: object) -> None:
    with pytest.raises(SpecError):
        parse_replicas(data, ["w-0", "w-1"])


def test_independent_targets_get_their_own_workloads_and_curves(
        profile: ReplicaProfile) -> None:
    trace = Trace(name="ramp", duration_s=600.0, rates_rps=np.linspace(1, 20, 600),
                  resolution_s=1.0)
    twin = Twin.from_trace(trace, profile, targets=3, workload="w", initial_replicas=3)
    twin.advance_to(120)
    truth = twin.truth()["targets"]
    assert [t["workload"] for t in truth] == ["w-0", "w-1", "w-2"]
    rates = [t["arrival_rate_1m"] for t in truth]
    assert len({round(r, 6) for r in rates}) == 3
    workloads = {lab["workload"] for lab, _ in series(twin.metrics_text())[
        "vllm:num_requests_running"]}
    assert workloads == {"w-0", "w-1", "w-2"}


# --- faults and HTTP ------------------------------------------------------------------

@pytest.fixture()
def served(profile: ReplicaProfile) -> Iterator[tuple[Twin, str]]:
    twin = make_twin(profile, replicas=2, targets=2, workload="w")
    port = twin.start(0, clock=False)
    try:
        yield twin, f"http://127.0.0.1:{port}"
    finally:
        twin.stop()


def test_http_replicas_change_the_simulated_ready_count_after_cold_start(
        served: tuple[Twin, str]) -> None:
    twin, url = served
    twin.advance_to(10)
    r = httpx.put(f"{url}/replicas", json={"replicas": 4, "workload": "w-1"})
    assert r.status_code == 200
    assert r.json()["w-1"]["desired"] == 4
    twin.advance_to(10 + COLD_S + 1)
    got = httpx.get(f"{url}/replicas").json()
    assert got["w-1"]["ready"] == 4 and got["w-0"]["ready"] == 2
    assert httpx.post(f"{url}/replicas", json={"replicas": -2}).status_code == 400
    assert httpx.post(f"{url}/replicas", content=b"{nope").status_code == 400


def test_truth_over_http_matches_the_exported_counters(served: tuple[Twin, str]) -> None:
    twin, url = served
    twin.advance_to(40)
    text = httpx.get(f"{url}/metrics").text
    truth = httpx.get(f"{url}/truth").json()
    for t in truth["targets"]:
        got = sum(v for lab, v in series(text)["vllm:request_success_total"]
                  if lab["workload"] == t["workload"])
        assert got == t["exported"]["success"]


def test_a_counter_reset_fault_restarts_one_pod_from_zero(served: tuple[Twin, str]) -> None:
    twin, url = served
    twin.advance_to(30)
    before = per_pod(httpx.get(f"{url}/metrics").text, "vllm:request_success_total")
    r = httpx.post(f"{url}/faults", json={"counter_reset": True, "workload": "w-0"})
    pod = r.json()["counter_reset"]
    after = per_pod(httpx.get(f"{url}/metrics").text, "vllm:request_success_total")
    assert before[pod] > 0 and after[pod] == 0
    assert {p: v for p, v in after.items() if p != pod} == {
        p: v for p, v in before.items() if p != pod}


def test_a_dropped_workload_disappears_and_comes_back(served: tuple[Twin, str]) -> None:
    twin, url = served
    twin.advance_to(5)
    assert httpx.post(f"{url}/faults", json={"drop_workload": "w-1"}).status_code == 200
    workloads = {lab["workload"] for lab, _ in series(httpx.get(f"{url}/metrics").text)[
        "vllm:num_requests_running"]}
    assert workloads == {"w-0"}
    httpx.post(f"{url}/faults", json={"restore_workload": "w-1"})
    workloads = {lab["workload"] for lab, _ in series(httpx.get(f"{url}/metrics").text)[
        "vllm:num_requests_running"]}
    assert workloads == {"w-0", "w-1"}


def test_a_delay_fault_slows_metrics_responses(served: tuple[Twin, str]) -> None:
    _, url = served
    httpx.post(f"{url}/faults", json={"delay_s": 0.3})
    began = time.perf_counter()
    assert httpx.get(f"{url}/metrics").status_code == 200
    assert time.perf_counter() - began >= 0.3
    # Only the lower bound is checked: an upper bound on a response time is a wall-clock
    # limit that a loaded machine breaks, not behaviour.
    assert httpx.post(f"{url}/faults", json={"clear": True}).status_code == 200


@pytest.mark.parametrize("body", [
    pytest.param({"nothing": 1}, id="unknown-fault"),
    pytest.param({"drop_workload": "nope"}, id="unknown-workload"),
    pytest.param({"delay_s": -1}, id="negative-delay"),
    pytest.param([1], id="not-an-object"),
])
def test_bad_fault_requests_are_rejected(served: tuple[Twin, str], body: object) -> None:
    _, url = served
    assert httpx.post(f"{url}/faults", json=body).status_code == 400


def test_the_clock_moves_simulated_time_at_the_chosen_speed(profile: ReplicaProfile) -> None:
    wall = [100.0]
    twin = make_twin(profile, speed=10.0, step_s=0.01, wall_clock=lambda: wall[0])
    twin.start(0)
    try:
        wall[0] = 103.0  # three wall seconds at x10
        deadline = time.monotonic() + 5
        while twin.sim_time < 30.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert twin.sim_time == pytest.approx(30.0)
    finally:
        twin.stop()
    assert twin.truth()["targets"][0]["sim_time_s"] == 30.0


def test_every_exposition_is_known_to_the_presets() -> None:
    assert set(EXPOSITIONS) == set(PRESETS) - {"dcgm"}


def test_after_the_trace_ends_arrivals_stop_unless_it_loops(profile: ReplicaProfile) -> None:
    short = constant_trace(duration_s=60.0)
    once = Twin.from_trace(short, profile, initial_replicas=2)
    twice = Twin.from_trace(short, profile, initial_replicas=2, loops=2)
    for twin in (once, twice):
        twin.advance_to(100.0)
    t_once, t_twice = once.truth()["targets"][0], twice.truth()["targets"][0]
    assert t_once["trace_ended"] and t_once["fleet"]["arrivals"] == 60 * RATE
    assert not t_twice["trace_ended"] and t_twice["fleet"]["arrivals"] == 100 * RATE


def test_truth_gives_the_wall_clock_rate_prometheus_will_see(profile: ReplicaProfile) -> None:
    twin = make_twin(profile, speed=5.0)
    twin.advance_to(120.0)
    t = twin.truth()["targets"][0]
    assert t["arrival_rate_1m_per_wall_s"] == pytest.approx(5.0 * RATE)


def test_the_cli_serves_until_sigterm_and_exits_cleanly(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = ("import sys\n"
              "from autoscaler.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "twin", "--port", str(port), "--speed", "20",
         "--preset", "sglang", "--workload", "cli", "--replicas-file",
         str(tmp_path / "r")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if "sglang:num_running_reqs" in text:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert 'workload="cli"' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    assert code == 0


# --- following a cluster's pods -------------------------------------------------------


class FakePods:
    """A PodSource whose answers the test sets (None: the cluster cannot be read)."""

    def __init__(self) -> None:
        self.ready: dict[str, list[str]] | None = {}
        self.reads = 0
        """How many times the twin has asked: a wait on its next reads, not on time."""

    def ready_pods(self) -> dict[str, list[str]] | None:
        self.reads += 1
        return self.ready


def following_twin(profile: ReplicaProfile) -> Twin:
    return Twin.from_trace(constant_trace(), profile, workload="chat", follow_pods=True)


def test_a_following_twin_exports_exactly_the_ready_pods_under_their_names(
        profile: ReplicaProfile) -> None:
    twin = following_twin(profile)
    twin.advance_to(5)
    assert per_pod(twin.metrics_text(), "vllm:request_success_total") == {}  # none ready yet
    twin.set_pods({"chat": ["chat-abc12-x1", "chat-abc12-x2"]})
    twin.advance_to(10)
    first = per_pod(twin.metrics_text(), "vllm:request_success_total", workload="chat")
    assert set(first) == {"chat-abc12-x1", "chat-abc12-x2"}
    # A third pod turns Ready: a new series that starts from zero, the others keep counting.
    twin.set_pods({"chat": ["chat-abc12-x1", "chat-abc12-x2", "chat-abc12-x3"]})
    fresh = per_pod(twin.metrics_text(), "vllm:request_success_total")
    assert fresh["chat-abc12-x3"] == 0
    twin.advance_to(20)
    later = per_pod(twin.metrics_text(), "vllm:request_success_total")
    assert later["chat-abc12-x1"] >= first["chat-abc12-x1"]
    assert later["chat-abc12-x3"] > 0
    # Scale-down: the deleted pod's series vanish with it.
    twin.set_pods({"chat": ["chat-abc12-x3"]})
    twin.advance_to(25)
    assert set(per_pod(twin.metrics_text(), "vllm:request_success_total")) == {"chat-abc12-x3"}


def test_a_following_twin_serves_with_as_many_replicas_as_pods_are_ready(
        profile: ReplicaProfile) -> None:
    twin = following_twin(profile)
    twin.set_pods({"chat": ["a", "b", "c"]})
    twin.advance_to(3)
    # The profile's 5-s cold start is not paid again: the cluster already paid it.
    assert twin.replicas()["chat"]["ready"] == 3
    twin.set_pods({"chat": ["a"]})
    twin.advance_to(4)
    assert twin.replicas()["chat"] == {"desired": 1, "ready": 1, "provisioned": 1 + 2}
    # (the two removed replicas drain their in-flight requests, as in the replay)


def test_with_no_ready_pod_arrivals_are_counted_but_exported_by_nobody(
        profile: ReplicaProfile) -> None:
    twin = following_twin(profile)
    twin.advance_to(10)
    truth = twin.truth()["targets"][0]
    # 10 s x 8 req/s arrived while no pod was ready: no pod exists to export them.
    assert truth["unattributed"]["arrivals"] == 10 * 8
    assert truth["exported"]["arrivals"] == 0


def test_following_ignores_unreadable_cluster_reads_and_replica_requests_are_refused(
        profile: ReplicaProfile) -> None:
    twin = following_twin(profile)
    pods = FakePods()
    pods.ready = {"chat": ["p1", "p2"]}
    twin.follow(pods, interval_s=0.02)
    try:
        deadline = time.monotonic() + 10
        while twin.replicas()["chat"]["desired"] != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert twin.replicas()["chat"]["desired"] == 2
        pods.ready = None  # the API server is down: keep serving with the known pods
        failing = pods.reads
        wait_until("two unreadable cluster reads", lambda: pods.reads >= failing + 2,
                   timeout_s=10)
        assert twin.replicas()["chat"]["desired"] == 2
        pods.ready = {}  # read fine, nothing ready: none serve
        deadline = time.monotonic() + 10
        while twin.replicas()["chat"]["desired"] != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert twin.replicas()["chat"]["desired"] == 0
    finally:
        twin.stop()
    with pytest.raises(SpecError, match="follows a cluster"):
        twin.set_replicas(3)


# --- closed loop: compression and comparison -------------------------------------------

def test_compression_divides_every_duration_and_no_rate(profile: ReplicaProfile) -> None:
    spec = {"policy": "hpa", "syncPeriodSeconds": 15, "coldStartSeconds": 90,
            "maxMetricAgeSeconds": 60, "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Percent", "value": 100,
                                            "periodSeconds": 15}]}}}
    out = compress_spec(spec, 15)
    assert (out["syncPeriodSeconds"], out["coldStartSeconds"], out["maxMetricAgeSeconds"]) \
        == (1, 6, 4)  # 15/15, 90/15, 60/15
    assert out["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 20  # 300/15
    assert out["behavior"]["scaleDown"]["policies"][0]["periodSeconds"] == 1
    assert spec["syncPeriodSeconds"] == 15  # the input is left alone
    with pytest.raises(SpecError, match="periodSeconds"):
        compress_spec({"behavior": {"scaleUp": {"policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 10}]}}}, 15)  # 0.67 s: refused
    trace = constant_trace(rate=8.0, duration_s=600.0)
    fast = compress_trace(trace, 15)
    assert fast.duration_s == 40.0  # 600 / 15
    assert np.allclose(fast.binned_rates(1.0), 8.0)  # same rate
    p = compress_profile(dataclasses.replace(profile, cold_start_s=90, cold_start_jitter_s=30),
                         15)
    assert (p.cold_start_s, p.cold_start_jitter_s) == (6, 2)


def _run(replicas: list[int], *, gpu_hours: float = 1.0, attainment: float = 0.95) -> Run:
    return Run(t_s=[float(i) for i in range(len(replicas))], replicas=replicas,
               ready=replicas, gpu_hours=gpu_hours, attainment=attainment)


REPLAY = [2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2]


@pytest.mark.parametrize(("live", "ok", "words"), [
    pytest.param(_run(REPLAY), True, "", id="identical"),
    pytest.param(_run([2, *REPLAY[:-1]]), True, "", id="one second late: absorbed by the lag"),
    pytest.param(_run([min(6, r + 1) for r in REPLAY]), False, "mean |diff|",
                 id="one replica more all along"),
    pytest.param(_run(REPLAY[:7] + [9] * 5 + REPLAY[12:]), False, "p95 |diff|",
                 id="overshoot of three for five seconds at the peak"),
    pytest.param(_run(REPLAY, gpu_hours=1.2), False, "GPU-hours", id="20% more GPU-hours"),
    pytest.param(_run(REPLAY, attainment=0.85), False, "attainment",
                 id="ten points less attainment"),
])
def test_compare_passes_the_same_run_and_names_each_divergence(
        live: Run, ok: bool, words: str) -> None:
    cmp = compare(live, _run(REPLAY), duration_s=20.0)
    assert cmp.ok is ok, cmp.table()
    assert words in " ".join(cmp.failures)
    assert ("OK" if ok else "DIVERGED") in cmp.table()


def test_the_lag_search_is_bounded() -> None:
    # Five seconds late is not latency: with a 2-s bound the shift cannot hide it.
    late = _run([2] * 5 + REPLAY[:-5])
    cmp = compare(late, _run(REPLAY), duration_s=20.0, tol=Tolerances(max_lag_s=2.0))
    assert not cmp.ok and abs(cmp.lag_s) <= 2.0
