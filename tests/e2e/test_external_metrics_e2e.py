"""external.metrics.k8s.io through the real aggregator, to a stock HPA.

The server runs in this process (the same ``ExternalMetricsServer`` the controller starts
with ``--external-metrics-port``) on 127.0.0.1, serving outcomes the test sets, so each test
controls exactly which value the HPA reads and when. The aggregator reaches it through a
Service of type ExternalName pointing at ``localhost`` (the API server runs with
``--enable-aggregator-routing=false``, which dials an ExternalName directly); the serving
certificate is issued by the cluster CA for ``<service>.<namespace>.svc`` and that CA is the
APIService's caBundle. The client CA is the cluster's front-proxy CA, with the allowed name
the API server's proxy client certificate carries: exactly what a real install reads from
kube-system/extension-apiserver-authentication.

Pods stay Pending (no kubelet); the HPA's AverageValue arithmetic divides by the scale's
``status.replicas`` (pods that exist, Pending or not), so it works without ready pods.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from autoscaler.controller.external_metrics import (
    DESIRED_REPLICAS,
    ExternalMetricsServer,
    ServerConfig,
)
from autoscaler.controller.loop import Outcome
from autoscaler.controller.resource import Mode
from autoscaler.core.decide import decide
from autoscaler.core.spec import (
    Behavior,
    Capacity,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    Spec,
)
from autoscaler.core.types import Decision, MetricValue, Reason, Snapshot, State
from tests.e2e.kube import APISERVICE, ControlPlane, register_apiservice
from tests.support.certs import issue_certificate
from tests.support.manifests import external_metric_hpa
from tests.support.ports import free_port
from tests.support.wait import wait_until

SERVICE_NS, SERVICE = "external-metrics-e2e", "autoscaler-external-metrics"
BASE = "/apis/external.metrics.k8s.io/v1beta1"


def raw(body: dict[str, Any]) -> Any:
    """A manifest as a plain dict (the client serialises dicts as they are)."""
    return body


class Outcomes:
    """The outcome cache the server reads; tests set values as the control loop would."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Outcome] = {}

    def __call__(self) -> dict[tuple[str, str], Outcome]:
        return dict(self.items)

    def set(self, namespace: str, name: str, desired: int | float) -> None:
        # A float "desired" lets the fidelity test feed fractional values (5.4 replicas'
        # worth) through the same metric; Outcome.desired is served as a float anyway.
        decision = Decision(replicas=int(desired), reason=Reason.DESIRED_WITHIN_RANGE,
                            message="scripted")
        self.items[(namespace, name)] = Outcome(namespace, name, Mode.METRICS, 0,
                                                desired,  # type: ignore[arg-type]
                                                "scripted", True, False, decision, time.time())

    def refresh(self) -> None:
        """Re-stamp every value as fresh (the loop re-decides every sync period)."""
        for key, o in list(self.items.items()):
            self.items[key] = Outcome(o.namespace, o.name, o.mode, o.current, o.desired,
                                      o.reason, o.valid, o.wrote_scale, o.decision, time.time())


@pytest.fixture(scope="module")
def served(control_plane: ControlPlane, api_client: k8s.ApiClient
           ) -> Iterator[tuple[Outcomes, int]]:
    """Our server on loopback, registered as the cluster's external metrics API."""
    pki = control_plane.workdir / "external-metrics-pki"
    pki.mkdir(exist_ok=True)
    serving = issue_certificate(pki, "serving", ca=control_plane.certs.ca,
                                common_name=f"{SERVICE}.{SERVICE_NS}.svc",
                                dns_names=(f"{SERVICE}.{SERVICE_NS}.svc", "localhost"),
                                ip_addresses=("127.0.0.1",), server=True)
    port = free_port()
    outcomes = Outcomes()
    server = ExternalMetricsServer(outcomes, ServerConfig(
        port=port, host="127.0.0.1", cert_file=str(serving.cert), key_file=str(serving.key),
        client_ca_file=str(control_plane.certs.front_proxy_ca.cert),
        allowed_names=("front-proxy-client",), max_age_s=3600)).start()
    unregister = register_apiservice(control_plane, api_client, SERVICE_NS, SERVICE, port)
    try:
        yield outcomes, port
    finally:
        unregister()
        server.stop()


