"""The names this API serves: group, version, metrics and labels."""

from __future__ import annotations

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
