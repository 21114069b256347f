"""Unschedulable pods (a GPU pool that ran out): noticed, reported, not asked for again."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.controller import status as st
from autoscaler.controller.kube import ApiUnavailable, KubeClient, api_client, selector_string
from autoscaler.controller.schedulable import (
    CONDITION_TYPE,
    REASON_GPU,
    REASON_OK,
    REASON_OTHER,
    assess,
    cap_scale_up,
)
from autoscaler.core.types import Reason
from tests.support.silent import SilentServer, kubeconfig

GPU_MSG = ("0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes "
           "are available: 4 No preemption victims found for incoming pod.")
TAINT_MSG = "0/4 nodes are available: 4 node(s) had untolerated taint {gpu: present}."


def pod(name: str, *, phase: str = "Running", unschedulable: str | None = None,
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T21:00:00Z"
    conds = []
    if unschedulable is not None:
        conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": unschedulable})
    elif phase == "Running":
        conds.append({"type": "PodScheduled", "status": "True"})
    return {"metadata": meta, "status": {"phase": phase, "conditions": conds}}


@pytest.mark.parametrize(("pods", "counts", "reason"), [
    pytest.param([pod("a"), pod("b")], (2, 0, 0), REASON_OK, id="all running"),
    pytest.param([pod("a"), pod("b", phase="Pending", unschedulable=GPU_MSG),
                  pod("c", phase="Pending", unschedulable=GPU_MSG)], (3, 2, 2), REASON_GPU,
                 id="two short of GPUs"),
    pytest.param([pod("a"), pod("b", phase="Pending", unschedulable=TAINT_MSG)], (2, 1, 0),
                 REASON_OTHER, id="unschedulable for another reason"),
    pytest.param([pod("a"), pod("b", phase="Pending")], (2, 0, 0), REASON_OK,
                 id="pending but not yet tried by the scheduler"),
    pytest.param([pod("a"), pod("b", phase="Pending", unschedulable=GPU_MSG, deleting=True)],
                 (1, 0, 0), REASON_OK, id="a deleted pending pod no longer counts"),
    pytest.param([], (0, 0, 0), REASON_OK, id="no pods"),
])
def test_assess_counts_the_pods_the_scheduler_refused(
        pods: list[dict[str, Any]], counts: tuple[int, int, int], reason: str) -> None:
    a = assess(pods)
    assert (a.pods, a.unschedulable, a.insufficient_gpu) == counts
    assert a.reason == reason
    assert a.schedulable == counts[0] - counts[1]


def test_the_condition_and_event_name_the_gpu_shortage() -> None:
    a = assess([pod("a"), pod("b", phase="Pending", unschedulable=GPU_MSG)])
    status, reason, message = a.condition()
    assert (status, reason) == ("False", REASON_GPU)
    assert "1 of 2 pods cannot be scheduled" in message and "nvidia.com/gpu" in message
    assert a.event() == ("Warning", REASON_GPU, message)
    ok = assess([pod("a")])
    assert ok.condition()[:2] == ("True", REASON_OK) and ok.event() is None
    assert CONDITION_TYPE == "CapacityAvailable"


@pytest.mark.parametrize(("desired", "current", "short", "expected"), [
    # 8 asked, 2 of them Pending: asking for 10 would only queue two more pods.
    pytest.param(10, 8, True, 8, id="scale-up held while pods wait for GPUs"),
    pytest.param(5, 8, True, 5, id="scale-down goes through"),
    pytest.param(8, 8, True, 8, id="hold stays a hold"),
    pytest.param(10, 8, False, 10, id="no shortage: no cap (until it can)"),
])
def test_a_scale_up_stops_at_the_current_count_while_pods_are_unschedulable(
        desired: int, current: int, short: bool, expected: int) -> None:
    pods = [pod(str(i)) for i in range(6)] + [
        pod(f"p{i}", phase="Pending", unschedulable=GPU_MSG if short else None)
        for i in range(2)]
    assert cap_scale_up(desired, current, assess(pods)) == expected


# --- wiring: the pod LIST at the Kubernetes edge, the condition in the status ---------------


@pytest.mark.parametrize(("selector", "expected"), [
    pytest.param({"matchLabels": {"app": "chat"}}, "app=chat", id="one label"),
    pytest.param({"matchLabels": {"workload": "chat", "app": "vllm"}},
                 "app=vllm,workload=chat", id="labels in a stable order"),
    pytest.param({"matchLabels": {"app": "chat"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["a", "b"]},
        {"key": "canary", "operator": "DoesNotExist"},
        {"key": "gpu", "operator": "Exists"},
        {"key": "zone", "operator": "NotIn", "values": ["x"]}]},
        "app=chat,tier in (a,b),!canary,gpu,zone notin (x)", id="expressions"),
    pytest.param({}, "", id="none"),
])
def test_a_workload_selector_becomes_the_scale_selector_string(
        selector: dict[str, Any], expected: str) -> None:
    assert selector_string(selector) == expected


class PodServer:
    """An API server that answers one pod LIST (two running pods, one GPU-starved) and
    records the request line."""

    def __init__(self) -> None:
        pods = {"kind": "PodList", "items": [pod("chat-a"), pod("chat-b"),
                                             pod("chat-c", phase="Pending",
                                                 unschedulable=GPU_MSG)]}
        body = json.dumps(pods).encode()
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pod_server() -> Iterator[PodServer]:
    server = PodServer()
    yield server
    server.close()


def test_list_pods_asks_by_selector_from_the_watch_cache(pod_server: PodServer,
                                                         tmp_path: Path) -> None:
    kube = KubeClient(api_client(str(kubeconfig(tmp_path, pod_server.port))), timeout_s=2.0)
    pods = kube.list_pods("llm", "app=chat,tier in (a,b)")
    (path,) = pod_server.paths
    url = urllib.parse.urlsplit(path)
    assert url.path == "/api/v1/namespaces/llm/pods"
    assert urllib.parse.parse_qs(url.query) == {"labelSelector": ["app=chat,tier in (a,b)"],
                                                "resourceVersion": ["0"]}
    found = assess(pods)
    assert (found.pods, found.unschedulable, found.insufficient_gpu) == (3, 1, 1)


def test_a_hung_pod_list_costs_one_attempt_then_is_transient(silent: SilentServer,
                                                              tmp_path: Path) -> None:
    kube = KubeClient(api_client(str(kubeconfig(tmp_path, silent.port))), timeout_s=0.3)
    with pytest.raises(ApiUnavailable):
        kube.list_pods("llm", "app=chat")
    assert silent.accepted == 1


@pytest.mark.parametrize(("pods", "kw", "expected"), [
    pytest.param(None, dict(listed=False, pods_ready=6),
                 ("True", REASON_OK, "all 6 replicas ready"), id="steady: nothing listed"),
    pytest.param([pod("a"), pod("b")], dict(listed=True),
                 ("True", REASON_OK, "all 2 pods scheduled"), id="listed, all scheduled"),
    pytest.param([pod("a"), pod("b", phase="Pending", unschedulable=GPU_MSG)],
                 dict(listed=True), ("False", REASON_GPU, None), id="listed, one GPU-starved"),
    pytest.param(None, dict(listed=True, error="HTTP 503"),
                 ("Unknown", "PodListFailed", "cannot list the workload's pods: HTTP 503"),
                 id="the list failed: unknown"),
])
def test_the_capacity_condition(pods: list[dict[str, Any]] | None, kw: dict[str, Any],
                                expected: tuple[str, str, str | None]) -> None:
    got = st.capacity(None if pods is None else assess(pods), **kw)
    assert got[:2] == expected[:2]
    if expected[2] is not None:
        assert got[2] == expected[2]
    else:
        assert got[2].startswith("1 of 2 pods cannot be scheduled (1 for lack of nvidia.com/gpu)")


def test_the_capacity_condition_joins_the_others_only_when_given() -> None:
    ok = st.MetricsVerdict(True, "fine", "ok")
    kw: dict[str, Any] = dict(mode="Scale", valid=True, reason="R", message="m",
                              decision_reason=Reason.DESIRED_WITHIN_RANGE, metrics=ok,
                              blocked=None)
    assert "CapacityAvailable" not in st.conditions(**kw)
    cond = ("False", REASON_GPU, "2 of 6 pods cannot be scheduled")
    assert st.conditions(**kw, capacity=cond)["CapacityAvailable"] == cond
    assert CONDITION_TYPE == "CapacityAvailable"


# --- Metrics mode: the cap is in the value the HPA reads ---------------------------------


def test_in_metrics_mode_the_served_count_is_held_while_pods_are_pending() -> None:
    """The same story as the Scale-mode test in test_controller_loop.py, with a stock HPA
    (``StockHpa``: AverageValue 1 on our desired-replicas metric, 10% tolerance) reading
    the external metric after every cycle and writing the scale."""
    from autoscaler.controller.external_metrics import DESIRED_REPLICAS, metric_value
    from autoscaler.twin.stock_hpa import StockHpa
    from tests.test_controller_loop import NS, run, world

    kube, prom, ctrl = world(mode="Metrics", replicas=4, rate=40.0)
    kube.gpus = 6
    prom.reporting = kube._ready
    hpa = StockHpa(sync_period_s=15.0)
    served: list[float | None] = []

    def cycle_and_hpa(t: float) -> float:
        t = run(ctrl, prom, t, 1)
        value = metric_value(ctrl.outcomes[(NS, "chat")], DESIRED_REPLICAS, now=t,
                             max_age_s=60.0)
        served.append(value)
        if value is not None:
            replicas = kube.deployments["chat"][0]
            n = hpa.proposal(value, replicas, kube._ready("chat"), max_replicas=20)
            if n != replicas:
                kube.scale_by_hand("chat", n)
        return t

    # 40 req/s at 3.4 req/s per replica needs 12; our behaviour at most doubles per
    # period: 4 -> 8 (served 8, ratio 8/4 = 2: the HPA writes 8). On 6 GPUs, 2 pods Pend.
    t = cycle_and_hpa(1_000_000.0)
    assert served == [8.0] and kube.deployments["chat"][0] == 8
    for _ in range(6):
        t = cycle_and_hpa(t)
    # The policy asks for 12; what the HPA reads is the held 8 (ratio 1: it keeps 8).
    assert served[1:] == [8.0] * 6
    assert kube.deployments["chat"][0] == 8
    assert kube.scale_writes == []  # we never write the scale in Metrics mode
    status = kube.statuses["chat"][-1]
    assert (status["desiredReplicas"], status["reason"]) == (8, REASON_GPU)
    assert len([r for _, r, _ in kube.events if r == REASON_GPU]) == 1
    # Six more GPUs: all 8 ready, no LIST, no cap: 12 is served and the HPA writes it.
    kube.gpus = 12
    t = cycle_and_hpa(t)
    assert served[-1] == 12.0 and kube.deployments["chat"][0] == 12


def test_in_shadow_mode_the_decision_is_reported_as_made() -> None:
    # Shadow mode writes nothing and serves no count: it reports what the policy decided
    # (12), with the shortage in its condition.
    from tests.test_controller_loop import run, world

    kube, prom, ctrl = world(mode="Shadow", replicas=8, rate=40.0)
    kube.gpus = 6
    prom.reporting = kube._ready
    run(ctrl, prom, 1_000_000.0, 1)
    status = kube.statuses["chat"][-1]
    assert status["desiredReplicas"] == 12
    cond = next(c for c in status["conditions"] if c["type"] == CONDITION_TYPE)
    assert (cond["status"], cond["reason"]) == ("False", REASON_GPU)
