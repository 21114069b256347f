"""The end-to-end control plane is real and complete enough for the autoscaler's tests.

Each test drives a piece of Kubernetes the controller depends on and checks what the real
API server or controller-manager did: the Deployment -> ReplicaSet -> Pod chain, the scale
subresource, CRDs with schema and CEL validation, Leases with optimistic concurrency,
Events, the HPA controller, RBAC with real ServiceAccount tokens, and recovery from an API
server restart.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.e2e.kube import (
    BUILD_SCRIPT,
    HERE,
    Binaries,
    ControlPlane,
    ControlPlaneError,
    client_from_kubeconfig,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


# --- helpers --------------------------------------------------------------------------------

# The client's pydantic models declare every field Optional, although the server always sets
# the ones these tests read. Rather than assert non-None before each attribute access, the
# tests use the API groups through Any-typed handles. Bodies are plain dicts, which the
# client validates into its models before sending.


def apps(api: k8s.ApiClient) -> Any:
    return k8s.AppsV1Api(api)


def core(api: k8s.ApiClient) -> Any:
    return k8s.CoreV1Api(api)


def custom_objects(api: k8s.ApiClient) -> Any:
    return k8s.CustomObjectsApi(api)


def create_deployment(api: k8s.ApiClient, namespace: str, name: str, *, replicas: int) -> None:
    """A Deployment whose pods can never run (there is no kubelet): they stay Pending."""
    labels = {"app": name}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.invalid/inference:1",
                            "resources": {"requests": {"cpu": "100m"}},
                        }
                    ]
                },
            },
        },
    }
    apps(api).create_namespaced_deployment(namespace, body)


def replicaset_of(api: k8s.ApiClient, namespace: str, deployment: str) -> Any:
    """The ReplicaSet the deployment controller created for ``deployment``, or None."""
    for replica_set in apps(api).list_namespaced_replica_set(namespace).items:
        owners = replica_set.metadata.owner_references or []
        if any(o.kind == "Deployment" and o.name == deployment for o in owners):
            return replica_set
    return None


def pods_of(api: k8s.ApiClient, namespace: str, app: str) -> list[Any]:
    pods = core(api).list_namespaced_pod(namespace, label_selector=f"app={app}")
    # Scaled-down pods are deleted at once (unscheduled pods need no graceful shutdown);
    # still, a pod with a deletion timestamp is on its way out, not a replica.
    return [pod for pod in pods.items if pod.metadata.deletion_timestamp is None]


def wait_for_replicas(api: k8s.ApiClient, namespace: str, name: str, replicas: int) -> Any:
    """Wait until the Deployment's ReplicaSet wants ``replicas`` pods and exactly that many exist.

    Returns the ReplicaSet.
    """

    def settled() -> Any:
        replica_set = replicaset_of(api, namespace, name)
        if replica_set is None or replica_set.spec.replicas != replicas:
            return None
        return replica_set if len(pods_of(api, namespace, name)) == replicas else None

    return wait_until(f"{namespace}/{name} to settle at {replicas} pods", settled, timeout_s=60)


def status_of(call: Any, *args: Any) -> int:
    """The HTTP status of an API call: 200 when it succeeds, the error's status otherwise."""
    try:
        call(*args)
    except ApiException as exc:
        return int(exc.status)
    return 200


