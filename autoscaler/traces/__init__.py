"""Workloads to replay: trace loaders, the embedded synthetic workload and reshaping.

``load_trace`` reads the supported file formats, ``default_workload`` generates the
built-in seeded workload, ``scale_trace`` changes rate or time scale and
``expand_to_requests`` turns a rate-level trace into individual requests.
"""

from autoscaler.traces.loaders import FORMATS, detect_format, load_trace, parse_counts
from autoscaler.traces.model import TokenMix, Trace
from autoscaler.traces.scaling import expand_to_requests, sample_token_lengths, scale_trace
from autoscaler.traces.synthetic import BURSTS, Burst, default_workload, default_workload_rate

__all__ = [
    "BURSTS",
    "FORMATS",
    "Burst",
    "TokenMix",
    "Trace",
    "default_workload",
    "default_workload_rate",
    "detect_format",
    "expand_to_requests",
    "load_trace",
    "parse_counts",
    "sample_token_lengths",
    "scale_trace",
]
