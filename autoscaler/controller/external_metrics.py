"""The ``external.metrics.k8s.io/v1beta1`` API, served from the control loop's cache.

A stock HPA (or anything that reads external metrics) consumes our decisions through the
API aggregation layer: the HPA controller asks the kube-apiserver, which proxies to this
server with its front-proxy client certificate. Endpoints (all ``GET``):

* ``/apis``, ``/apis/external.metrics.k8s.io``, ``/apis/external.metrics.k8s.io/v1beta1``:
  legacy discovery (APIGroupList, APIGroup, APIResourceList). The v1.35 aggregator first
  asks ``/apis`` for aggregated discovery; our plain ``application/json`` answer makes it
  fall back to the legacy documents (kube-aggregator ``handler_discovery.go``).
* ``/openapi/v2`` (Swagger 2.0) and ``/openapi/v3`` (the v3 discovery document, pointing at
  ``/openapi/v3/apis/external.metrics.k8s.io/v1beta1``): the documents the aggregator
  downloads and merges into the cluster's own ``/openapi/v2`` and ``/openapi/v3``, describing
  the one path and the ``ExternalMetricValueList`` schema (as ``kubectl explain`` and client
  generators read them).
* ``/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}?labelSelector=...``:
  an ``ExternalMetricValueList``, one item per autoscaler of the namespace that the selector
  matches.
* ``/keda/{ns}/{name}``: JSON for KEDA's ``metrics-api`` trigger (see below).

Metrics, per InferenceAutoscaler, with labels ``autoscaler=<name>`` and ``mode=<mode>``:

=========================================  ==============================================
``inference_autoscaler_desired_replicas``  the decided replica count (only for ``Metrics``
                                           and ``Shadow`` mode: in ``Scale`` mode we write
                                           the scale ourselves and an HPA would fight us)
``inference_autoscaler_forecast_rps``      the demand the policy planned for (requests/s)
``inference_autoscaler_demand_rps``        the demand observed now (requests/s)
=========================================  ==============================================

An HPA with ``type: AverageValue, averageValue: "1"`` on the desired-replicas metric and
``selector: {matchLabels: {autoscaler: <name>}}`` lands exactly on our count: the HPA
proposes ceil(usage / target) = ceil(N / 1) = N (outside its tolerance; see
deploy/examples/hpa-external.yaml for why that example sets ``tolerance: 0``). Select one
autoscaler: with AverageValue the HPA *sums* every item the selector returns.

Withholding. Values never come from Prometheus at request time; they are the loop's newest
``Outcome``. An outcome older than ``max_age_s``, an invalid decision (missing or stale
metrics: the loop holds), or a non-finite number is *left out* of the list, never served as
0: the HPA then gets no value, reports ``FailedGetExternalMetric`` and keeps the current
count, which is what our own loop does on missing data.

Replicas. Only the leader decides; a follower has no outcomes and serves empty lists (the HPA
then holds for that sync period). Route the APIService's Service to the leader where you can,
or run one replica; see deploy/external-metrics/README.md.

Authentication. TLS, with the client certificate checked against the request-header CA
(``--requestheader-client-ca-file``: the front-proxy CA the cluster publishes in
kube-system/extension-apiserver-authentication) and its CN against
``--requestheader-allowed-names`` (empty: any CN that CA signed, as in Kubernetes). No
certificate -> 401; a valid certificate with another CN -> 403; a certificate from another CA
fails the TLS handshake (Python's ``ssl`` verifies a presented certificate during the
handshake, so such a client never reaches HTTP). ``/keda/...`` is exempt: it serves the same
numbers that ``/metrics`` already publishes unauthenticated as gauges, and KEDA cannot hold
a front-proxy certificate.

Quantities are canonical ``resource.Quantity`` strings (see ``canonical_quantity``), in
milli-units truncated toward zero exactly as prometheus-adapter converts samples, so the
replay's ``hpa`` policy (``usage_milli``) sees the same integers the real HPA does.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from autoscaler.controller.loop import Outcome
from autoscaler.controller.resource import Mode

log = logging.getLogger("autoscaler.controller.external_metrics")

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"

DESIRED_REPLICAS = "inference_autoscaler_desired_replicas"
FORECAST_RPS = "inference_autoscaler_forecast_rps"
DEMAND_RPS = "inference_autoscaler_demand_rps"
METRIC_NAMES: tuple[str, ...] = (DESIRED_REPLICAS, FORECAST_RPS, DEMAND_RPS)

LABEL_AUTOSCALER = "autoscaler"
LABEL_MODE = "mode"

DEFAULT_MAX_AGE_S = 45.0
"""Outcomes older than this are withheld: three sync periods at the CRD's default 15 s."""

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)

