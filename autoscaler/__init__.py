"""Predictive, SLO-driven autoscaling for ML inference services on Kubernetes."""

__version__ = "0.1.0"
