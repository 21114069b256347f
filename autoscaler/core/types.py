"""The data the decision core takes and returns: snapshots, decisions, reasons, state.

Everything here is immutable. Time is always a float in seconds on one monotonic axis
chosen by the caller (epoch seconds in the live loop, seconds since trace start in the
replay); the core never reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Signal(StrEnum):
    """Names of the fleet-level signals a snapshot may carry (all summed or averaged over
    the target's replicas, as Prometheus would show them)."""

    REQUEST_RATE = "request_rate"
    """Requests arriving per second (``rate()`` of the request counter), summed."""
    QUEUE_DEPTH = "queue_depth"
    """Requests waiting to be admitted into a batch, summed (vLLM ``num_requests_waiting``)."""
    RUNNING = "running_requests"
    """Requests inside a running batch, summed (vLLM ``num_requests_running``)."""
    CONCURRENCY = "concurrency"
    """Requests in flight (waiting + running), summed: Knative's concurrency signal."""
    TTFT_P50 = "ttft_p50_s"
    """Time to first token, median over the rate window, seconds."""
    TTFT_P95 = "ttft_p95_s"
    """Time to first token, 95th percentile over the rate window, seconds."""
    TTFT_P99 = "ttft_p99_s"
    """Time to first token, 99th percentile over the rate window, seconds."""
    TTFT_P95_BUCKET_LOW = "ttft_p95_bucket_low_s"
    """Lower bound (exclusive) of the histogram bucket the TTFT p95 was interpolated in,
    seconds: the true p95 lies above it (and at most at the bucket's upper bound, which the
    p95 never exceeds). Present only where the quantile is computed from the buckets (the
    replay, the live collector's local quantiles); absent when Prometheus computes it."""
    TTFT_P99_BUCKET_LOW = "ttft_p99_bucket_low_s"
    """The same for the TTFT p99. Worked number: vLLM's buckets (..., 1.0, 2.5, ...) and a
    p99 read at 2.2 s give 1.0 here: the true p99 is somewhere in (1.0, 2.5] s."""
    KV_CACHE_USAGE = "kv_cache_usage"
    """KV-cache blocks in use, fraction 0..1, mean over replicas."""
    GPU_UTILIZATION = "gpu_utilization"
    """GPU busy fraction 0..1 (DCGM ``DCGM_FI_DEV_GPU_UTIL`` / 100), mean over replicas."""
    PROMPT_TOKENS_RATE = "prompt_tokens_rate"
    """Prompt (prefill) tokens per second, summed."""
    GENERATION_TOKENS_RATE = "generation_tokens_rate"
    """Generated (decode) tokens per second, summed."""
    ARRIVAL_RATE = "arrival_rate"
    """Requests arriving at a gateway in front of the replicas per second, when the preset
    has such a counter: true demand even while the replicas are overloaded (the engines'
    own counters show served work then)."""


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One observed value and the time of the sample it came from (seconds)."""

    value: float
    observed_at: float


TTFT_BUCKET_LOW: Mapping[Signal, Signal] = MappingProxyType({
    Signal.TTFT_P95: Signal.TTFT_P95_BUCKET_LOW,
    Signal.TTFT_P99: Signal.TTFT_P99_BUCKET_LOW,
})
"""The TTFT percentiles whose bucket is reported, and the signal that carries its lower
bound (``autoscaler.core.histogram.histogram_quantile_buckets``)."""


_NO_BOUNDS: Mapping[str, MetricValue] = MappingProxyType({})
"""The shared, read-only empty default of ``Snapshot.lower_bounds`` (no dict is built per
snapshot: almost every snapshot has none)."""


def _no_bounds() -> Mapping[str, MetricValue]:
    return _NO_BOUNDS


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the autoscaler can see at one decision time.

    A signal that Prometheus did not return is simply absent from ``metrics``; one that
    came back NaN should be left out by the adapter as well. Absent is never zero.
    """

    current_replicas: int
    """The scale target's ``spec.replicas`` (what was last asked for)."""
    ready_replicas: int
    """Replicas that are serving (started and ready)."""
    metrics: Mapping[str, MetricValue] = field(default_factory=dict)
    lower_bounds: Mapping[str, MetricValue] = field(default_factory=_no_bounds)
    """Signals absent from ``metrics`` because they cannot be trusted as the fleet's load,
    but which cannot be *above* it: a sum over pods while fewer pods report than are ready
    (a pod that does not report adds >= 0), or a counter's ``rate()`` over a window its
    series do not fully cover (a new pod, a restart, a counter reset or a late scrape:
    what was not seen is missing from the count, never added). Filled by
    ``autoscaler.observation``; ``autoscaler.core.decide`` acts on them only to scale up
    (reason ``ScaleUpOnLowerBound``), never to hold lower or scale down."""

    def get(self, signal: str, now: float, max_age_s: float) -> float | None:
        """The value of ``signal`` if present, finite and not older than ``max_age_s``."""
        mv = self.metrics.get(signal)
        if mv is None or mv.value != mv.value:  # NaN != NaN
            return None
        if now - mv.observed_at > max_age_s:
            return None
        return mv.value


class Reason(StrEnum):
    """Why a decision came out as it did. The HPA's own condition reasons are reused
    where the meaning is the same, so operators read familiar words."""

    DESIRED_WITHIN_RANGE = "DesiredWithinRange"
    WITHIN_TOLERANCE = "WithinTolerance"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    SCALING_DISABLED = "ScalingDisabled"
    METRICS_MISSING = "MetricsMissing"
    METRICS_STALE = "MetricsStale"
    FORECAST = "Forecast"
    FORECAST_HOLD = "ForecastHold"
    BACKLOG_DRAIN = "BacklogDrain"
    SLO_CORRECTION = "SLOCorrection"
    PANIC = "PanicMode"
    SCALE_DOWN_DELAYED = "ScaleDownDelayed"
    FIXED = "Fixed"
    FORESIGHT = "Foresight"
    FALLBACK = "Fallback"
    """Metrics stayed unusable for ``fallback.failureThreshold`` cycles: the count was raised
    to ``fallback.replicas`` (``autoscaler.core.safety``)."""
    SCALE_UP_ON_LOWER_BOUND = "ScaleUpOnLowerBound"
    """Some signal was partial (fewer pods report than are ready) or its ``rate()`` window
    not yet covered, so the policy ran with those readings as lower bounds of the load
    (``Snapshot.lower_bounds``) and even that asked for more replicas than current: the
    scale-up was taken (``autoscaler.core.decide``). The Kubernetes HPA does the same for a
    scale-up with pods whose metrics are missing."""
    CAPACITY_UNKNOWN = "CapacityUnknown"
    """The spec gives no ``capacity`` and the fleet has not shown its own yet: a scale-down
    was held, or limited to what the fleet has shown it carries (``autoscaler.core.decide``)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one decision step."""

    replicas: int
    """Desired replicas. Equal to the current replicas when ``valid`` is False."""
    reason: Reason
    message: str
    """One human sentence, fit for an Event or a status condition."""
    valid: bool = True
    """False when the inputs were missing or stale: the caller must not scale."""
    recommendation: int | None = None
    """The policy's raw recommendation before behaviour (stabilisation, rate limits, bounds)."""
    forecast_rps: float | None = None
    """The demand (requests/s) the policy planned for, when it forecasts."""
    demand_rps: float | None = None
    """The demand (requests/s) it observed now, when it reads one."""
    forecast_model: str | None = None
    """The forecasting model that set ``forecast_rps`` (``trend``, ``auto->profile``, or
    ``trend (fallback)`` while a named forecaster still lacks history), when it forecasts."""
    capacity_rps: float | None = None
    """Learned capacity of one replica at the SLO in requests/s (at the mix it was learned
    on), when the policy learns capacity."""
    capacity_unit: str | None = None
    """The unit that binds the plan: ``prompt_tokens_per_s``, ``generation_tokens_per_s``
    or ``requests_per_s``."""
    capacity_per_replica: float | None = None
    """Learned capacity of one replica at the SLO in ``capacity_unit``."""
    capacity_uncertainty: float | None = None
    """Relative standard deviation of the learned capacity (0.1 = +-10 %)."""


class PolicyState:
    """Base of the per-policy immutable state (KPA windows, forecaster history, ...).

    Subclasses are frozen dataclasses defined next to their policy.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class State:
    """Everything the core remembers between steps; returned anew by every step."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, replicas) of past raw recommendations, for stabilisation windows."""
    scale_up_events: tuple[tuple[float, int], ...] = ()
    """(time, replicas added) of past scale-ups, for rate-limit periods."""
    scale_down_events: tuple[tuple[float, int], ...] = ()
    """(time, replicas removed) of past scale-downs, for rate-limit periods."""
    policy: PolicyState | None = None
