"""What a replay returns: a summary, a timeline per bin, and decision reason counts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.traces.model import FloatArray


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    policy: str
    slo_attainment: float
    """Fraction of arrived requests with TTFT <= the SLO (never served = miss)."""
    gpu_hours: float
    """Sum over replicas of provisioned seconds x GPUs per replica / 3600."""
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    scale_events: int
    """Times the actuated replica count changed."""
    mean_replicas: float
    """Time-mean of provisioned replicas (starting + ready + draining)."""
    max_replicas: int
    requests: float
    engine: str
    gpu_cost: float | None = None
    """gpu_hours x the profile's price per GPU-hour, when the profile has one."""
    initial_replicas: int = 0
    replica_starts: int = 0
    """Replicas asked for after t=0 (each pays a cold start), cancelled ones included."""
    replica_starts_per_day: float = 0.0
    cold_start_gpu_hours: float = 0.0
    """GPU-hours spent on replicas that were starting (asked for, not yet ready)."""
    worst_hour_attainment: float = math.nan
    """Lowest attainment of any scored hour (NaN when no hour was scored)."""
    hours_meeting_target: float = math.nan
    """Share of scored hours whose attainment reached ``slo.targetAttainment``."""
    hours_scored: int = 0
    """Clock hours with arrivals that are not wholly inside a collection gap."""
    bound_gpu_hours: float = math.nan
    """Proven lower bound on GPU-hours at this attainment (``autoscaler.sim.bound``)."""
    max_pending: int = 0
    """Most replicas the GPU quota held pending at once."""
    scored_from_s: float = 0.0
    """Start of the scored part, seconds since the trace start: every figure above counts
    arrivals, GPU time and events in [scored_from_s, trace end) only (0: the whole trace;
    ``max_pending`` is over the whole replay)."""


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-bin series; replica counts and queue depth are the values at the bin's end."""

    t_s: FloatArray
    """Bin start, seconds since the trace start."""
    arrival_rps: FloatArray
    desired_replicas: FloatArray
    ready_replicas: FloatArray
    provisioned_replicas: FloatArray
    ttft_p95_s: FloatArray
    """TTFT p95 of the bin's arrivals; NaN where the bin has none."""
    queue_depth: FloatArray
    attainment: FloatArray
    """Fraction of the bin's arrivals within the SLO; NaN where none arrived."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    summary: ReplaySummary
    timeline: Timeline
    reasons: dict[str, int]
    """Decision reason -> how many decisions gave it."""
    decisions: int