def micro_time_now() -> str:
    """Now as a Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the binaries -----------------------------------------------------------------------------


def pinned_version(go_mod: str, module: str) -> str:
    text = (HERE / go_mod).read_text()
    match = re.search(rf"^require {re.escape(module)} (v\S+)$", text, re.MULTILINE)
    assert match, f"{go_mod} pins no {module}"
    return match.group(1)


def test_the_api_server_is_the_release_pinned_in_go_mod(api_client: k8s.ApiClient) -> None:
    version_api: Any = k8s.VersionApi(api_client)
    version = version_api.get_code()
    assert version.git_version == pinned_version("cluster/go.mod", "k8s.io/kubernetes")


def test_the_build_script_is_a_no_op_once_the_binaries_exist(
    control_plane: ControlPlane,
) -> None:
    started = time.monotonic()
    run = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=True)
    elapsed = time.monotonic() - started
    # etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
    assert run.stdout.count("already built") == 5, run.stdout
    # Go is not even invoked, so this is shell start-up time; 20 s leaves room for a busy CI.
    assert elapsed < 20


def test_a_process_that_dies_at_start_up_fails_the_start_with_its_log(tmp_path: Path) -> None:
    # Needs no Go build: a stand-in "etcd" that complains and exits, as a bad flag would.
    fake_etcd = tmp_path / "etcd"
    fake_etcd.write_text("#!/bin/sh\necho 'flag provided but not defined: -bogus' >&2\nexit 3\n")
    fake_etcd.chmod(0o755)
    plane = ControlPlane(
        binaries=Binaries(fake_etcd, Path("/nonexistent/apiserver"), Path("/nonexistent/kcm")),
        workdir=tmp_path / "plane",
        start_timeout_s=30,
    )

    started = time.monotonic()
    with pytest.raises(ControlPlaneError) as raised:
        plane.start()

    message = str(raised.value)
    assert "etcd exited with code 3" in message
    assert "flag provided but not defined: -bogus" in message
    # It noticed the exit instead of waiting out the 30 s start-up timeout.
    assert time.monotonic() - started < 10


# --- workloads and the scale subresource ------------------------------------------------------


def test_a_deployment_gets_a_replicaset_and_pending_pods(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    create_deployment(api_client, namespace, "chat", replicas=2)

    replica_set = wait_for_replicas(api_client, namespace, "chat", 2)

    pods = pods_of(api_client, namespace, "chat")
    assert {pod.metadata.owner_references[0].name for pod in pods} == {replica_set.metadata.name}
    # No kubelet and no scheduler: the pods exist but never leave Pending.
    assert [pod.status.phase for pod in pods] == ["Pending", "Pending"]


@pytest.mark.parametrize(
    ("initial", "target"),
    [
        pytest.param(1, 3, id="scale up from 1 to 3"),
        pytest.param(2, 0, id="scale down from 2 to zero"),
    ],
)
def test_the_replicaset_follows_a_patch_of_the_scale_subresource(
    api_client: k8s.ApiClient, namespace: str, initial: int, target: int
) -> None:
    apps_api = apps(api_client)
    create_deployment(api_client, namespace, "chat", replicas=initial)
    wait_for_replicas(api_client, namespace, "chat", initial)

    apps_api.patch_namespaced_deployment_scale("chat", namespace, {"spec": {"replicas": target}})

    scale = apps_api.read_namespaced_deployment_scale("chat", namespace)
    # Scale.spec.replicas is `omitempty` in the API: zero replicas arrive as a missing field.
    assert (scale.spec.replicas or 0) == target
    # The selector is what an HPA (and our controller) uses to find the target's pods.
    assert scale.status.selector == "app=chat"
    wait_for_replicas(api_client, namespace, "chat", target)


# --- custom resources -------------------------------------------------------------------------

WIDGET_GROUP = "e2e.autoscaler.example.com"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{WIDGET_GROUP}"},
    "spec": {
        "group": WIDGET_GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                    },
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.minReplicas <= self.maxReplicas",
                                        "message": "minReplicas must not exceed maxReplicas",
                                    }
                                ],
                                "properties": {
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "minReplicas": {"type": "integer", "default": 1},
                                    "maxReplicas": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": 100,
                                        "default": 10,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"replicas": {"type": "integer"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widget_crd(api_client: k8s.ApiClient) -> Iterator[str]:
    """The Widget CRD, established and served; yields its plural name."""
    extensions: Any = k8s.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(WIDGET_CRD)
    name = WIDGET_CRD["metadata"]["name"]  # type: ignore[index]

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(name)
        conditions = crd.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_until(f"CRD {name} to be Established", established)
    # Established comes a moment before the group is in discovery; wait until it is served.
    custom = custom_objects(api_client)
    wait_until(
        "widgets to be served",
        lambda: status_of(custom.list_cluster_custom_object, WIDGET_GROUP, "v1", "widgets") == 200,
    )
    yield "widgets"
    extensions.delete_custom_resource_definition(name)


def widget(name: str, spec: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": f"{WIDGET_GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_a_custom_resource_gets_schema_defaults_and_a_working_scale_subresource(
    api_client: k8s.ApiClient, namespace: str, widget_crd: str
) -> None:
    custom = custom_objects(api_client)
    custom.create_namespaced_custom_object(
        WIDGET_GROUP, "v1", namespace, widget_crd, widget("w", {"replicas": 2})
    )

    stored = custom.get_namespaced_custom_object(WIDGET_GROUP, "v1", namespace, widget_crd, "w")
    assert stored["spec"] == {"replicas": 2, "minReplicas": 1, "maxReplicas": 10}

    custom.patch_namespaced_custom_object_scale(
        WIDGET_GROUP, "v1", namespace, widget_crd, "w", {"spec": {"replicas": 5}}
    )
    stored = custom.get_namespaced_custom_object(WIDGET_GROUP, "v1", namespace, widget_crd, "w")
    assert stored["spec"]["replicas"] == 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"maxReplicas": 101}, "spec.maxReplicas", id="maximum from the schema"),
        pytest.param({"replicas": -1}, "spec.replicas", id="minimum from the schema"),
        pytest.param(
            {"minReplicas": 5, "maxReplicas": 2},
            "minReplicas must not exceed maxReplicas",
            id="CEL rule min <= max",
        ),
    ],
)
def test_an_invalid_custom_resource_is_rejected_with_a_readable_message(
    api_client: k8s.ApiClient,
    namespace: str,
    widget_crd: str,
    spec: dict[str, int],
    message: str,
) -> None:
    custom = custom_objects(api_client)
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(
            WIDGET_GROUP, "v1", namespace, widget_crd, widget("bad", spec)
        )
    assert raised.value.status == 422
    assert message in str(raised.value.body)


# --- leases and events ------------------------------------------------------------------------


def test_a_lease_is_renewed_and_a_stale_renewal_is_refused(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    coordination: Any = k8s.CoordinationV1Api(api_client)
    lease = coordination.create_namespaced_lease(
        namespace,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "autoscaler-leader"},
            "spec": {
                "holderIdentity": "replica-a",
                "leaseDurationSeconds": 15,
                "acquireTime": micro_time_now(),
                "renewTime": micro_time_now(),
            },
        },
    )
    first_version = lease.metadata.resource_version

    renewal = {
        "metadata": {"resourceVersion": first_version},
        "spec": {"renewTime": micro_time_now()},
    }
    renewed = coordination.patch_namespaced_lease("autoscaler-leader", namespace, renewal)
    assert renewed.metadata.resource_version != first_version
    assert renewed.spec.holder_identity == "replica-a"

    # A second replica acting on what it read before the renewal must lose: this optimistic
    # concurrency is what makes leader election on a Lease safe.
    takeover = {"metadata": {"resourceVersion": first_version}, "spec": {"holderIdentity": "b"}}
    with pytest.raises(ApiException) as raised:
        coordination.patch_namespaced_lease("autoscaler-leader", namespace, takeover)
    assert raised.value.status == 409


def test_an_event_about_a_deployment_is_listed_for_that_deployment(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    create_deployment(api_client, namespace, "chat", replicas=1)
    deployment = apps(api_client).read_namespaced_deployment("chat", namespace)
    events_api: Any = k8s.EventsV1Api(api_client)
    events_api.create_namespaced_event(
        namespace,
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"generateName": "chat-"},
            "eventTime": micro_time_now(),
            "reportingController": "autoscaler.example.com/controller",
            "reportingInstance": "controller-0",
            "action": "Scale",
            "reason": "ScaledUp",
            "type": "Normal",
            "note": "scaled from 1 to 3: forecast demand",
            "regarding": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "chat",
                "namespace": namespace,
                "uid": deployment.metadata.uid,
            },
        },
    )

    # Read back through the core/v1 API, as `kubectl describe` does.
    events = core(api_client).list_namespaced_event(
        namespace, field_selector="involvedObject.name=chat,reason=ScaledUp"
    )
    assert [(e.message, e.reporting_component) for e in events.items] == [
        ("scaled from 1 to 3: forecast demand", "autoscaler.example.com/controller")
    ]


# --- the HPA controller -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        pytest.param(
            {
                "type": "External",
                "external": {
                    "metric": {
                        "name": "autoscaler_desired_replicas",
                        "selector": {"matchLabels": {"autoscaler": "chat"}},
                    },
                    "target": {"type": "AverageValue", "averageValue": "1"},
                },
            },
            "FailedGetExternalMetric",
            id="external metric, no external metrics API",
        ),
        pytest.param(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50},
                },
            },
            "FailedGetResourceMetric",
            id="cpu utilisation, no metrics-server",
        ),
    ],
)
def test_the_hpa_controller_reports_why_it_cannot_scale(
    api_client: k8s.ApiClient, namespace: str, metric: dict[str, Any], reason: str
) -> None:
    create_deployment(api_client, namespace, "chat", replicas=1)
    autoscaling: Any = k8s.AutoscalingV2Api(api_client)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "chat"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [metric],
            },
        },
    )

    def conditions() -> dict[str, tuple[str, str]] | None:
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler_status("chat", namespace)
        found = {c.type: (c.status, c.reason) for c in hpa.status.conditions or []}
        return found if "ScalingActive" in found else None

    found = wait_until("the HPA controller to set ScalingActive", conditions, timeout_s=60)
    # AbleToScale: it read the Deployment's scale subresource. ScalingActive False: it ran
    # the metric step and says which metric source is missing.
    assert found["AbleToScale"] == ("True", "SucceededGetScale")
    assert found["ScalingActive"] == ("False", reason)
    # The controller records Events asynchronously, so the Event may trail the condition.
    selector = f"involvedObject.kind=HorizontalPodAutoscaler,reason={reason}"
    events = wait_until(
        f"a {reason} Event on the HPA",
        lambda: core(api_client).list_namespaced_event(namespace, field_selector=selector).items,
    )
    assert {event.type for event in events} == {"Warning"}


# --- RBAC with real ServiceAccount tokens -----------------------------------------------------


def grant_list_deployments(api: k8s.ApiClient, namespace: str, service_account: str) -> None:
    rbac: Any = k8s.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "list-deployments"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "list-deployments"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "list-deployments",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
            ],
        },
    )


def create_service_account(api: k8s.ApiClient, namespace: str, name: str) -> None:
    core(api).create_namespaced_service_account(
        namespace, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    )


def test_a_service_account_token_authenticates_as_that_service_account(
    control_plane: ControlPlane, api_client: k8s.ApiClient, namespace: str
) -> None:
    create_service_account(api_client, namespace, "robot")
    kubeconfig = control_plane.service_account_kubeconfig(namespace, "robot")

    with client_from_kubeconfig(kubeconfig) as robot:
        authentication: Any = k8s.AuthenticationV1Api(robot)
        review = authentication.create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:robot"


@pytest.mark.parametrize(
    ("granted", "resource", "expected"),
    [
        pytest.param(False, "deployments", 403, id="no role: listing deployments is forbidden"),
        pytest.param(False, "secrets", 403, id="no role: listing secrets is forbidden"),
        pytest.param(True, "deployments", 200, id="role for deployments: listing them works"),
        pytest.param(True, "secrets", 403, id="role for deployments: secrets stay forbidden"),
    ],
)
def test_a_service_account_can_do_exactly_what_its_roles_allow(
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    namespace: str,
    granted: bool,
    resource: str,
    expected: int,
) -> None:
    create_service_account(api_client, namespace, "robot")
    if granted:
        grant_list_deployments(api_client, namespace, "robot")
    kubeconfig = control_plane.service_account_kubeconfig(namespace, "robot")

    with client_from_kubeconfig(kubeconfig) as robot:
        calls = {
            "deployments": apps(robot).list_namespaced_deployment,
            "secrets": core(robot).list_namespaced_secret,
        }
        # A new binding reaches the authorizer's cache within moments, so an allowed call
        # is retried briefly; a forbidden one can never turn allowed, so once is enough.
        if expected == 200:
            wait_until(
                f"{resource} to become listable",
                lambda: status_of(calls[resource], namespace) == 200,
                timeout_s=15,
            )
        assert status_of(calls[resource], namespace) == expected


# --- aggregation settings for aggregated API servers -------------------------------------------


def test_the_front_proxy_settings_are_published_for_aggregated_servers(
    control_plane: ControlPlane, api_client: k8s.ApiClient
) -> None:
    published = core(api_client).read_namespaced_config_map(
        "extension-apiserver-authentication", "kube-system"
    )
    data = published.data
    assert data["requestheader-allowed-names"] == '["front-proxy-client"]'
    assert data["requestheader-username-headers"] == '["X-Remote-User"]'
    front_proxy_ca = control_plane.certs.front_proxy_ca.cert.read_text()
    assert data["requestheader-client-ca-file"].strip() == front_proxy_ca.strip()


# --- restarts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "crash",
    [
        pytest.param(False, id="graceful restart (SIGTERM)"),
        pytest.param(True, id="crash and restart (SIGKILL)"),
    ],
)
def test_clients_and_controllers_work_again_after_the_api_server_restarts(
    control_plane: ControlPlane, api_client: k8s.ApiClient, namespace: str, crash: bool
) -> None:
    core_api = core(api_client)
    core_api.create_namespaced_config_map(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "before"},
            "data": {"written": "before the restart"},
        },
    )
    create_deployment(api_client, namespace, "chat", replicas=1)
    wait_for_replicas(api_client, namespace, "chat", 1)

    control_plane.restart_apiserver(crash=crash)

    # The same client object, with its pooled connections now dead, works again...
    assert core_api.read_namespaced_config_map("before", namespace).data == {
        "written": "before the restart"
    }
    # ...and the controller-manager's watches reconnected: it still acts on changes.
    apps(api_client).patch_namespaced_deployment_scale("chat", namespace, {"spec": {"replicas": 2}})
    wait_for_replicas(api_client, namespace, "chat", 2)