def admin_get(control_plane: ControlPlane, path: str, **params: str) -> httpx.Response:
    """``kubectl get --raw`` as the cluster admin."""
    ctx = ssl.create_default_context(cafile=str(control_plane.ca_path))
    ctx.load_cert_chain(str(control_plane.certs.admin.cert), str(control_plane.certs.admin.key))
    with httpx.Client(verify=ctx, timeout=10) as c:
        return c.get(control_plane.server_url + path, params=params)


def available(api_client: k8s.ApiClient) -> dict[str, Any] | None:
    svc = k8s.ApiregistrationV1Api(api_client).read_api_service(APISERVICE)
    for cond in (svc.status.conditions if svc.status else None) or []:
        if cond.type == "Available":
            return {"status": cond.status, "reason": cond.reason, "message": cond.message}
    return None


def deployment(api: k8s.ApiClient, namespace: str, name: str, replicas: int) -> None:
    labels = {"app": name}
    k8s.AppsV1Api(api).create_namespaced_deployment(namespace, raw({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "vllm",
                                                       "image": "vllm/vllm-openai:latest"}]}}}}))


def replicas(api: k8s.ApiClient, namespace: str, name: str) -> int:
    spec = k8s.AppsV1Api(api).read_namespaced_deployment(name, namespace).spec
    return int(spec.replicas or 0) if spec is not None else 0


def hpa(api: k8s.ApiClient, namespace: str, name: str, behavior: dict[str, Any],
        *, max_replicas: int = 20) -> None:
    k8s.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(
        namespace, external_metric_hpa(name, max_replicas=max_replicas, behavior=behavior))


def failed_reads(api: k8s.ApiClient, namespace: str, name: str) -> int:
    """How many of the HPA's syncs found no value for its external metric: each records a
    FailedGetExternalMetric Warning, and the event recorder merges the identical ones into
    one Event whose ``count`` it raises."""
    return sum(e.count or 1 for e in k8s.CoreV1Api(api).list_namespaced_event(namespace).items
               if e.involved_object.kind == "HorizontalPodAutoscaler"
               and e.involved_object.name == name and e.reason == "FailedGetExternalMetric")


def hpa_has_read_a_value(api: k8s.ApiClient, namespace: str, name: str) -> bool:
    status = k8s.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(
        name, namespace).status
    return bool(status and status.current_metrics)


# Pass-through: the HPA applies our number as is, at once, in both directions (tolerance 0
# needs HPAConfigurableTolerance, beta and on by default in 1.35).
PASS_THROUGH = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "tolerance": "0",
                "policies": [{"type": "Percent", "value": 1000, "periodSeconds": 1}]},
    "scaleDown": {"stabilizationWindowSeconds": 0, "tolerance": "0",
                  "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]},
}


def test_the_apiservice_becomes_available_and_serves_our_values_through_the_api_server(
        control_plane: ControlPlane, api_client: k8s.ApiClient,
        served: tuple[Outcomes, int], namespace: str) -> None:
    outcomes, _ = served
    outcomes.set(namespace, "chat", 7)
    outcomes.set(namespace, "code", 2)
    cond = wait_until("the APIService to be Available",
                      lambda: (c := available(api_client)) and c["status"] == "True" and c,
                      timeout_s=60)
    assert cond["reason"] == "Passed"
    r = admin_get(control_plane, f"{BASE}/namespaces/{namespace}/{DESIRED_REPLICAS}",
                  labelSelector="autoscaler=chat")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "ExternalMetricValueList"
    assert [(i["metricLabels"]["autoscaler"], i["value"]) for i in body["items"]] == [
        ("chat", "7")]
    # Discovery through the aggregator lists our metrics; errors come back as Status.
    resources = admin_get(control_plane, BASE).json()
    assert DESIRED_REPLICAS in {res["name"] for res in resources["resources"]}
    missing = admin_get(control_plane, f"{BASE}/namespaces/{namespace}/no_such_metric")
    assert missing.status_code == 404 and missing.json()["kind"] == "Status"


