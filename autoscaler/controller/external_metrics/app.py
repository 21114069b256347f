"""The ASGI app: discovery, OpenAPI, the metric path (a plain-ASGI fast path) and KEDA's
JSON, each answer read from the loop's newest outcomes."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from autoscaler.controller.external_metrics.names import (
    DEFAULT_MAX_AGE_S,
    DEMAND_RPS,
    DESIRED_REPLICAS,
    FORECAST_RPS,
    GROUP,
    GROUP_VERSION,
    LABEL_AUTOSCALER,
    LABEL_MODE,
    METRIC_NAMES,
)
from autoscaler.controller.external_metrics.openapi import (
    discovery_group,
    discovery_resources,
    openapi_v2,
    openapi_v3,
)
from autoscaler.controller.external_metrics.quantities import quantity
from autoscaler.controller.external_metrics.selectors import (
    Requirement,
    SelectorError,
    parse_selector,
)
from autoscaler.controller.external_metrics.tls import Authenticator
from autoscaler.controller.loop import Outcome
from autoscaler.controller.resource import Mode
from autoscaler.controller.status import rfc3339

OutcomeSource = Callable[[], Mapping[tuple[str, str], Outcome]]
"""Returns the newest outcome per (namespace, name); called once per request."""


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