OutcomeSource = Callable[[], Mapping[tuple[str, str], Outcome]]
"""Returns the newest outcome per (namespace, name); called once per request."""


# --- quantities -------------------------------------------------------------------------

_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T",
                     15: "P", 18: "E"}


def canonical_quantity(mantissa: int, exponent: int = 0) -> str:
    """The canonical string of the DecimalSI ``resource.Quantity`` mantissa x 10^exponent.

    Kubernetes' rule (``Quantity.CanonicalizeBytes`` / ``AsCanonicalBytes``): move every
    factor of ten of the mantissa into the exponent, then lower the exponent to a multiple
    of three (multiplying the mantissa), and write the SI suffix of that exponent; an
    exponent with no suffix (beyond E or below n) is written ``e<exp>``. Examples:
    1500 m -> 15 x 10^2 -> 1500 x 10^0 = "1500" (not "1.5k": no decimal point, ever);
    1500000 m = 1500 -> "1500" too; 2000 m -> 2 x 10^0 = "2"; 1 m -> "1m";
    1.5e12 = 15 x 10^11 -> 1500 x 10^9 = "1500G"; 10^21 -> "1e21"; 0 -> "0".
    """
    if mantissa == 0:
        return "0"
    sign = "-" if mantissa < 0 else ""
    amount = abs(mantissa)
    while amount % 10 == 0:
        amount //= 10
        exponent += 1
    shift = exponent % 3  # Python's modulo is never negative: -4 % 3 == 2
    amount *= 10**shift
    exponent -= shift
    suffix = _DECIMAL_SUFFIXES.get(exponent)
    if suffix is None:
        suffix = f"e{exponent}"
    return f"{sign}{amount}{suffix}"


def milli_units(value: float) -> int | None:
    """``value`` as prometheus-adapter hands it over: int64(value x 1000), truncated toward
    zero (1.1004 -> 1100; 0.0009 -> 0) and clamped to int64. None for NaN and infinities."""
    if not math.isfinite(value):
        return None
    scaled = value * 1000.0
    if scaled >= _INT64_MAX:
        return _INT64_MAX
    if scaled <= _INT64_MIN:
        return _INT64_MIN
    return int(scaled)


def quantity(value: float) -> str | None:
    """A sample as a canonical quantity in milli precision (None: not servable)."""
    milli = milli_units(value)
    return None if milli is None else canonical_quantity(milli, -3)


# --- label selectors ----------------------------------------------------------------------


class SelectorError(ValueError):
    """A labelSelector that Kubernetes' ``labels.Parse`` would reject."""


_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|[^\s=!(),]+)")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a selector: ``op`` is one of =, !=, in, notin, exists, !exists."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        if self.op in ("=", "in"):
            return has and labels[self.key] in self.values
        return not has or labels[self.key] not in self.values  # != and notin


