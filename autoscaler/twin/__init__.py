"""Digital twin exporter: the simulator's fleets served as real engines' /metrics.

``Twin`` runs one or many simulated targets in (accelerated) wall time and serves, on one
port, their metrics in the exact exposition of a serving engine, a replicas endpoint a live
loop can close around, the ground truth, and fault hooks for tests.
"""

from autoscaler.twin.expositions import EXPOSITIONS, Exposition, get_exposition, render_text
from autoscaler.twin.serving import PodSource, Twin, parse_replicas
from autoscaler.twin.targets import SimTarget, TargetConfig

__all__ = [
    "EXPOSITIONS",
    "Exposition",
    "PodSource",
    "SimTarget",
    "TargetConfig",
    "Twin",
    "get_exposition",
    "parse_replicas",
    "render_text",
]
