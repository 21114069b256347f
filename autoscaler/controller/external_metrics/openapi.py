"""The OpenAPI (v2 and v3) and discovery documents the aggregator reads and merges."""

from __future__ import annotations

from typing import Any

from autoscaler.controller.external_metrics.names import (
    GROUP,
    GROUP_VERSION,
    METRIC_NAMES,
    VERSION,
)

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
