"""Workloads to replay: trace loaders, the embedded synthetic workload and reshaping.

``load_trace`` reads the supported file formats, ``default_workload`` generates the
built-in seeded workload, ``scale_trace`` changes rate or time scale and
``expand_to_requests`` turns a rate-level trace into individual requests, ``window_trace``
cuts a window out of a trace and ``interarrival_cv`` measures the arrivals' burstiness.
"""

from autoscaler.traces.loaders import FORMATS, detect_format, load_trace, parse_counts
from autoscaler.traces.model import TokenDistribution, TokenMix, TokenWindows, Trace, TraceSize
from autoscaler.traces.scaling import expand_to_requests, sample_token_lengths, scale_trace
from autoscaler.traces.stats import collection_gap_count, interarrival_cv
from autoscaler.traces.synthetic import BURSTS, Burst, default_workload, default_workload_rate
from autoscaler.traces.window import parse_duration, window_trace

__all__ = [
    "BURSTS",
    "FORMATS",
    "Burst",
    "TokenDistribution",
    "TokenMix",
    "TokenWindows",
    "Trace",
    "TraceSize",
    "collection_gap_count",
    "default_workload",
    "default_workload_rate",
    "detect_format",
    "expand_to_requests",
    "interarrival_cv",
    "load_trace",
    "parse_counts",
    "parse_duration",
    "sample_token_lengths",
    "scale_trace",
    "window_trace",
]
