"""GPUs run out under the live controller: kube-scheduler + kwok, the controller in Scale mode,
and in Metrics mode with a stock HPA writing the count we serve.

A pool of 4 GPUs (one node), a Deployment of one GPU per pod, and load that needs 8 replicas
(25 req/s at 4 x 0.85 = 3.4 req/s per replica: ceil(7.35) = 8). The predictive behaviour
at most doubles per 15-s period, so the controller asks 3 -> 6 first: 4 pods run, 2 stay
Pending with ``Insufficient nvidia.com/gpu``. It must then stop there (more pods would only
queue), say so in ``CapacityAvailable=False`` and in one Warning Event, and go on to 8 once a
second node brings 4 more GPUs.

In Metrics mode the same hold must reach the HPA: the desired-replicas metric we serve is the
held 6, so the HPA (AverageValue 1: 6 / 6 replicas, ratio 1) keeps 6 instead of asking for
8, and goes to 8 when we serve 8.

The controller runs as its ServiceAccount with deploy/rbac.yaml, so the pod LIST it needs is
checked against the real RBAC too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from test_controller_e2e import (  # noqa: F401 - installed and metrics are fixtures
    WINDOW,
    ControllerProcess,
    autoscaler_cr,
    create_cr,
    events,
    installed,
    metrics,
    read_cr,
    replicas,
    wait_decisions,
)

from autoscaler.controller.external_metrics import DESIRED_REPLICAS
from tests.e2e.kube import ControlPlane
from tests.e2e.kwok_cluster import (
    POOL_LABEL,
    GpuPool,
    KwokCluster,
    gpu_deployment,
    pod_states,
    wait_for,
)
from tests.e2e.kwok_loop import ExternalMetricsController, passthrough_hpa
from tests.support.promserver import PrometheusServer, ScriptedExporter

A10 = GpuPool("a10", "NVIDIA-A10", nodes=1, gpus_per_node=4)
"""This test's own pool (the session's L4 pool is asserted to hold exactly 4 GPUs
elsewhere, so it is not grown here)."""


REPORTING = 8
"""Pods exporting engine metrics: as many as can ever be ready here, so the sums are never
partial (fewer pods reporting than ready would make the controller hold, rightly)."""


def serve_load(served: tuple[ScriptedExporter, PrometheusServer], namespace: str,
               workload: str, rate: float) -> None:
    """``rate`` requests/s split over ``REPORTING`` pods, awaited in Prometheus' rate()."""
    exporter, prom = served
    for i in range(REPORTING):
        labels = {"namespace": namespace, "workload": workload, "pod": f"{workload}-{i}"}
        exporter.set_gauge("vllm:num_requests_running", labels, 1.0)
        exporter.set_gauge("vllm:num_requests_waiting", labels, 0.0)
        share = rate / REPORTING
        exporter.set_histogram_rates("vllm:time_to_first_token_seconds", labels,
                                     {"0.5": share, "+Inf": share}, sum_rate=0.1 * share)
    q = (f'sum(rate(vllm:time_to_first_token_seconds_count{{namespace="{namespace}",'
         f'workload="{workload}"}}[{WINDOW}]))')
    prom.wait_for_steady(q, rate)


def _capacity(api: k8s.ApiClient, ns: str) -> dict[str, str] | None:
    status = read_cr(api, ns, "gpu").get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}.get("CapacityAvailable")


@pytest.fixture
def a10(kwok_cluster: KwokCluster, api_client: k8s.ApiClient) -> Iterator[KwokCluster]:
    kwok_cluster.add_pool(A10)
    yield kwok_cluster
    core = k8s.CoreV1Api(api_client)
    for node in core.list_node(label_selector=f"{POOL_LABEL}={A10.name}").items:
        core.delete_node(node.metadata.name)


