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

GPU exhaustion. The desired count served is the loop's, so it carries the loop's cap: while
pods are Pending for ``nvidia.com/gpu`` a scale-up is served at the current count (8 pods on
6 GPUs: 8, not the 12 the policy wants; ``controller/schedulable.py``), and the HPA does not
ask for pods that would only queue. The demand and forecast metrics are not capped: an HPA
built on them instead gets no such hold.

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
``--requestheader-allowed-names`` (empty: any CN that CA signed, as in Kubernetes). The TLS
handshake requires a certificate from that CA (no certificate, or one from another CA: the
handshake fails, so such a client never reaches HTTP); a valid certificate with another CN
-> 403. ``/keda/...`` is exempt from the CN check only: it serves the same numbers that
``/metrics`` publishes as gauges, and KEDA presents a certificate of its own (its
``metrics-api`` trigger's ``authModes: tls``) signed by the same CA.

Connection limits (``ServingLimits``): the TLS handshake and a request's headers must arrive
within ``--external-metrics-header-timeout`` of connecting (or of the previous response), and
at most ``--external-metrics-max-connections`` connections are served at once.

Modules, one concern each: ``names`` (group, metrics, labels), ``quantities``,
``selectors``, ``tls`` (authentication and connection guards), ``openapi`` (discovery and
OpenAPI documents), ``app`` (the ASGI app), ``server`` (lifecycle), ``configmap`` (the
cluster's request-header settings).

Quantities are canonical ``resource.Quantity`` strings (see ``canonical_quantity``), in
milli-units truncated toward zero exactly as prometheus-adapter converts samples, so the
replay's ``hpa`` policy (``usage_milli``) sees the same integers the real HPA does.
"""

from __future__ import annotations

from autoscaler.controller.external_metrics.app import (
    OutcomeSource,
    create_app,
    external_metric_items,
    labels_of,
    metric_value,
)
from autoscaler.controller.external_metrics.configmap import AUTH_CONFIGMAP, request_header_auth
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
    VERSION,
)
from autoscaler.controller.external_metrics.openapi import (
    discovery_group,
    discovery_resources,
    openapi_v2,
    openapi_v3,
)
from autoscaler.controller.external_metrics.quantities import (
    canonical_quantity,
    milli_units,
    quantity,
)
from autoscaler.controller.external_metrics.selectors import (
    Requirement,
    SelectorError,
    parse_selector,
)
from autoscaler.controller.external_metrics.server import (
    ExternalMetricsServer,
    ServerConfig,
    uvicorn_config,
)
from autoscaler.controller.external_metrics.tls import (
    Authenticator,
    TLSScopeProtocol,
    common_name,
)

__all__ = ["AUTH_CONFIGMAP", "DEFAULT_MAX_AGE_S", "DEMAND_RPS", "DESIRED_REPLICAS",
           "FORECAST_RPS", "GROUP", "GROUP_VERSION", "LABEL_AUTOSCALER", "LABEL_MODE",
           "METRIC_NAMES", "VERSION", "Authenticator", "ExternalMetricsServer",
           "OutcomeSource", "Requirement", "SelectorError", "ServerConfig",
           "TLSScopeProtocol", "canonical_quantity", "common_name", "create_app",
           "discovery_group", "discovery_resources", "external_metric_items", "labels_of",
           "metric_value", "milli_units", "openapi_v2", "openapi_v3", "parse_selector",
           "quantity", "request_header_auth", "uvicorn_config"]
