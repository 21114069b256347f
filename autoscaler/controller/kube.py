"""The Kubernetes edge: the few API calls the controller makes, as plain JSON.

Responses are read raw (``_preload_content=False``) and parsed with ``json``: the generated
model classes of the ``kubernetes`` client cost several times more CPU per object, which
matters when one replica lists 1,000 autoscalers and their workloads every cycle.

Errors are sorted at this edge: 404 -> ``NotFound``, 409 -> ``Conflict``, 401/403 ->
``Forbidden`` (a configuration problem: RBAC), anything else (connection refused while the
API server restarts, 5xx, timeouts) -> ``ApiUnavailable`` (transient: try next cycle).

Every call has one deadline (``Limits.api_timeout_s``) and no hidden retries: the client's
urllib3 pool would otherwise retry 3 times, so a hung API server cost 4 x 10 s per call and
a leader kept acting for 43 s after its lease was taken over (issue 14). This is the only
module that imports ``kubernetes`` (an import-linter contract keeps it so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, Protocol, TypedDict

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from autoscaler.controller.resource import GROUP, PLURAL, VERSION, TargetRef
from autoscaler.errors import AutoscalerError, SpecError, TransientError

APPS_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
"""apps/v1 kinds listed once per cycle (their objects carry ``status.readyReplicas``);
deploy/rbac.yaml grants exactly these. Any other kind goes through its ``scale``."""


# --- raw payloads crossing this edge (only the fields the controller reads or writes) ------
# Every JSON document read from or written to the API server is one of these. Fields are
# optional (total=False) where the API may omit them; the reader supplies the default.


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str


class RawAutoscaler(TypedDict):
    """An InferenceAutoscaler as the API returns it. ``spec`` stays a free-form mapping
    here on purpose: it is validated once, by the pydantic model in ``resource.py`` that
    the CRD's schema is generated from, not typed twice."""

    apiVersion: NotRequired[str]
    kind: NotRequired[str]
    metadata: ObjectMeta
    spec: NotRequired[dict[str, Any]]
    status: NotRequired[dict[str, Any]]


class RawAutoscalerList(TypedDict):
    items: list[RawAutoscaler]


class LabelSelectorRequirement(TypedDict, total=False):
    key: str
    operator: str
    values: list[str]


class LabelSelector(TypedDict, total=False):
    matchLabels: dict[str, str]
    matchExpressions: list[LabelSelectorRequirement]


class WorkloadSpec(TypedDict, total=False):
    replicas: int
    selector: LabelSelector


class WorkloadStatus(TypedDict, total=False):
    readyReplicas: int


class RawWorkload(TypedDict):
    """An apps/v1 Deployment or StatefulSet."""

    metadata: ObjectMeta
    spec: NotRequired[WorkloadSpec]
    status: NotRequired[WorkloadStatus]


class RawWorkloadList(TypedDict):
    items: list[RawWorkload]


class ScaleSpec(TypedDict, total=False):
    replicas: int


class ScaleStatus(TypedDict, total=False):
    replicas: int
    selector: str


class RawScale(TypedDict):
    """An autoscaling/v1 Scale: read from and written to a workload's ``scale``."""

    apiVersion: NotRequired[str]
    kind: NotRequired[str]
    metadata: ObjectMeta
    spec: NotRequired[ScaleSpec]
    status: NotRequired[ScaleStatus]


class CrossVersionObjectReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str


class CompetitorSpec(TypedDict, total=False):
    scaleTargetRef: CrossVersionObjectReference


class RawCompetitor(TypedDict):
    """An autoscaling/v2 HorizontalPodAutoscaler or a KEDA ScaledObject."""

    metadata: ObjectMeta
    spec: NotRequired[CompetitorSpec]


class RawCompetitorList(TypedDict):
    items: list[RawCompetitor]


class ApiResource(TypedDict):
    name: str
    kind: str


class RawResourceList(TypedDict):
    """A discovery document (``/apis/GROUP/VERSION``): the kinds a group serves."""

    resources: list[ApiResource]


class PodCondition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str


class PodStatus(TypedDict, total=False):
    phase: str
    conditions: list[PodCondition]


class PodMeta(TypedDict, total=False):
    name: str
    namespace: str
    deletionTimestamp: str


class RawPod(TypedDict):
    """A pod as the API returns it: the fields ``schedulable.assess`` reads."""

    metadata: PodMeta
    status: NotRequired[PodStatus]


class RawPodList(TypedDict):
    items: list[RawPod]


