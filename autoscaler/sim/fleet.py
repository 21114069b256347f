"""What both engines share: replica lifetimes, GPU accounting, the engine interface and
the raw sample an engine exposes to the fake Prometheus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from autoscaler.sim.profiles import ReplicaProfile

TTFT_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)
"""Upper bounds (``le``) of vLLM's ``vllm:time_to_first_token_seconds`` histogram
(vllm/v1/metrics/loggers.py); a final +Inf bucket is implied."""


@dataclass(slots=True)
class ReplicaRecord:
    """One replica's life. It costs GPU time from ``requested_at`` until ``ended_at``
    (removed while starting, or drained after a scale-down)."""

    requested_at: float
    ready_at: float
    removal_at: float | None = None
    """When the scale-down picked it (it stops taking new requests)."""
    ended_at: float | None = None
    """When it stopped costing GPU time."""


@dataclass(frozen=True, slots=True)
class EngineSample:
    """Fleet-level truth at time ``t`` as a metrics exporter would expose it."""

    t: float
    requests_total: float
    """Requests that arrived at the router (counter)."""
    prompt_tokens_total: float
    generation_tokens_total: float
    ttft_buckets: tuple[float, ...]
    """Cumulative TTFT histogram counts per ``le`` bound, then +Inf (= count)."""
    ttft_sum: float
    waiting: float
    """Requests waiting for admission (replica queues plus the router's queue), vLLM's
    ``num_requests_waiting`` summed."""
    running: float
    """Requests admitted (prefilling or decoding), vLLM's ``num_requests_running``."""
    kv_usage: float
    """Mean over serving replicas of KV blocks in use / blocks (NaN when none), vLLM's
    ``kv_cache_usage_perc`` as a fraction."""
    gpu_busy_seconds_total: float
    """Replica-seconds the GPUs were busy (counter); rate() / ready = utilisation."""
    ready_replicas: int
    first_tokens_total: float = 0.0
    """Requests that have received their first token (counter): the count of vLLM's
    ``time_to_first_token_seconds`` histogram. Under overload it flattens at the fleet's
    capacity while ``requests_total`` keeps rising."""
    preemptions_total: float = 0.0
    """Running requests preempted for lack of KV blocks (counter; vLLM's
    ``num_preemptions``)."""


class Engine(Protocol):
    """What the replay loop drives. Times are seconds since the trace start."""

    name: str

    def advance(self, t: float) -> None:
        """Simulate up to time ``t``."""

    def set_target(self, replicas: int, t: float) -> None:
        """Actuate a new replica count at ``t`` (after ``advance(t)``)."""

    def sample(self, t: float) -> EngineSample:
        """The exporter's view at ``t`` (after ``advance(t)``)."""

    def ready_count(self) -> int: ...

    def provisioned_count(self) -> int: ...

    def records(self) -> list[ReplicaRecord]: ...


class ColdStarts:
    """Seeded cold-start durations: ``cold_start_s + uniform(0, jitter)``."""

    def __init__(self, profile: ReplicaProfile, seed: int) -> None:
        self._base = profile.cold_start_s
        self._jitter = profile.cold_start_jitter_s
        self._rng = np.random.default_rng(seed)

        self._batch: list[float] = []

    def draw(self) -> float:
        if self._jitter <= 0:
            return self._base
        if not self._batch:  # draw in blocks: one numpy call per 1,024 replicas
            self._batch = self._rng.uniform(0.0, self._jitter, 1024).tolist()[::-1]
        return self._base + self._batch.pop()


def gpu_seconds(records: list[ReplicaRecord], t_end: float, gpus_per_replica: int,
                t_start: float = 0.0) -> float:
    """GPU-seconds of all replicas from request to end (or ``t_end`` if still alive), counted
    inside [t_start, t_end] only (a replica asked for before ``t_start`` costs from then)."""
    total = 0.0
    for r in records:
        end = t_end if r.ended_at is None else min(r.ended_at, t_end)
        total += max(0.0, end - max(r.requested_at, t_start))
    return total * gpus_per_replica


def provisioned_stats(records: list[ReplicaRecord], t_end: float,
                      t_start: float = 0.0) -> tuple[float, int]:
    """(time-mean, max) of provisioned replicas over [t_start, t_end]."""
    if t_end <= t_start or not records:
        return 0.0, 0
    events: list[tuple[float, int]] = []
    for r in records:
        end = t_end if r.ended_at is None else min(r.ended_at, t_end)
        begin = max(r.requested_at, t_start)
        if end > begin:
            events.append((begin, 1))
            events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at the same instant
    n = peak = 0
    area = 0.0
    last = t_start
    for t, d in events:
        area += n * (t - last)
        last = t
        n += d
        peak = max(peak, n)
    return area / (t_end - t_start), peak
