"""The controller's own limits: every deadline, timeout and cap it enforces, with units.

Each is a flag of ``autoscaler controller`` (named next to it); docs/faults.md says what a
fault does within these limits and how long noticing and recovering takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.errors import SpecError


@dataclass(frozen=True, slots=True)
class Limits:
    api_timeout_s: float = 5.0
    """Deadline of one Kubernetes API call, seconds, connect + read, with no hidden retries
    (``--api-timeout``). The kubernetes client's urllib3 pool retried 3 times on top: a hung
    API server cost 4 x 10 s per call. Below the renew deadline (10 s at a 15-s lease), so a
    renew that hangs fails before the leader must step down."""
    prometheus_timeout_s: float = 5.0
    """Deadline of one Prometheus query, seconds (``--prometheus-timeout``). Connection
    errors and 429/502/503/504 are retried within it; a read that times out is not
    retried (a hung Prometheus would cost this deadline again per retry)."""
    source_deadline_s: float = 6.0
    """How long one cycle waits for a metrics source's round of queries, seconds
    (``--source-deadline``): a source not done by then is *missing* for this cycle (the
    core holds). Sources are queried concurrently, so a cycle with three hung sources waits
    this long once, not three times. Its queries keep running in the background, bounded by
    ``prometheus_timeout_s``; a source still in flight is not queried again."""
    cycle_deadline_s: float = 20.0
    """Wall-clock budget of one cycle, seconds (``--cycle-deadline``): autoscalers not yet
    reconciled when it runs out stay due and go first next cycle. Below the liveness
    threshold (30 s), so a slow but progressing loop is never restarted by the kubelet."""
    source_backoff_s: float = 5.0
    """First back-off of a failing metrics source, seconds (``--source-backoff``); it
    doubles per consecutive failure up to the caps below, and resets on success."""
    source_backoff_max_transient_s: float = 40.0
    """Back-off cap for a source failing transiently (Prometheus down or slow), seconds:
    a recovered Prometheus is read again within this long."""
    source_backoff_max_spec_s: float = 320.0
    """Back-off cap for a source whose PromQL Prometheus rejects, seconds: such a query
    fails the same way until someone edits the spec (an edit resets the back-off)."""
    competitor_ttl_s: float = 60.0
    """How long a namespace's list of HPAs and KEDA ScaledObjects is reused, seconds: a
    competing autoscaler created later is noticed within this long."""
    liveness_s: float = 30.0
    """``/healthz`` fails when the loop has made no progress for this long, seconds."""

    def __post_init__(self) -> None:
        for name in ("api_timeout_s", "prometheus_timeout_s", "source_deadline_s",
                     "cycle_deadline_s", "source_backoff_s", "competitor_ttl_s",
                     "liveness_s"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise SpecError(f"--{name.removesuffix('_s').replace('_', '-')}", value,
                                "0 < seconds <= 3600")
        if self.cycle_deadline_s >= self.liveness_s:
            raise SpecError("--cycle-deadline", self.cycle_deadline_s,
                            f"< the liveness threshold ({self.liveness_s:g} s)")


@dataclass(frozen=True, slots=True)
class ServingLimits:
    """The external metrics server's limits (``--external-metrics-*`` flags)."""

    header_timeout_s: float = 10.0
    """A connection must complete its TLS handshake and send a request's complete headers
    within this long of connecting (or of its previous response), seconds, or it is closed:
    a slowloris client holds a connection at most this long."""
    max_connections: int = 256
    """Open connections served at once; more are closed on arrival. The aggregator keeps a
    handful of keep-alive connections, so 256 is ample and bounds the memory a flood of
    connections can take."""

    def __post_init__(self) -> None:
        if not 0 < self.header_timeout_s <= 600:
            raise SpecError("--external-metrics-header-timeout", self.header_timeout_s,
                            "0 < seconds <= 600")
        if not 1 <= self.max_connections <= 100_000:
            raise SpecError("--external-metrics-max-connections", self.max_connections,
                            "1..100000")