class LeaseSpec(TypedDict, total=False):
    holderIdentity: str
    leaseDurationSeconds: int
    acquireTime: str
    """MicroTime, e.g. ``2026-11-23T23:59:01.123456Z``; so is ``renewTime``."""
    renewTime: str
    leaseTransitions: int


class RawLease(TypedDict):
    """A coordination.k8s.io/v1 Lease (leader election, ``election.py``)."""

    apiVersion: NotRequired[str]
    kind: NotRequired[str]
    metadata: ObjectMeta
    spec: NotRequired[LeaseSpec]


class RawConfigMap(TypedDict):
    """A core/v1 ConfigMap (the request-header settings, ``external_metrics/configmap.py``)."""

    metadata: NotRequired[ObjectMeta]
    data: NotRequired[dict[str, str]]


class StatusPatch(TypedDict):
    """A merge patch of an autoscaler's ``status`` subresource (built by ``status.py``)."""

    status: dict[str, Any]


class EventMeta(TypedDict):
    generateName: str
    namespace: str


class EventSource(TypedDict):
    component: str
    host: str


class RawEvent(TypedDict):
    """A core/v1 Event, as posted."""

    apiVersion: str
    kind: str
    metadata: EventMeta
    involvedObject: dict[str, str]
    type: str
    reason: str
    message: str
    firstTimestamp: str
    lastTimestamp: str
    count: int
    source: EventSource
    reportingComponent: str
    reportingInstance: str


@dataclass(frozen=True, slots=True)
class Competitor:
    """Another autoscaler that writes the same workload's scale (an HPA or a KEDA
    ScaledObject, which makes an HPA of its own)."""

    kind: str
    name: str
    target_kind: str
    target_name: str


class KubeError(AutoscalerError):
    """A Kubernetes API call failed for a reason that is not transient."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Forbidden(KubeError):
    pass


class ApiUnavailable(TransientError):
    pass


@dataclass(frozen=True, slots=True)
class ScaleInfo:
    """What the controller needs to know about a workload this cycle."""

    replicas: int
    """``spec.replicas``: what was last asked for."""
    ready: int
    """Ready replicas (``status.readyReplicas``; the scale's ``status.replicas`` for kinds
    that have no readiness count)."""
    resource_version: str
    """Of the workload, as read (a LIST from the watch cache may be behind). Not sent
    with a write: ``set_scale`` tests ``spec.replicas`` instead."""
    selector: str = ""
    """Label selector of the workload's pods, as a string (the scale subresource's
    ``status.selector``, e.g. ``app=chat``); "" when the workload does not say."""


class Kube(Protocol):
    """What the controller loop needs from the cluster (a fake implements it in tests)."""

    def list_autoscalers(self, namespace: str | None) -> list[RawAutoscaler]: ...

    def list_workloads(self, kind: str, namespace: str | None
                       ) -> dict[tuple[str, str], ScaleInfo]: ...

    def get_scale(self, namespace: str, ref: TargetRef) -> ScaleInfo: ...

    def set_scale(self, namespace: str, ref: TargetRef, replicas: int, *,
                  expected: int) -> None:
        """Set the target's ``spec.replicas`` to ``replicas`` if it is still ``expected``
        (the count the decision was made from), else raise ``Conflict``. No
        resourceVersion: a change of anything else (the workload's status, its labels)
        does not fail the write."""
        ...

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...

    def create_event(self, namespace: str, involved: Mapping[str, str], event_type: str,
                     reason: str, message: str) -> None: ...

    def list_competitors(self, namespace: str) -> list[Competitor]: ...

    def list_pods(self, namespace: str, selector: str) -> list[RawPod]: ...


def selector_string(selector: Mapping[str, Any]) -> str:
    """A ``LabelSelector`` object (a workload's ``spec.selector``) as the string a scale's
    ``status.selector`` and a LIST's ``labelSelector`` use: ``{"matchLabels": {"app":
    "chat"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}``
    -> ``app=chat,tier in (a,b)``."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
        values = ",".join(str(v) for v in expr.get("values") or ())
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def api_client(kubeconfig: str | None) -> k8s.ApiClient:
    """An ``ApiClient`` from a kubeconfig file, else the in-cluster config, else
    ~/.kube/config; with urllib3's retries switched off (see the module docstring).
    A missing or malformed kubeconfig is a ``SpecError`` naming the file."""
    cfg = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=cfg)
        else:
            try:
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=cfg)
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    client_configuration=cfg)
    except Exception as exc:  # the loader raises ConfigException, OSError, YAMLError, ...
        raise SpecError("--kubeconfig", kubeconfig or "~/.kube/config",
                        f"a readable kubeconfig ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'})"
                        ) from exc
    # One attempt per call: the caller's deadline is the whole budget. urllib3.Retry(0)
    # still returns (rather than raises on) redirects and error statuses.
    cfg.retries = urllib3.Retry(total=0, connect=0, read=0, status=0, redirect=0,
                                raise_on_redirect=False, raise_on_status=False)
    return k8s.ApiClient(cfg)