@pytest.mark.parametrize("mode", ["Scale", "Metrics"])
def test_the_controller_stops_at_the_gpu_pool_reports_it_once_and_resumes(
        mode: str, api_client: k8s.ApiClient, control_plane: ControlPlane, namespace: str,
        a10: KwokCluster, installed: Path,  # noqa: F811
        metrics: tuple[ScriptedExporter, PrometheusServer],  # noqa: F811
        tmp_path: Path) -> None:
    serve_load(metrics, namespace, "gpu", rate=25.0)
    gpu_deployment(api_client, namespace, "gpu", 3, pool=A10.name, cold_start_s=0.5)
    wait_for("3 Ready pods", lambda: sum(p.ready for p in pod_states(
        api_client, namespace, "gpu")) == 3, cluster=a10)
    # A 3-s sync leaves the ReplicaSet and the scheduler time to create and place (or
    # refuse) new pods before the next decision reads them.
    create_cr(api_client, namespace, autoscaler_cr(namespace, "gpu", mode=mode,
                                                   syncPeriodSeconds=3))
    ext: ExternalMetricsController | None = None
    if mode == "Scale":
        proc = ControllerProcess(installed, metrics[1].url, "gpu", tmp_path)
    else:
        ext = ExternalMetricsController(control_plane, api_client, installed, metrics[1].url,
                                        tmp_path, namespace=namespace,
                                        service_ns=f"gpu-ext-{uuid.uuid4().hex[:6]}",
                                        identity="gpu")
        proc = ext.proc
        k8s.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(
            namespace, passthrough_hpa("gpu", 12, DESIRED_REPLICAS))
    fail: Callable[[str], Any] = lambda what: AssertionError(  # noqa: E731
        f"{what}\ncontroller log:\n{proc.tail()}\n{a10.log_tails()}")
    try:
        try:
            wait_for("CapacityAvailable=False", lambda: (
                c := _capacity(api_client, namespace)) is not None and c["status"] == "False",
                timeout_s=90, interval_s=0.5)
        except AssertionError:
            raise fail("no CapacityAvailable=False; status: "
                       f"{read_cr(api_client, namespace, 'gpu').get('status')}") from None
        # 25 req/s wants 8; the default scale-up rules allow 3 -> max(3 x 2, 3 + 4) = 7 in
        # one step, and the pool has GPUs for 4 of them.
        pods = pod_states(api_client, namespace, "gpu")
        assert (len(pods), sum(p.ready for p in pods),
                sum(p.unschedulable is not None for p in pods)) == (7, 4, 3)
        # Held at 7 past the policy's 15-s scale-up window (10 decisions x 3 s = 30 s): the
        # policy wants 8, the controller does not ask for pods that would only queue.
        wait_decisions(proc, "gpu", 10)
        assert replicas(api_client, namespace, "gpu") == 7, proc.tail()
        cond = _capacity(api_client, namespace)
        assert cond is not None and cond["reason"] == "InsufficientGPU"
        assert "3 of 7 pods cannot be scheduled" in cond["message"]
        status = read_cr(api_client, namespace, "gpu")["status"]
        assert (status["currentReplicas"], status["desiredReplicas"]) == (7, 7)
        warned = events(api_client, namespace, "InsufficientGPU")
        assert len(warned) == 1 and warned[0].count in (None, 1), warned  # once, not per cycle
        assert warned[0].type == "Warning"
        assert warned[0].involved_object.kind == "InferenceAutoscaler"
        assert "Insufficient nvidia.com/gpu" in warned[0].message

        # A second node, 4 more GPUs: the 3 Pending pods start, then the scale-up resumes.
        a10.add_pool(GpuPool(A10.name, A10.product, nodes=2, gpus_per_node=4))
        try:
            wait_for("8 replicas, all Ready, CapacityAvailable=True", lambda: (
                replicas(api_client, namespace, "gpu") == 8
                and sum(p.ready for p in pod_states(api_client, namespace, "gpu")) == 8
                and (c := _capacity(api_client, namespace)) is not None
                and c["status"] == "True"), timeout_s=90, interval_s=0.5)
        except AssertionError:
            raise fail("the scale-up did not resume") from None
        assert len(events(api_client, namespace, "InsufficientGPU")) == 1
        if mode == "Metrics":
            # The HPA wrote every count; we wrote none.
            rescaled = events(api_client, namespace, "SuccessfulRescale")
            assert rescaled and all(e.involved_object.kind == "HorizontalPodAutoscaler"
                                    for e in rescaled), [e.message for e in rescaled]
    finally:
        if ext is not None:
            ext.stop()
        else:
            proc.stop()
