"""Readiness against the real HPA: the External ``Value`` path with pods still starting.

kube-controller-manager's HPA proposes ceil(usage / target x *ready pods*) for an External
metric with a ``Value`` target (GetExternalMetricReplicas). During a cold start that is
fewer than the pods that exist, so a scale-up the HPA itself made can be partly undone
while the new pods load. Our ``hpa`` policy re-implements it from the controller's own
ready-replica count (the Deployment's ``status.readyReplicas``). Here both read the same
number, the controller's request-rate observation served as ``inference_autoscaler_demand_rps``,
while kwok keeps new pods Running-not-Ready for their cold start: they must agree.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client as k8s
from kubernetes.utils import parse_quantity
from test_controller_e2e import installed  # noqa: F401 - a fixture

from autoscaler.controller.external_metrics import DEMAND_RPS
from autoscaler.sim.profiles import load_profile
from autoscaler.traces.model import Trace
from autoscaler.twin import Twin
from tests.e2e.kube import ControlPlane
from tests.e2e.kwok_cluster import (
    ApiPods,
    KwokCluster,
    gpu_deployment,
    pod_states,
    wait_for,
)
from tests.e2e.kwok_loop import GROUP, PLURAL, VERSION, ExternalMetricsController, autoscaler_cr
from tests.support.manifests import external_metric_hpa
from tests.support.promserver import PrometheusServer

RATE, TARGET = 8.0, 5.0  # ratio 1.6
COLD_S = 15.0


@pytest.fixture
def served(api_client: k8s.ApiClient, namespace: str) -> Iterator[tuple[Twin, PrometheusServer]]:
    trace = Trace(name="flat", duration_s=1800.0, rates_rps=np.full(1800, RATE),
                  resolution_s=1.0)
    twin = Twin.from_trace(trace, load_profile("llama3-8b-h100"), namespace=namespace,
                           workload="valued", follow_pods=True)
    port = twin.start()
    twin.follow(ApiPods(api_client, namespace), interval_s=0.2)
    prom = PrometheusServer([f"127.0.0.1:{port}"]).start()
    yield twin, prom
    prom.cleanup()
    twin.stop()


def _read_rate(message: str) -> float:
    """The request rate a Value-path decision read, from its status message."""
    found = re.search(r"request_rate ([0-9.e+-]+) against", message)
    assert found is not None, message
    return float(found.group(1))


def _status(api: k8s.ApiClient, ns: str) -> dict[str, Any]:
    obj = k8s.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                                 "valued")
    return dict(obj.get("status") or {})


def test_the_value_path_counts_ready_pods_like_the_real_hpa_during_a_cold_start(
        api_client: k8s.ApiClient, control_plane: ControlPlane, namespace: str,
        kwok_cluster: KwokCluster, installed: Path,  # noqa: F811
        served: tuple[Twin, PrometheusServer], tmp_path: Path) -> None:
    _, prom = served
    gpu_deployment(api_client, namespace, "valued", 2, pool="h100", cold_start_s=COLD_S)
    ctl = ExternalMetricsController(control_plane, api_client, installed, prom.url, tmp_path,
                                    namespace=namespace,
                                    service_ns=f"ready-ext-{uuid.uuid4().hex[:6]}",
                                    identity="readiness")
    try:
        wait_for("2 Ready pods", lambda: sum(p.ready for p in pod_states(
            api_client, namespace, "valued")) == 2, timeout_s=COLD_S + 20, cluster=kwok_cluster)
        spec = {"policy": "hpa", "minReplicas": 1, "maxReplicas": 12,
                "metrics": [{"metric": "request_rate",
                             "target": {"type": "Value", "value": TARGET}}],
                "capacity": {"requestsPerSecond": 10, "concurrency": 64},
                "syncPeriodSeconds": 1, "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [
                        {"type": "Pods", "value": 100, "periodSeconds": 1}]},
                    "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [
                        {"type": "Pods", "value": 100, "periodSeconds": 1}]}}}
        k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL,
            autoscaler_cr(namespace, "valued", "Shadow", spec, 5.0))
        # 2 ready of 2: ceil(8 / 5 x 2) = ceil(3.2) = 4.
        wait_for("our decision for 2 ready pods", lambda: _status(api_client, namespace).get(
            "desiredReplicas") == 4, timeout_s=40)

        # The twin queued requests while no pod was Ready, and the two pods drain that backlog
        # at their full rate (first tokens up to ~14/s against 8 arriving). Wait for the
        # controller's own signal, first tokens over its 5 s window, to settle at 8 before the
        # scale-up, so the comparison below is the Value path at a steady load.
        prom.wait_for_steady(
            f'sum(rate(vllm:time_to_first_token_seconds_count{{namespace="{namespace}"}}[5s]))',
            RATE, scrapes=5, timeout_s=120)

        # Six pods, four of them loading for 15 s: still 2 ready -> still 4, not
        # ceil(1.6 x 6) = 10 as counting every pod would give.
        k8s.AppsV1Api(api_client).patch_namespaced_deployment_scale(
            "valued", namespace, {"spec": {"replicas": 6}})
        scaled = time.monotonic()
        # The first decision that saw 6 pods and 2 of them ready. A status written while the
        # decision held (metrics a scrape late on a loaded machine: desired = current = 6)
        # is not the Value path under test, so it is waited past, not compared.
        status = wait_for("our decision with 6 pods, 2 ready", lambda: (
            s if (s := _status(api_client, namespace)).get("currentReplicas") == 6
            and "2 ready" in s.get("message", "") else None),
            timeout_s=10)
        # The rate the decision read is the twin's 8 req/s through a 5-s rate() window: 40
        # arrivals, give or take Poisson noise (one run read 7.5 and proposed 3), so the
        # count is checked against the rate the decision itself read, on 2 ready pods; on
        # 6 pods any reading above 6.67 would ask for 8 or more.
        ours_rate = _read_rate(status["message"])
        assert status["desiredReplicas"] == math.ceil(ours_rate / TARGET * 2 - 1e-9), \
            status["message"]
        assert status["desiredReplicas"] < math.ceil(ours_rate / TARGET * 6 - 1e-9), \
            status["message"]

        k8s.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(
            namespace, external_metric_hpa(
                "valued", max_replicas=12, metric=DEMAND_RPS,
                target={"type": "Value", "value": f"{TARGET:g}"}, behavior=spec["behavior"]))

        def hpa_desired() -> int | None:
            hpa = k8s.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler(
                "valued", namespace)
            return None if hpa.status.desired_replicas in (None, 6) else int(
                hpa.status.desired_replicas)

        theirs = wait_for("the HPA's first decision", hpa_desired, timeout_s=COLD_S)
        ready_now = sum(p.ready for p in pod_states(api_client, namespace, "valued"))
        assert time.monotonic() - scaled < COLD_S and ready_now <= 4, \
            "the cold start was over before the HPA decided: nothing compared"
        hpa = k8s.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler(
            "valued", namespace)
        external = hpa.status.current_metrics[0].external
        assert external is not None, hpa.status
        their_rate = float(parse_quantity(external.current.value))
        now_status = _status(api_client, namespace)
        ours, ours_rate = now_status["desiredReplicas"], _read_rate(now_status["message"])
        # The stock HPA and our policy, each from the rate it read last, both on 2 ready
        # pods: ceil(rate / 5 x 2), 4 at the twin's 8 req/s. The two read the same series a
        # few seconds apart, so each is checked against its own reading.
        assert theirs == math.ceil(their_rate / TARGET * 2 - 1e-9), (their_rate, theirs)
        assert ours == math.ceil(ours_rate / TARGET * 2 - 1e-9), now_status["message"]
        assert abs(theirs - ours) <= 1, (theirs, ours, ctl.tail())
    finally:
        ctl.stop()
