"""The controller against a real API server, with the CRD and RBAC from deploy/.

The controller runs as a separate process (``autoscaler controller``), authenticated with a
real token of the ServiceAccount the manifests create, reading a real Prometheus that scrapes
a real exporter. Every assertion reads the cluster through the admin client.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import utils as k8s_utils
from kubernetes.client.exceptions import ApiException

from tests.e2e.kube import ControlPlane
from tests.support.controller import SA_NAME, SA_NAMESPACE, ControllerProcess
from tests.support.promserver import PrometheusServer, ScriptedExporter
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GROUP, VERSION, PLURAL = "inference.autoscaler.dev", "v1alpha1", "inferenceautoscalers"
WINDOW = "5s"


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, api_client: k8s.ApiClient) -> Path:
    """deploy/'s CRD, namespace, ServiceAccount and RBAC applied as a user would; returns a
    kubeconfig holding a real token of the controller's ServiceAccount."""
    for name in ("namespace.yaml", "crd.yaml", "serviceaccount.yaml", "rbac.yaml"):
        try:
            k8s_utils.create_from_yaml(api_client, str(DEPLOY / name))
        except k8s_utils.FailToCreateError as exc:  # tolerate re-runs in one session only
            if any(e.status != 409 for e in exc.api_exceptions):
                raise
    ext = k8s.ApiextensionsV1Api(api_client)
    wait_until("the CRD to be Established", lambda: any(
        c.type == "Established" and c.status == "True"
        for c in (ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status.conditions
                  or [])))
    return control_plane.service_account_kubeconfig(SA_NAMESPACE, SA_NAME)


@pytest.fixture(scope="module")
def metrics() -> Iterator[tuple[ScriptedExporter, PrometheusServer]]:
    exporter = ScriptedExporter().start()
    prom = PrometheusServer([exporter.address]).start()
    yield exporter, prom
    prom.cleanup()
    exporter.stop()


def decisions(port: int, name: str) -> float:
    """Decisions the controller on ``port`` has made for autoscaler ``name`` (its own
    ``autoscaler_decisions_total``, all reasons)."""
    import requests

    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.ConnectionError:  # still starting
        return 0.0
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith("autoscaler_decisions_total{")
               and f'autoscaler="{name}"' in line)


def wait_decisions(proc: ControllerProcess, name: str, more: int) -> None:
    """Wait until the controller has decided ``more`` more times for ``name``: steady
    state observed over cycles, instead of a fixed sleep."""
    start = decisions(proc.port, name)
    wait_until(f"{more} more decisions for {name}",
               lambda: decisions(proc.port, name) >= start + more, timeout_s=15 + 5 * more,
               interval_s=0.2)


def deployment(api: k8s.ApiClient, namespace: str, name: str, replicas: int) -> None:
    """A Deployment whose pods are never scheduled: they name a scheduler nobody runs, so
    they stay Pending without a PodScheduled condition, as with no scheduler at all. With
    the kwok tier's kube-scheduler up in the same session they would otherwise be refused
    (the GPU nodes' taint) and count as unschedulable, which holds every scale-up (the
    CapacityAvailable rule, tested in test_kwok_gpu_exhaustion.py)."""
    labels = {"app": name}
    k8s.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"schedulerName": "e2e-no-scheduler",
                                       "containers": [{"name": "vllm",
                                                       "image": "vllm/vllm-openai:latest"}]}}}})


def autoscaler_cr(namespace: str, name: str, *, mode: str = "Scale",
                  **spec: Any) -> dict[str, Any]:
    body = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "mode": mode, "policy": "predictive", "minReplicas": 1, "maxReplicas": 12,
            "capacity": {"requestsPerSecond": 4.0, "concurrency": 24},
            "coldStartSeconds": 10, "syncPeriodSeconds": 2,
            "metricsSource": {"preset": "vllm", "window": WINDOW}, **spec}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceAutoscaler",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def create_cr(api: k8s.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                              PLURAL, body)