def _check_key(key: str) -> str:
    if len(key) > 316 or not _KEY.match(key):
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r}: at most 63 characters, "
                            "alphanumerics, '-', '_' or '.', alphanumeric at both ends")
    return value


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a label selector string in the syntax of Kubernetes' ``labels.Parse``:
    comma-separated ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``,
    ``!k``. The empty string selects everything. Raises SelectorError."""
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the token pattern accepts any non-space run
            raise SelectorError(f"cannot parse {text!r} at {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    out: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"unexpected end of selector {text!r}")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        tok = take()
        if tok == "!":
            out.append(Requirement(_check_key(take()), "!exists"))
        elif tok in ("=", "==", "!=", "(", ")", ","):
            raise SelectorError(f"expected a label key in {text!r}, found {tok!r}")
        else:
            key = _check_key(tok)
            nxt = tokens[i] if i < len(tokens) else ","
            if nxt == ",":
                out.append(Requirement(key, "exists"))
            elif nxt in ("=", "==", "!="):
                take()
                value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                if value:
                    take()
                op = "!=" if nxt == "!=" else "="
                out.append(Requirement(key, op, frozenset({_check_value(value)})))
            elif nxt in ("in", "notin"):
                take()
                if take() != "(":
                    raise SelectorError(f"expected '(' after {nxt} in {text!r}")
                values: set[str] = set()
                while True:
                    tok = take()
                    if tok == ")":
                        break
                    if tok == ",":
                        continue
                    values.add(_check_value(tok))
                if not values:
                    raise SelectorError(f"{key} {nxt} () needs at least one value")
                out.append(Requirement(key, nxt, frozenset(values)))
            else:
                raise SelectorError(f"unexpected {nxt!r} after key {key!r} in {text!r}")
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"expected ',' in {text!r}, found {tokens[i]!r}")
            i += 1
            if i == len(tokens):
                raise SelectorError(f"trailing ',' in {text!r}")
    return tuple(out)


# --- what is served ---------------------------------------------------------------------------


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metric_value(outcome: Outcome, metric: str, *, now: float, max_age_s: float
                 ) -> float | None:
    """The value of ``metric`` for one outcome, or None when it must be withheld."""
    if not outcome.valid or now - outcome.at > max_age_s or outcome.at - now > max_age_s:
        return None
    if metric == DESIRED_REPLICAS:
        return float(outcome.desired) if outcome.mode is not Mode.SCALE else None
    d = outcome.decision
    if d is None:
        return None
    value = d.forecast_rps if metric == FORECAST_RPS else d.demand_rps
    return value if value is not None and math.isfinite(value) else None


def labels_of(outcome: Outcome) -> dict[str, str]:
    return {LABEL_AUTOSCALER: outcome.name, LABEL_MODE: outcome.mode.value}


def external_metric_items(outcomes: Mapping[tuple[str, str], Outcome], namespace: str,
                          metric: str, selector: tuple[Requirement, ...], *, now: float,
                          max_age_s: float) -> list[dict[str, Any]]:
    items = []
    for (ns, _name), outcome in sorted(outcomes.items()):
        if ns != namespace:
            continue
        labels = labels_of(outcome)
        if not all(r.matches(labels) for r in selector):
            continue
        value = metric_value(outcome, metric, now=now, max_age_s=max_age_s)
        q = None if value is None else quantity(value)
        if q is None:
            continue
        items.append({"metricName": metric, "metricLabels": labels,
                      "timestamp": rfc3339(outcome.at), "value": q})
    return items


# --- authentication ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Who may call: a client certificate already verified against the request-header CA
    (by the TLS handshake) whose CN is in ``allowed_names`` (empty: any)."""

    allowed_names: frozenset[str] = frozenset()
    required: bool = True
    """False only for a plain-HTTP listener (the load benchmark): no check at all."""

    def check(self, scope: Mapping[str, Any]) -> tuple[int, str] | None:
        """None when allowed, else (HTTP status, message)."""
        if not self.required:
            return None
        tls = scope.get("extensions", {}).get("tls") or {}
        name = tls.get("client_cert_name")
        if not name:
            return 401, "a client certificate signed by the request-header CA is required"
        cn = common_name(name)
        if self.allowed_names and cn not in self.allowed_names:
            return 403, (f"client certificate CN {cn!r} is not one of the allowed names "
                         f"{sorted(self.allowed_names)}")
        return None


@functools.lru_cache(maxsize=64)
def common_name(rfc4514: str) -> str:
    cns = x509.Name.from_rfc4514_string(rfc4514).get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def _tls_extension(transport: asyncio.Transport) -> dict[str, Any]:
    """The ASGI TLS extension for a connection: the peer certificate as PEM and its name."""
    ssl_object = transport.get_extra_info("ssl_object")
    tls: dict[str, Any] = {"server_cert": None, "client_cert_chain": [],
                           "client_cert_name": None, "client_cert_error": None,
                           "tls_version": None, "cipher_suite": None}
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            cert = x509.load_der_x509_certificate(der)
            tls["client_cert_chain"] = [cert.public_bytes(serialization.Encoding.PEM).decode()]
            tls["client_cert_name"] = cert.subject.rfc4514_string()
    return tls


def _with_tls(app: Any, tls: dict[str, Any]) -> Any:
    async def with_tls(scope: Any, receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})["tls"] = tls
        await app(scope, receive, send)

    return with_tls