class KubeClient:
    """``Kube`` over the official client's ``ApiClient``."""

    def __init__(self, api_client: k8s.ApiClient, component: str = "inference-autoscaler",
                 instance: str = "", *, timeout_s: float = 5.0) -> None:
        self.api = api_client
        self.component = component
        self.instance = instance
        self.timeout_s = timeout_s
        """Deadline of one call, seconds (connect + read)."""
        self._plurals: dict[tuple[str, str], str] = {}
        self.requests = 0
        """API calls made so far (for the controller's own figures)."""

    def call(self, method: str, path: str, body: Any = None,
             query: list[tuple[str, str]] | None = None,
             content_type: str = "application/json") -> Any:
        self.requests += 1
        try:
            # param_serialize adds the server URL, the query string and the auth headers
            # (bearer token or client certificate settings) exactly as generated calls do.
            method_, url, headers, body_, post = self.api.param_serialize(
                method, path, query_params=query or [], body=body,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                auth_settings=["BearerToken"])
            resp = self.api.call_api(method_, url, header_params=headers, body=body_,
                                     post_params=post, _request_timeout=self.timeout_s)
            data: bytes | None = resp.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:  # raised for transport-level failures in this client
            raise ApiUnavailable(f"{method} {path}: {exc.reason}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        status = int(resp.status)
        if status >= 300:
            message = f"{method} {path}: HTTP {status}: {_status_message(data)}"
            if status == 404:
                raise NotFound(message, 404)
            if status == 409:
                raise Conflict(message, 409)
            if status in (401, 403):
                raise Forbidden(message, status)
            if status in (400, 422):
                raise KubeError(message, status)
            raise ApiUnavailable(message)
        return json.loads(data) if data else None

    def list_autoscalers(self, namespace: str | None) -> list[RawAutoscaler]:
        path = (f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}" if namespace
                else f"/apis/{GROUP}/{VERSION}/{PLURAL}")
        doc: RawAutoscalerList = self.call("GET", path)
        return doc["items"]

    def list_competitors(self, namespace: str) -> list[Competitor]:
        """HPAs (autoscaling/v2) and KEDA ScaledObjects of a namespace, with their targets.
        A cluster without KEDA answers 404 for its group: no ScaledObjects."""
        out: list[Competitor] = []
        hpas: RawCompetitorList = self.call(
            "GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers",
            query=[("resourceVersion", "0")])
        for item in hpas["items"]:
            ref = item.get("spec", {}).get("scaleTargetRef", {})
            out.append(Competitor("HorizontalPodAutoscaler", item["metadata"].get("name", ""),
                                  str(ref.get("kind", "")), str(ref.get("name", ""))))
        try:
            scaled: RawCompetitorList = self.call(
                "GET", f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects")
        except NotFound:
            return out
        for item in scaled["items"]:
            ref = item.get("spec", {}).get("scaleTargetRef", {})
            out.append(Competitor("ScaledObject", item["metadata"].get("name", ""),
                                  str(ref.get("kind") or "Deployment"),
                                  str(ref.get("name", ""))))
        return out

    def list_workloads(self, kind: str, namespace: str | None
                       ) -> dict[tuple[str, str], ScaleInfo]:
        plural = APPS_PLURALS[kind]
        path = (f"/apis/apps/v1/namespaces/{namespace}/{plural}" if namespace
                else f"/apis/apps/v1/{plural}")
        # resourceVersion=0: served from the API server's watch cache, not from etcd.
        doc: RawWorkloadList = self.call("GET", path, query=[("resourceVersion", "0")])
        out: dict[tuple[str, str], ScaleInfo] = {}
        for item in doc["items"]:
            meta, spec, status = item["metadata"], item.get("spec", {}), item.get("status", {})
            out[(meta.get("namespace", ""), meta.get("name", ""))] = ScaleInfo(
                replicas=int(spec.get("replicas", 1)),
                ready=int(status.get("readyReplicas", 0) or 0),
                resource_version=str(meta.get("resourceVersion", "")),
                selector=selector_string(spec.get("selector") or {}))
        return out

    def _plural(self, ref: TargetRef) -> str:
        if ref.api_version == "apps/v1" and ref.kind in APPS_PLURALS:
            return APPS_PLURALS[ref.kind]
        key = (ref.api_version, ref.kind)
        if key not in self._plurals:
            base = f"/apis/{ref.api_version}" if ref.group else f"/api/{ref.version}"
            discovery: RawResourceList = self.call("GET", base)
            for res in discovery["resources"]:
                if res.get("kind") == ref.kind and "/" not in res["name"]:
                    self._plurals[key] = res["name"]
                    break
            else:
                raise NotFound(f"{ref.api_version} has no kind {ref.kind}", 404)
        return self._plurals[key]

    def _scale_path(self, namespace: str, ref: TargetRef) -> str:
        base = f"/apis/{ref.api_version}" if ref.group else f"/api/{ref.version}"
        return f"{base}/namespaces/{namespace}/{self._plural(ref)}/{ref.name}/scale"

    def get_scale(self, namespace: str, ref: TargetRef) -> ScaleInfo:
        doc: RawScale = self.call("GET", self._scale_path(namespace, ref))
        return ScaleInfo(replicas=int(doc.get("spec", {}).get("replicas", 0) or 0),
                         ready=int(doc.get("status", {}).get("replicas", 0) or 0),
                         resource_version=str(doc["metadata"].get("resourceVersion", "")),
                         selector=str(doc.get("status", {}).get("selector", "") or ""))

    def list_pods(self, namespace: str, selector: str) -> list[RawPod]:
        """The pods of one workload (``selector`` as in a scale's ``status.selector``),
        served from the API server's watch cache, under the same one-call deadline."""
        doc: RawPodList = self.call(
            "GET", f"/api/v1/namespaces/{namespace}/pods",
            query=[("labelSelector", selector), ("resourceVersion", "0")])
        return list(doc["items"])

    def set_scale(self, namespace: str, ref: TargetRef, replicas: int, *,
                  expected: int) -> None:
        """A JSON patch of the ``scale`` subresource that tests ``spec.replicas`` before
        replacing it: a compare-and-set on the one field we decide from. The API server
        applies it to the newest object (re-applying it if its own write races), so the
        Deployment controller's status updates never fail it, as a PUT carrying the
        resourceVersion of a LIST did (320 of 773 writes answered 409 at 1,000 autoscalers
        in ``benchmarks/controller_load.py``); a count changed by someone else since we
        read it fails the test (HTTP 422), raised here as ``Conflict`` (as is a 409: the
        API server gave up retrying its own write)."""
        body = scale_patch(replicas, expected)
        try:
            self.call("PATCH", self._scale_path(namespace, ref), body=body,
                      content_type="application/json-patch+json")
        except KubeError as exc:
            # The API server answers a failed test with a bare 422 ("the server rejected our
            # request due to an error in our request", no cause). The patch sets one
            # non-negative count, so nothing else in it can be invalid: a 422 is the test
            # (or, from 0, the path) not matching, i.e. the count is not ``expected``.
            if exc.status == 422:
                raise Conflict(f"{exc} (spec.replicas is no longer {expected})", 409) from exc
            raise

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        body: StatusPatch = {"status": dict(status)}
        self.call("PATCH", path, body=body, content_type="application/merge-patch+json")

    def create_event(self, namespace: str, involved: Mapping[str, str], event_type: str,
                     reason: str, message: str) -> None:
        from datetime import UTC, datetime

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: RawEvent = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
            "involvedObject": dict(involved), "type": event_type, "reason": reason,
            "message": message[:1024], "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "source": {"component": self.component, "host": self.instance},
            "reportingComponent": self.component, "reportingInstance": self.instance,
        }
        self.call("POST", f"/api/v1/namespaces/{namespace}/events", body=body)


def scale_patch(replicas: int, expected: int) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) that sets a Scale's ``spec.replicas`` to ``replicas`` only
    if it is ``expected``. A Scale of 0 replicas has no ``spec.replicas`` at all (the field
    is omitted when zero), so that case tests ``spec`` to be empty instead."""
    if expected == 0:
        return [{"op": "test", "path": "/spec", "value": {}},
                {"op": "add", "path": "/spec/replicas", "value": replicas}]
    return [{"op": "test", "path": "/spec/replicas", "value": expected},
            {"op": "replace", "path": "/spec/replicas", "value": replicas}]


def _status_message(data: bytes | None) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, with its ``details.causes``' (a
    rejected JSON patch says why only there), or the body itself."""
    try:
        doc = json.loads(data or b"{}")
        message = str(doc.get("message", ""))
        causes = [str(c.get("message", "")) for c in
                  (doc.get("details") or {}).get("causes") or () if c.get("message")]
    except (TypeError, ValueError, AttributeError):
        return (data or b"").decode(errors="replace")[:200]
    return "; ".join([message, *causes]) if causes else message