def read_cr(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    return obj


def replicas(api: k8s.ApiClient, namespace: str, name: str) -> int:
    return int(k8s.AppsV1Api(api).read_namespaced_deployment(name, namespace).spec.replicas)


def events(api: k8s.ApiClient, namespace: str, reason: str | None = None) -> list[Any]:
    items = k8s.CoreV1Api(api).list_namespaced_event(namespace).items
    return [e for e in items if reason is None or e.reason == reason]


def serve_load(metrics: tuple[ScriptedExporter, PrometheusServer], namespace: str,
               workload: str, rate: float) -> None:
    """Export ``rate`` requests/s for the workload (two pods) and wait until Prometheus'
    5-s rate() shows it and stays there for two scrapes: while the window fills, the rate
    ramps up from 0, and the trend forecaster would rightly read a ramp as a surge (and then
    hold the surge's count for its scale-down window)."""
    exporter, prom = metrics
    for pod in ("0", "1"):
        labels = {"namespace": namespace, "workload": workload, "pod": f"{workload}-{pod}"}
        exporter.set_gauge("vllm:num_requests_running", labels, 4.0)
        exporter.set_gauge("vllm:num_requests_waiting", labels, 0.0)
        exporter.set_histogram_rates("vllm:time_to_first_token_seconds", labels,
                                     {"0.5": rate / 2, "+Inf": rate / 2}, sum_rate=0.1 * rate)
    q = (f'sum(rate(vllm:time_to_first_token_seconds_count{{namespace="{namespace}",'
         f'workload="{workload}"}}[{WINDOW}]))')
    prom.wait_for_steady(q, rate)


@pytest.fixture
def controller(installed: Path, metrics: tuple[ScriptedExporter, PrometheusServer],
               tmp_path: Path) -> Iterator[Callable[[str], ControllerProcess]]:
    started: list[ControllerProcess] = []

    def start(identity: str) -> ControllerProcess:
        proc = ControllerProcess(installed, metrics[1].url, identity, tmp_path)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def test_the_controller_as_its_service_account_scales_a_deployment_and_reports(
        api_client: k8s.ApiClient, namespace: str,
        metrics: tuple[ScriptedExporter, PrometheusServer],
        controller: Callable[[str], ControllerProcess]) -> None:
    serve_load(metrics, namespace, "chat", rate=20.0)  # needs ceil(20 / 3.4) = 6
    deployment(api_client, namespace, "chat", 2)
    create_cr(api_client, namespace, autoscaler_cr(namespace, "chat"))
    proc = controller("a")
    try:
        wait_until("the Deployment to reach 6 replicas",
                   lambda: replicas(api_client, namespace, "chat") == 6, timeout_s=90)
    except AssertionError:
        raise AssertionError(proc.tail()) from None
    # The status is patched just after the scale write, in the same reconcile: await it.
    status = wait_until("a status saying 6", lambda: (
        s := read_cr(api_client, namespace, "chat").get("status") or {}).get(
            "desiredReplicas") == 6 and s)
    assert status["desiredReplicas"] == 6
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds["Ready"] == "True" and conds["MetricsAvailable"] == "True"
    scaled = events(api_client, namespace, "SuccessfulRescale")
    assert scaled and all(e.involved_object.kind == "InferenceAutoscaler" for e in scaled)
    # The controller's own health and metrics endpoints.
    import requests

    base = f"http://127.0.0.1:{proc.port}"
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    assert "autoscaler_decisions_total" in requests.get(f"{base}/metrics", timeout=5).text


@pytest.mark.parametrize(("action", "call"), [
    pytest.param("delete a Deployment", lambda api, ns: k8s.AppsV1Api(api)
                 .delete_namespaced_deployment("chat", ns), id="cannot delete deployments"),
    pytest.param("read Secrets", lambda api, ns: k8s.CoreV1Api(api).list_namespaced_secret(ns),
                 id="cannot read secrets"),
    pytest.param("patch a Deployment's pod template", lambda api, ns: k8s.AppsV1Api(api)
                 .patch_namespaced_deployment("chat", ns, {"spec": {"template": {
                     "metadata": {"labels": {"x": "y"}}}}}),
                 id="cannot change a workload beyond its scale"),
    # Pods are listed (read only, to see GPU shortages), never deleted or changed.
    pytest.param("delete a pod", lambda api, ns: k8s.CoreV1Api(api)
                 .delete_namespaced_pod("chat-0", ns), id="cannot delete pods"),
    pytest.param("label a pod", lambda api, ns: k8s.CoreV1Api(api)
                 .patch_namespaced_pod("chat-0", ns, {"metadata": {"labels": {"x": "y"}}}),
                 id="cannot change pods"),
    pytest.param("watch pods", lambda api, ns: k8s.CoreV1Api(api)
                 .list_namespaced_pod(ns, watch=True, timeout_seconds=1),
                 id="cannot watch pods"),
])
def test_the_service_account_cannot_do_what_the_controller_does_not_need(
        api_client: k8s.ApiClient, installed: Path, namespace: str, action: str,
        call: Callable[[k8s.ApiClient, str], Any]) -> None:
    deployment(api_client, namespace, "chat", 1)
    from tests.e2e.kube import client_from_kubeconfig

    with client_from_kubeconfig(installed) as sa, pytest.raises(ApiException) as info:
        call(sa, namespace)
    assert info.value.status == 403, action


def test_the_service_account_lists_pods_by_selector(api_client: k8s.ApiClient,
                                                    installed: Path, namespace: str) -> None:
    """What the GPU-shortage check needs (deploy/rbac.yaml: pods get/list), and only that:
    the writes and the watch are refused above."""
    deployment(api_client, namespace, "chat", 2)
    from autoscaler.controller.kube import KubeClient
    from tests.e2e.kube import client_from_kubeconfig

    def two() -> bool:
        return len(k8s.CoreV1Api(api_client).list_namespaced_pod(
            namespace, label_selector="app=chat").items) == 2

    wait_until("the ReplicaSet's 2 pods", two)
    with client_from_kubeconfig(installed) as sa:
        pods = KubeClient(sa).list_pods(namespace, "app=chat")
    assert sorted(p["metadata"]["name"].rpartition("-")[0].rpartition("-")[0]
                  for p in pods) == ["chat", "chat"]


def test_a_scale_write_tests_the_count_not_the_resource_version(
        api_client: k8s.ApiClient, installed: Path, namespace: str) -> None:
    """The controller's write, as its ServiceAccount: a status update after our LIST (the
    Deployment controller's, every few seconds while pods start) does not fail it, as it
    failed a PUT carrying the LIST's resourceVersion; a count changed by someone else since
    we read it does (Conflict), and nothing is overwritten. From zero too (a Scale of 0
    replicas has no spec.replicas)."""
    from autoscaler.controller.kube import Conflict, KubeClient
    from autoscaler.controller.resource import TargetRef
    from tests.e2e.kube import client_from_kubeconfig

    deployment(api_client, namespace, "chat", 2)
    apps = k8s.AppsV1Api(api_client)
    ref = TargetRef("apps/v1", "Deployment", "chat")
    with client_from_kubeconfig(installed) as sa:
        kube = KubeClient(sa)
        listed = kube.list_workloads("Deployment", namespace)[(namespace, "chat")]
        apps.patch_namespaced_deployment_status(
            "chat", namespace, {"status": {"observedGeneration": 7}})
        assert apps.read_namespaced_deployment(
            "chat", namespace).metadata.resource_version != listed.resource_version
        kube.set_scale(namespace, ref, 3, expected=listed.replicas)
        assert replicas(api_client, namespace, "chat") == 3
        with pytest.raises(Conflict):
            kube.set_scale(namespace, ref, 5, expected=2)  # it is 3 now
        assert replicas(api_client, namespace, "chat") == 3
        kube.set_scale(namespace, ref, 0, expected=3)
        with pytest.raises(Conflict):
            kube.set_scale(namespace, ref, 4, expected=1)
        kube.set_scale(namespace, ref, 1, expected=0)
        assert replicas(api_client, namespace, "chat") == 1
        with pytest.raises(Conflict):
            kube.set_scale(namespace, ref, 4, expected=0)
        assert replicas(api_client, namespace, "chat") == 1


def test_shadow_mode_decides_but_never_changes_the_scale(
        api_client: k8s.ApiClient, namespace: str,
        metrics: tuple[ScriptedExporter, PrometheusServer],
        controller: Callable[[str], ControllerProcess]) -> None:
    serve_load(metrics, namespace, "shadowed", rate=20.0)
    deployment(api_client, namespace, "shadowed", 2)
    create_cr(api_client, namespace, autoscaler_cr(namespace, "shadowed", mode="Shadow"))
    proc = controller("a")
    status = wait_until("a shadow decision", lambda: (
        read_cr(api_client, namespace, "shadowed").get("status") or {}).get("desiredReplicas"))
    wait_decisions(proc, "shadowed", 3)
    assert status > 2
    assert replicas(api_client, namespace, "shadowed") == 2
    assert events(api_client, namespace, "SuccessfulRescale") == []


@pytest.mark.parametrize(("spec", "words"), [
    pytest.param({"minReplicas": 9, "maxReplicas": 3}, "minReplicas must be <= maxReplicas",
                 id="min above max"),
    pytest.param({"maxReplicas": 0}, "spec.maxReplicas", id="max below its minimum"),
    pytest.param({"mode": "Sometimes"}, "spec.mode", id="an unknown mode"),
])
def test_invalid_autoscalers_are_rejected_by_the_api_server_with_readable_messages(
        api_client: k8s.ApiClient, installed: Path, namespace: str, spec: dict[str, Any],
        words: str) -> None:
    body = autoscaler_cr(namespace, "bad")
    body["spec"].update(spec)
    with pytest.raises(ApiException) as info:
        create_cr(api_client, namespace, body)
    assert info.value.status == 422
    assert words in json.loads(info.value.body)["message"]


def test_missing_metrics_never_scale_down_and_say_why(
        api_client: k8s.ApiClient, namespace: str,
        controller: Callable[[str], ControllerProcess]) -> None:
    # No exporter series for this workload at all: Prometheus has nothing for it.
    deployment(api_client, namespace, "dark", 5)
    create_cr(api_client, namespace, autoscaler_cr(namespace, "dark"))
    proc = controller("a")
    status = wait_until("a status", lambda: read_cr(api_client, namespace, "dark").get("status"))
    wait_decisions(proc, "dark", 3)
    assert replicas(api_client, namespace, "dark") == 5
    conds = {c["type"]: c for c in read_cr(api_client, namespace, "dark")["status"]["conditions"]}
    assert conds["MetricsAvailable"]["status"] == "False"
    assert status["currentReplicas"] == 5
    assert events(api_client, namespace, "MetricsUnavailable")


def test_only_the_leader_acts_and_the_other_takes_over_when_it_dies(
        api_client: k8s.ApiClient, namespace: str,
        metrics: tuple[ScriptedExporter, PrometheusServer],
        controller: Callable[[str], ControllerProcess]) -> None:
    coord = k8s.CoordinationV1Api(api_client)

    def holder() -> str | None:
        try:
            lease = coord.read_namespaced_lease("inference-autoscaler", SA_NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease.spec.holder_identity  # type: ignore[no-any-return]

    serve_load(metrics, namespace, "ha", rate=8.0)  # ceil(8 / 3.4) = 3
    deployment(api_client, namespace, "ha", 1)
    create_cr(api_client, namespace, autoscaler_cr(namespace, "ha"))
    first = controller("first")
    wait_until("a leader", lambda: holder() == "first", timeout_s=30)
    second = controller("second")
    try:
        wait_until("3 replicas", lambda: replicas(api_client, namespace, "ha") == 3,
                   timeout_s=60)
    except AssertionError:
        raise AssertionError(f"{read_cr(api_client, namespace, 'ha').get('status')}\n"
                             f"{first.tail()}") from None
    wait_decisions(first, "ha", 2)
    assert holder() == "first"
    hosts = {e.source.host for e in events(api_client, namespace, "SuccessfulRescale")}
    assert hosts == {"first"}  # the follower never wrote

    first.stop(signal.SIGKILL)  # no release: the lease must run out (6 s)
    killed = time.monotonic()
    wait_until("the second to lead", lambda: holder() == "second", timeout_s=30)
    assert time.monotonic() - killed < 6 + 4  # lease duration + one retry period, roughly
    serve_load(metrics, namespace, "ha", rate=16.0)  # ceil(16 / 3.4) = 5
    # At least 5: the 8 -> 16 step is a ramp in a 5-s rate(), which the trend may overshoot.
    wait_until("5 replicas", lambda: replicas(api_client, namespace, "ha") >= 5, timeout_s=60)
    scaled = events(api_client, namespace, "SuccessfulRescale")
    news = [e.message.split(";")[0] for e in scaled]
    assert len(news) == len(set(news))  # each new size written once: no double scaling
    assert second.stop() == 0  # SIGTERM: finishes its cycle, releases, exits cleanly
    assert holder() in ("", None)


def test_an_api_server_restart_and_a_hand_scale_are_survived_without_flapping(
        api_client: k8s.ApiClient, control_plane: ControlPlane, namespace: str,
        metrics: tuple[ScriptedExporter, PrometheusServer],
        controller: Callable[[str], ControllerProcess]) -> None:
    serve_load(metrics, namespace, "sturdy", rate=8.0)
    deployment(api_client, namespace, "sturdy", 1)
    create_cr(api_client, namespace, autoscaler_cr(namespace, "sturdy"))
    proc = controller("a")
    wait_until("3 replicas", lambda: replicas(api_client, namespace, "sturdy") == 3,
               timeout_s=60)
    control_plane.restart_apiserver()
    with control_plane.api_client() as api:
        k8s.AppsV1Api(api).patch_namespaced_deployment_scale("sturdy", namespace,
                                                             {"spec": {"replicas": 1}})
        wait_until("the controller to restore 3", lambda: replicas(api, namespace, "sturdy")
                   == 3, timeout_s=60)
        wait_decisions(proc, "sturdy", 4)  # four sync periods of steady state
        assert replicas(api, namespace, "sturdy") == 3
        sizes = [e.message.split(";")[0] for e in events(api, namespace, "SuccessfulRescale")]
    assert proc.alive(), proc.tail()
    # Up to 3, (by hand to 1), back to 3: no oscillation in between.
    assert len(sizes) <= 4, sizes
    # The controller-manager recovers too (its watches can lag the restart by tens of
    # seconds): later tests need its serviceaccount and replicaset controllers.
    with control_plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        probe = f"{namespace}-probe"
        core.create_namespace({"metadata": {"name": probe}})
        wait_until("the controller-manager to serve a new namespace", lambda: bool(
            core.list_namespaced_service_account(
                probe, field_selector="metadata.name=default").items), timeout_s=120)
        core.delete_namespace(probe)