class TLSScopeProtocol(H11Protocol):
    """uvicorn's h11 protocol, adding the ASGI TLS extension to every request's scope:
    ``scope["extensions"]["tls"]`` with ``client_cert_chain`` (PEM) and
    ``client_cert_name`` (RFC 4514) of the peer certificate, which uvicorn does not expose.

    The certificate is read once per connection (``connection_made`` runs after the TLS
    handshake, when the peer certificate is known) and every request of the connection
    gets the same extension; the wrapped app is otherwise untouched.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _with_tls(self.app, _tls_extension(transport))


try:  # uvicorn's C parser (httptools): about half the per-request cost of h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn without its [standard] extras
    FAST_PROTOCOL: type | None = None
else:
    class TLSScopeHttpToolsProtocol(HttpToolsProtocol):
        """The same TLS extension on uvicorn's httptools protocol."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.app = _with_tls(self.app, _tls_extension(transport))

    FAST_PROTOCOL = TLSScopeHttpToolsProtocol


# --- the app ---------------------------------------------------------------------------------


def _status(code: int, reason: str, message: str) -> JSONResponse:
    """A ``meta/v1`` Status, the body Kubernetes clients parse for errors."""
    return JSONResponse(status_code=code, content=_status_doc(code, reason, message))


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            503: "ServiceUnavailable"}


