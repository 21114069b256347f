"""Kubernetes manifests the e2e tests and the closed-loop benchmark create, written once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoscaler.controller.external_metrics import DESIRED_REPLICAS

ONE_PER_REPLICA = {"type": "AverageValue", "averageValue": "1"}
"""The HPA target that makes an external metric the replica count itself: the HPA asks for
ceil(value / 1) replicas in all, which is how Metrics mode hands over our desired count."""


def external_metric_hpa(name: str, *, max_replicas: int, metric: str = DESIRED_REPLICAS,
                        target: Mapping[str, str] = ONE_PER_REPLICA,
                        behavior: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An autoscaling/v2 HorizontalPodAutoscaler of Deployment ``name`` (min 1 replica)
    following the external ``metric`` of the autoscaler of the same name (the series
    labelled ``autoscaler=<name>``), with ``behavior`` if given (else the HPA's defaults).
    """
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": 1, "maxReplicas": max_replicas,
        "metrics": [{"type": "External", "external": {
            "metric": {"name": metric, "selector": {"matchLabels": {"autoscaler": name}}},
            "target": dict(target)}}]}
    if behavior is not None:
        spec["behavior"] = dict(behavior)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name}, "spec": spec}