def test_the_cluster_openapi_documents_include_ours(
        control_plane: ControlPlane, api_client: k8s.ApiClient,
        served: tuple[Outcomes, int]) -> None:
    wait_until("the APIService", lambda: (available(api_client) or {}).get("status") == "True",
               timeout_s=60)
    path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"
    # v3: the cluster's discovery lists the group version; its document is proxied to us.
    entry = wait_until("the group in /openapi/v3", lambda: admin_get(
        control_plane, "/openapi/v3").json()["paths"].get(
            "apis/external.metrics.k8s.io/v1beta1"), timeout_s=60)
    doc = admin_get(control_plane, entry["serverRelativeURL"]).json()
    assert path in doc["paths"]
    # v2: the aggregator merges our Swagger document into the cluster's.
    wait_until("our path in /openapi/v2", lambda: path in admin_get(
        control_plane, "/openapi/v2").json().get("paths", {}), timeout_s=90)


def test_a_stock_hpa_scales_a_deployment_to_our_desired_replicas_and_follows(
        api_client: k8s.ApiClient, served: tuple[Outcomes, int], namespace: str) -> None:
    outcomes, _ = served
    wait_until("the APIService", lambda: (available(api_client) or {}).get("status") == "True",
               timeout_s=60)
    outcomes.set(namespace, "chat", 5)
    deployment(api_client, namespace, "chat", 1)
    hpa(api_client, namespace, "chat", PASS_THROUGH)
    wait_until("5 replicas", lambda: replicas(api_client, namespace, "chat") == 5,
               timeout_s=60)
    outcomes.set(namespace, "chat", 11)
    wait_until("11 replicas", lambda: replicas(api_client, namespace, "chat") == 11,
               timeout_s=60)
    outcomes.set(namespace, "chat", 10)  # within the default 10 % tolerance: needs 0
    wait_until("10 replicas", lambda: replicas(api_client, namespace, "chat") == 10,
               timeout_s=60)
    outcomes.set(namespace, "chat", 3)
    wait_until("3 replicas", lambda: replicas(api_client, namespace, "chat") == 3,
               timeout_s=60)
    # Withheld (stale) value: the HPA holds instead of scaling to zero or to min. Awaited
    # as three of its syncs finding no value, not as a span of time.
    del outcomes.items[(namespace, "chat")]
    wait_until("three HPA syncs without a value",
               lambda: failed_reads(api_client, namespace, "chat") >= 3, timeout_s=60)
    assert replicas(api_client, namespace, "chat") == 3


def test_a_direct_request_without_the_front_proxy_certificate_is_refused(
        control_plane: ControlPlane, served: tuple[Outcomes, int]) -> None:
    _, port = served
    url = f"https://127.0.0.1:{port}{BASE}/namespaces/default/{DESIRED_REPLICAS}"
    ctx = ssl.create_default_context(cafile=str(control_plane.ca_path))
    # No certificate: the TLS handshake itself refuses (client certificates are required
    # at the TLS layer when a client CA is configured), so no HTTP answer at all.
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=ctx, timeout=5) as c:
        c.get(url)
    # The cluster admin's certificate is signed by the cluster CA, not the front-proxy CA.
    ctx.load_cert_chain(str(control_plane.certs.admin.cert), str(control_plane.certs.admin.key))
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=ctx, timeout=5) as c:
        c.get(url)


# --- fidelity: the real HPA against the replay's hpa policy ---------------------------------

# Rate limits over a 60 s period, so every scale event of the script (about 45 s long) counts
# against the later ones: the scale-down starting point is lowered by earlier scale-ups,
# the subtle part of upstream's arithmetic. Default tolerance (0.1), so 5.4 on 5 holds.
FIDELITY_BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                "policies": [{"type": "Pods", "value": 3, "periodSeconds": 60}]},
    "scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                  "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
}
FIDELITY_SPEC = Spec(
    policy=PolicyKind.HPA, min_replicas=1, max_replicas=20,
    capacity=Capacity(requests_per_second=1.0, concurrency=1.0),
    metrics=(MetricTarget(DESIRED_REPLICAS, MetricTargetType.AVERAGE_VALUE, 1.0),),
    behavior=Behavior(
        scale_up=ScalingRules(0, (ScalingPolicy(ScalingPolicyType.PODS, 3, 60),)),
        scale_down=ScalingRules(0, (ScalingPolicy(ScalingPolicyType.PERCENT, 50, 60),))),
    sync_period_s=2.0, max_metric_age_s=3600.0)