class _Authenticate:
    """Refuse callers without the front-proxy certificate (``/keda/`` is exempt)."""

    def __init__(self, app: Any, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/keda/"):
            refused = self.auth.check(scope)
            if refused is not None:
                code, message = refused
                await _status(code, _REASONS[code], message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


_METRIC_PREFIX = f"/apis/{GROUP_VERSION}/namespaces/"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _MetricFastPath:
    """Serves ``GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}`` (the
    one path the HPA calls, every sync, for every External metric) as plain ASGI, skipping
    Starlette's routing and request objects: about half the per-request cost, which is
    what the tail latency at 500 req/s is made of. Everything else goes to the app."""

    def __init__(self, app: Any, respond: Callable[[str, str, str], tuple[int, Any]]) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(_METRIC_PREFIX) and scope["method"] == "GET":
            parts = path[len(_METRIC_PREFIX):].split("/")
            if len(parts) == 2 and all(parts):
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                code, doc = self.respond(parts[0], parts[1],
                                         (query.get("labelSelector") or [""])[0])
                body = json.dumps(doc, separators=(",", ":")).encode()
                await send({"type": "http.response.start", "status": code,
                            "headers": [*_JSON_HEADERS,
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _status_doc(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


_OA_LIST = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList"
_OA_VALUE = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValue"
_METRIC_PATH = f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{{metric}}"


def _schemas(ref_prefix: str) -> dict[str, Any]:
    return {
        _OA_VALUE: {
            "description": "One value of an external metric, with the labels that identify "
                           "its series (here: autoscaler, mode).",
            "type": "object", "required": ["metricName", "metricLabels", "timestamp", "value"],
            "properties": {
                "metricName": {"type": "string"},
                "metricLabels": {"type": "object",
                                 "additionalProperties": {"type": "string"}},
                "timestamp": {"type": "string", "format": "date-time"},
                "window": {"type": "integer", "format": "int64"},
                "value": {"type": "string", "description": "a Kubernetes quantity"},
            }},
        _OA_LIST: {
            "description": "The values of one external metric for the autoscalers a label "
                           "selector matches.",
            "type": "object", "required": ["items"],
            "properties": {
                "kind": {"type": "string"}, "apiVersion": {"type": "string"},
                "metadata": {"type": "object"},
                "items": {"type": "array", "items": {"$ref": f"{ref_prefix}{_OA_VALUE}"}},
            },
            "x-kubernetes-group-version-kind": [
                {"group": GROUP, "version": VERSION, "kind": "ExternalMetricValueList"}]},
    }


def _parameters() -> list[dict[str, Any]]:
    return [{"name": "namespace", "in": "path", "required": True, "type": "string"},
            {"name": "metric", "in": "path", "required": True, "type": "string"},
            {"name": "labelSelector", "in": "query", "required": False, "type": "string"}]


def openapi_v2() -> dict[str, Any]:
    """The Swagger 2.0 document the aggregator merges into the cluster's /openapi/v2."""
    return {"swagger": "2.0",
            "info": {"title": "inference-autoscaler external metrics", "version": VERSION},
            "paths": {_METRIC_PATH: {"get": {
                "operationId": "readNamespacedExternalMetricValueList",
                "produces": ["application/json"], "schemes": ["https"],
                "parameters": _parameters(),
                "responses": {"200": {"description": "OK",
                                      "schema": {"$ref": f"#/definitions/{_OA_LIST}"}},
                              "401": {"description": "Unauthorized"}},
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": {"group": GROUP, "version": VERSION,
                                                    "kind": "ExternalMetricValueList"}}}},
            "definitions": _schemas("#/definitions/")}


def openapi_v3() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the group version, as /openapi/v3 points at it."""
    params = [{"name": p["name"], "in": p["in"], "required": p["required"],
               "schema": {"type": "string"}} for p in _parameters()]
    return {"openapi": "3.0.0",
            "info": {"title": "inference-autoscaler external metrics", "version": VERSION},
            "paths": {_METRIC_PATH: {"get": {
                "operationId": "readNamespacedExternalMetricValueList",
                "parameters": params,
                "responses": {"200": {"description": "OK", "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{_OA_LIST}"}}}},
                    "401": {"description": "Unauthorized"}}}}},
            "components": {"schemas": _schemas("#/components/schemas/")}}


def discovery_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [version],
            "preferredVersion": version}


def discovery_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
            "resources": [{"name": m, "singularName": "", "namespaced": True,
                           "kind": "ExternalMetricValueList", "verbs": ["get"]}
                          for m in METRIC_NAMES]}


def create_app(outcomes: OutcomeSource, *, auth: Authenticator,
               max_age_s: float = DEFAULT_MAX_AGE_S,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The ASGI app. ``outcomes`` is read on every request (a cheap dict copy, never a
    network call); ``clock`` is the wall clock of ``Outcome.at``."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    group_doc = discovery_group()
    group_list = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_doc]}
    resources_doc = discovery_resources()

    def respond(namespace: str, metric: str, label_selector: str) -> tuple[int, Any]:
        if metric not in METRIC_NAMES:
            return 404, _status_doc(404, "NotFound",
                                    f"the server could not find the metric {metric!r} "
                                    f"(served: {', '.join(METRIC_NAMES)})")
        try:
            selector = parse_selector(label_selector)
        except SelectorError as exc:
            return 400, _status_doc(400, "BadRequest", f"labelSelector: {exc}")
        items = external_metric_items(outcomes(), namespace, metric, selector, now=clock(),
                                      max_age_s=max_age_s)
        return 200, {"kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION,
                     "metadata": {}, "items": items}

    # Plain ASGI middlewares (Starlette's @app.middleware("http") wraps every request in
    # extra tasks and streams, several times the cost of these tiny responses). The last
    # added runs first: authentication, then the metric fast path, then FastAPI's routes.
    app.add_middleware(_MetricFastPath, respond=respond)
    app.add_middleware(_Authenticate, auth=auth)

    # The handlers are `async def`: each is a few dictionary reads that never block, and a
    # plain `def` would send every request through anyio's thread pool (a thread hop and a
    # lock per request, the largest share of the tail latency at 500 req/s).
    @app.get("/apis")
    async def apis() -> dict[str, Any]:
        return group_list

    @app.get(f"/apis/{GROUP}")
    async def group() -> dict[str, Any]:
        return group_doc

    @app.get(f"/apis/{GROUP_VERSION}")
    async def resources() -> dict[str, Any]:
        return resources_doc

    @app.get("/keda/{namespace}/{name}")
    async def keda(namespace: str, name: str) -> Response:
        outcome = outcomes().get((namespace, name))
        if outcome is None:
            return _status(404, "NotFound", f"no decision for autoscaler {namespace}/{name} "
                           "on this replica (unknown, or this replica is not the leader)")
        now = clock()
        desired = metric_value(outcome, DESIRED_REPLICAS, now=now, max_age_s=max_age_s)
        if desired is None:
            return _status(503, "ServiceUnavailable",
                           f"the decision for {namespace}/{name} is withheld: "
                           + ("invalid (missing or stale metrics)" if not outcome.valid
                              else "a Scale-mode autoscaler writes its own scale"
                              if outcome.mode is Mode.SCALE
                              else f"older than {max_age_s:g} s"))
        return JSONResponse({
            "desiredReplicas": int(desired),
            "forecastRps": metric_value(outcome, FORECAST_RPS, now=now, max_age_s=max_age_s),
            "demandRps": metric_value(outcome, DEMAND_RPS, now=now, max_age_s=max_age_s),
            "timestamp": rfc3339(outcome.at)})

    v2_doc, v3_doc = openapi_v2(), openapi_v3()
    v3_hash = hashlib.sha256(json.dumps(v3_doc, sort_keys=True).encode()).hexdigest()[:32]
    v3_path = f"apis/{GROUP_VERSION}"

    @app.get("/openapi/v2")
    async def openapi_v2_doc() -> dict[str, Any]:
        return v2_doc

    @app.get("/openapi/v3")
    async def openapi_v3_discovery() -> dict[str, Any]:
        # The hash lets the aggregator (and clients) cache the group document.
        return {"paths": {v3_path: {
            "serverRelativeURL": f"/openapi/v3/{v3_path}?hash={v3_hash}"}}}

    @app.get(f"/openapi/v3/{v3_path}")
    async def openapi_v3_doc() -> dict[str, Any]:
        return v3_doc

    @app.get("/openapi/{rest:path}")
    async def openapi_other(rest: str) -> Response:
        return _status(404, "NotFound", f"no OpenAPI document at /openapi/{rest}")

    return app


# --- serving ---------------------------------------------------------------------------------

AUTH_CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


def request_header_auth(get: Callable[[str], Any], directory: str) -> tuple[str, tuple[str, ...]]:
    """The request-header CA (written to a file in ``directory``) and allowed names that the
    cluster publishes in kube-system/extension-apiserver-authentication, as every
    aggregated API server reads them (deploy/external-metrics/rbac.yaml grants the read).

    ``get(path)`` returns the parsed JSON of a GET on the API server. The allowed names are
    a JSON list in the ConfigMap (``["front-proxy-client"]``); empty means any CN.
    """
    import json
    import os

    data = (get(AUTH_CONFIGMAP) or {}).get("data") or {}
    ca = data.get("requestheader-client-ca-file")
    if not ca:
        raise ValueError("kube-system/extension-apiserver-authentication has no "
                         "requestheader-client-ca-file: the API server runs without "
                         "--requestheader-client-ca-file, so it cannot proxy to us")
    names = tuple(str(n) for n in json.loads(data.get("requestheader-allowed-names") or "[]"))
    path = os.path.join(directory, "requestheader-client-ca.crt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(ca)
    return path, names



@dataclass(frozen=True, slots=True)
class ServerConfig:
    port: int
    host: str = "0.0.0.0"
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    """The request-header (front-proxy) CA; client certificates must chain to it."""
    allowed_names: tuple[str, ...] = ()
    max_age_s: float = DEFAULT_MAX_AGE_S
    insecure_plain_http: bool = False
    """Serve plain HTTP with no authentication: for the loopback load benchmark only."""


def uvicorn_config(app: FastAPI, cfg: ServerConfig) -> uvicorn.Config:
    if cfg.insecure_plain_http:
        return uvicorn.Config(app, host=cfg.host, port=cfg.port, http="h11",
                              log_level="warning", access_log=False, lifespan="off")
    if not (cfg.cert_file and cfg.key_file and cfg.client_ca_file):
        raise ValueError("the external metrics server needs a serving certificate, its key "
                         "and the request-header client CA")
    return uvicorn.Config(app, host=cfg.host, port=cfg.port,
                          http=FAST_PROTOCOL or TLSScopeProtocol,
                          loop="auto",  # uvloop when installed
                          ssl_certfile=cfg.cert_file, ssl_keyfile=cfg.key_file,
                          ssl_ca_certs=cfg.client_ca_file, ssl_cert_reqs=ssl.CERT_OPTIONAL,
                          log_level="warning", access_log=False, lifespan="off")


class ExternalMetricsServer:
    """uvicorn in a daemon thread; ``stop()`` ends it."""

    def __init__(self, outcomes: OutcomeSource, cfg: ServerConfig, *,
                 clock: Callable[[], float] = time.time) -> None:
        auth = Authenticator(frozenset(cfg.allowed_names), required=not cfg.insecure_plain_http)
        self.app = create_app(outcomes, auth=auth, max_age_s=cfg.max_age_s, clock=clock)
        self.server = uvicorn.Server(uvicorn_config(self.app, cfg))
        # uvicorn installs no signal handlers off the main thread: SIGTERM stays the
        # controller's.
        self.thread = threading.Thread(target=self.server.run, daemon=True,
                                       name="external-metrics")

    def start(self, timeout_s: float = 10.0) -> ExternalMetricsServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the external metrics server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


__all__ = ["DEFAULT_MAX_AGE_S", "DEMAND_RPS", "DESIRED_REPLICAS", "FORECAST_RPS",
           "METRIC_NAMES", "Authenticator", "ExternalMetricsServer", "OutcomeSource",
           "Requirement", "SelectorError", "ServerConfig", "TLSScopeProtocol",
           "canonical_quantity", "create_app", "external_metric_items", "metric_value",
           "milli_units", "parse_selector", "quantity", "request_header_auth"]
