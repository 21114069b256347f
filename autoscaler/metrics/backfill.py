"""History backfill: the request rate of every target over a past window, in few queries.

One range query of the preset's REQUEST_RATE PromQL answers for all targets at once, so
autoscalers seen for the first time are warmed together (``backfill_many``): 40 new
autoscalers sharing a metrics source cost one round of range queries, not 40.
Prometheus refuses a range query of more than 11,000 points per series, so a long window is
split into chunks of at most ``MAX_POINTS`` steps (28 days at 15 s = 161,280 points = 15
queries, whatever the number of targets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoscaler.core.types import Signal
from autoscaler.errors import SpecError
from autoscaler.metrics.collect import CollectorConfig, TargetKey
from autoscaler.metrics.source import MetricsSource

MAX_POINTS = 11_000
"""Prometheus' limit on points per series in one range query."""


def backfill(source: MetricsSource, config: CollectorConfig, start: float, end: float,
             step_s: float, targets: Iterable[TargetKey] | None = None, *,
             max_points: int = MAX_POINTS) -> dict[TargetKey, list[tuple[float, float]]]:
    """``(time, requests/s)`` per target over [start, end] every ``step_s`` seconds.

    Times without a value (the target was down, or Prometheus has no data) are absent, not
    zero. ``targets`` limits the result; None keeps every target Prometheus knows.
    """
    if Signal.REQUEST_RATE not in config.preset.queries:
        raise SpecError("metrics.preset", config.preset.name,
                        "a preset with a request_rate query (backfill needs it)")
    if step_s <= 0 or end < start:
        raise SpecError("backfill", f"[{start}, {end}] step {step_s}",
                        "start <= end and step > 0")
    wanted = set(targets) if targets is not None else None
    promql = config.promql(Signal.REQUEST_RATE)
    out: dict[TargetKey, list[tuple[float, float]]] = {}
    chunk_s = step_s * (max_points - 1)
    t0 = start
    while t0 <= end:
        # Chunks [t0, t1] then [t1 + step, ...]: each point is asked for exactly once.
        t1 = min(end, t0 + chunk_s)
        for series in source.query_range(promql, t0, t1, step_s):
            ns = series.labels.get(config.namespace_label)
            name = series.labels.get(config.workload_label)
            if not ns or not name:
                continue
            key = TargetKey(ns, name)
            if wanted is not None and key not in wanted:
                continue
            out.setdefault(key, []).extend(
                (t, v) for t, v in series.points if math.isfinite(v))
        t0 = t1 + step_s
    for points in out.values():
        points.sort()
    return out


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """One target's wanted history: ``span_s`` seconds up to ``now - step_s``, every
    ``step_s`` seconds (its decision period)."""

    target: TargetKey
    span_s: float
    step_s: float


def backfill_many(source: MetricsSource, config: CollectorConfig,
                  requests: Sequence[HistoryRequest], now: float, *,
                  max_points: int = MAX_POINTS) -> dict[TargetKey, list[tuple[float, float]]]:
    """Every request's history from one round of range queries per distinct step.

    The round covers the longest span asked for at that step; each target then keeps its
    own span. 40 autoscalers with a 15-s period and 30 minutes of history: one query
    (120 points), where one ``backfill`` per autoscaler sent 40.
    """
    out: dict[TargetKey, list[tuple[float, float]]] = {}
    by_step: dict[float, list[HistoryRequest]] = {}
    for r in requests:
        if r.span_s > 0:
            by_step.setdefault(r.step_s, []).append(r)
    for step, group in sorted(by_step.items()):
        longest = max(r.span_s for r in group)
        got = backfill(source, config, now - longest, now - step, step,
                       {r.target for r in group}, max_points=max_points)
        for r in group:
            since = now - r.span_s
            out[r.target] = [(t, v) for t, v in got.get(r.target, []) if t >= since]
    return out