START = 2
SCRIPT = (4.0, 10.0, 5.4, 2.0, 7.0)
HOLD_SYNCS = 4  # each value is served for four 2-s HPA sync periods


def replay(script: tuple[float, ...], start: int) -> tuple[list[int], list[int]]:
    """The replay's hpa policy fed the same values every sync period: (the count at the
    end of each value's hold, every distinct count in order)."""
    state, current, t = State(), start, 0.0
    for _ in range(3):  # the real HPA reads the starting value a few times first
        decision, state = decide(_snap(current, float(start), t), state, FIDELITY_SPEC, t)
        current, t = decision.replicas, t + 2.0
    ends, seen = [], [current]
    for value in script:
        for _ in range(HOLD_SYNCS):
            decision, state = decide(_snap(current, value, t), state, FIDELITY_SPEC, t)
            current, t = decision.replicas, t + 2.0
            if current != seen[-1]:
                seen.append(current)
        ends.append(current)
    return ends, seen


def _snap(current: int, value: float, t: float) -> Snapshot:
    return Snapshot(current_replicas=current, ready_replicas=current,
                    metrics={DESIRED_REPLICAS: MetricValue(value, t)})


def test_the_replay_hpa_matches_the_real_hpa_step_for_step(
        api_client: k8s.ApiClient, served: tuple[Outcomes, int], namespace: str) -> None:
    expected_ends, expected_seen = replay(SCRIPT, START)
    # The script exercises what it claims (worked by hand): 2 -> 4 (ceil 4/1); 10 is
    # limited to 2 + 3 = 5 within the 60 s period; 5.4 / 5 = 1.08 is within tolerance;
    # 2 is allowed, because the period's starting count is 5 - 3 added = 2 and 50 % of 2
    # is 1; then 7 is limited to (2 - 3 added + 3 removed) + 3 = 5.
    assert expected_ends == [4, 5, 5, 2, 5]
    outcomes, _ = served
    wait_until("the APIService", lambda: (available(api_client) or {}).get("status") == "True",
               timeout_s=60)
    outcomes.set(namespace, "fid", START)
    deployment(api_client, namespace, "fid", START)
    hpa(api_client, namespace, "fid", FIDELITY_BEHAVIOR)
    wait_until("the HPA to read the metric",
               lambda: hpa_has_read_a_value(api_client, namespace, "fid"), timeout_s=30)
    # The timed holds below are the test's input, not waits: a schedule of values, each
    # served for a span of HPA sync periods, which replay() mirrors read for read (the
    # starting value for two more 2-s syncs, then each value for HOLD_SYNCS). Nothing in
    # the cluster marks a sync that changed nothing, so the schedule is kept by the clock.
    time.sleep(4)
    seen = [replicas(api_client, namespace, "fid")]
    ends = []
    for value in SCRIPT:
        outcomes.set(namespace, "fid", value)
        until = time.monotonic() + HOLD_SYNCS * 2.0
        while time.monotonic() < until:  # every count the HPA passes through, in order
            now_replicas = replicas(api_client, namespace, "fid")
            if now_replicas != seen[-1]:
                seen.append(now_replicas)
            time.sleep(0.2)
        ends.append(replicas(api_client, namespace, "fid"))
    assert (ends, seen) == (expected_ends, expected_seen), _hpa_story(api_client, namespace)


def _hpa_story(api: k8s.ApiClient, namespace: str) -> str:
    try:
        events = k8s.CoreV1Api(api).list_namespaced_event(namespace).items
    except ApiException as exc:  # pragma: no cover - diagnostics only
        return f"(no events: {exc})"
    return "\n".join(f"{e.reason}: {e.message}" for e in events
                     if e.involved_object.kind == "HorizontalPodAutoscaler")
