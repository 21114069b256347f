"""The whole Metrics-mode loop, end to end: Prometheus -> `autoscaler controller` (a
separate process, as its ServiceAccount, mode Metrics) -> external.metrics.k8s.io through the
real aggregator -> a stock HPA -> the Deployment.

The controller never writes the scale in this mode; the HPA does, on our desired replicas.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from test_controller_e2e import (
    ControllerProcess,
    autoscaler_cr,
    create_cr,
    deployment,
    events,
    installed,  # noqa: F401 - the fixture, re-used
    metrics,  # noqa: F401 - the fixture, re-used
    read_cr,
    replicas,
    serve_load,
)

from tests.e2e.kube import ControlPlane, register_apiservice
from tests.support.certs import issue_certificate
from tests.support.manifests import external_metric_hpa
from tests.support.ports import free_port
from tests.support.promserver import PrometheusServer, ScriptedExporter
from tests.support.wait import wait_until

SERVICE_NS, SERVICE = "metrics-mode-e2e", "autoscaler-external-metrics"


@pytest.fixture
def controller_serving_metrics(
        control_plane: ControlPlane, api_client: k8s.ApiClient, installed: Path,  # noqa: F811
        metrics: tuple[ScriptedExporter, PrometheusServer], tmp_path: Path,  # noqa: F811
) -> Iterator[ControllerProcess]:
    pki = tmp_path / "pki"
    pki.mkdir()
    serving = issue_certificate(pki, "serving", ca=control_plane.certs.ca,
                                common_name=f"{SERVICE}.{SERVICE_NS}.svc",
                                dns_names=(f"{SERVICE}.{SERVICE_NS}.svc", "localhost"),
                                ip_addresses=("127.0.0.1",), server=True)
    port = free_port()
    proc = ControllerProcess(installed, metrics[1].url, "metrics-mode", tmp_path, extra=[
        "--external-metrics-port", str(port), "--external-metrics-host", "127.0.0.1",
        "--tls-cert-file", str(serving.cert), "--tls-key-file", str(serving.key),
        "--requestheader-client-ca-file", str(control_plane.certs.front_proxy_ca.cert),
        "--requestheader-allowed-names", "front-proxy-client"])
    unregister = register_apiservice(control_plane, api_client, SERVICE_NS, SERVICE, port)
    try:
        yield proc
    finally:
        proc.stop()
        unregister()


def test_a_stock_hpa_follows_a_metrics_mode_controller(
        api_client: k8s.ApiClient, namespace: str,
        metrics: tuple[ScriptedExporter, PrometheusServer],  # noqa: F811
        controller_serving_metrics: ControllerProcess) -> None:
    serve_load(metrics, namespace, "chat", rate=20.0)  # needs ceil(20 / 3.4) = 6
    deployment(api_client, namespace, "chat", 1)
    create_cr(api_client, namespace, autoscaler_cr(namespace, "chat", mode="Metrics"))
    k8s.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(
        namespace, external_metric_hpa("chat", max_replicas=20))
    proc = controller_serving_metrics
    try:
        # Our decisions double the count at most per period (1 -> 2 -> 4 -> 6); the HPA
        # applies each as it reads it.
        wait_until("the HPA to reach our 6", lambda: replicas(api_client, namespace, "chat")
                   == 6, timeout_s=120)
    except AssertionError:
        raise AssertionError(f"{read_cr(api_client, namespace, 'chat').get('status')}\n"
                             f"{proc.tail()}") from None
    ours = [e for e in events(api_client, namespace, "SuccessfulRescale")
            if e.involved_object.kind == "InferenceAutoscaler"]
    theirs = [e for e in events(api_client, namespace, "SuccessfulRescale")
              if e.involved_object.kind == "HorizontalPodAutoscaler"]
    assert ours == []  # Metrics mode never writes the scale ...
    assert theirs  # ... the stock HPA does
    status: dict[str, Any] = read_cr(api_client, namespace, "chat")["status"]
    assert status["desiredReplicas"] == 6
