"""An in-memory Prometheus that answers by meaning: metric names and label matchers.

It holds raw per-pod series ``(metric, labels, [(t, value), ...])`` and evaluates the few
query shapes the collector and the backfill send, by parsing them:

* ``metric{matchers}[window]`` (an instant query of a range vector): the raw samples;
* ``AGG by (labels) (metric{matchers})`` and ``AGG by (labels) (rate(metric{m}[window]))``
  with AGG one of sum, avg, max, count; ``A + B`` of such terms;
* the same as range queries (evaluated at every step).

Anything else answers with no series, the way Prometheus answers a metric it does not
have. Ranges are left-open, ``(t - window, t]`` (Prometheus 3).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from autoscaler.metrics.source import RangeSeries, Sample

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_DURATION = re.compile(r"(\d+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_TERM = re.compile(
    r"^\s*(sum|avg|max|count)\s+by\s*\(([^)]*)\)\s*\(\s*(rate\(\s*)?"
    r"([a-zA-Z_:][a-zA-Z0-9_:]*\s*\{[^}]*\})\s*(?:\[([0-9a-z]+)\]\s*\))?\s*\)\s*$")
_RANGE_VECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*\s*\{[^}]*\})\s*\[([0-9a-z]+)\]\s*$")


def seconds(duration: str) -> float:
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(duration))


def parse_selector(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """``name{a="x",b=~"y"}`` -> ("name", [("a", "=", "x"), ("b", "=~", "y")])."""
    m = _SELECTOR.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a selector: {text!r}")
    matchers = [(k, op, v) for k, op, v in _MATCHER.findall(m.group(2))]
    return m.group(1), matchers


def _matches(labels: Mapping[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for key, op, want in matchers:
        have = labels.get(key, "")
        ok = {"=": have == want, "!=": have != want,
              "=~": re.fullmatch(want, have) is not None,
              "!~": re.fullmatch(want, have) is None}[op]
        if not ok:
            return False
    return True


def _rate(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    inc = 0.0
    for (_, a), (_, b) in itertools.pairwise(points):
        inc += b - a if b >= a else b
    span = points[-1][0] - points[0][0]
    return inc / span if span > 0 else None


@dataclass
class Series:
    metric: str
    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class MeaningPrometheus:
    """The fake. ``series`` is what it stores; ``calls`` counts queries by kind."""

    series: list[Series] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=lambda: {"query": 0, "query_series": 0,
                                                           "query_range": 0})
    up: bool = True
    on_call: Callable[[str], None] | None = None

    def add(self, metric: str, labels: Mapping[str, str],
            points: list[tuple[float, float]]) -> None:
        self.series.append(Series(metric, dict(labels), sorted(points)))

    def _select(self, selector: str) -> list[Series]:
        name, matchers = parse_selector(selector)
        return [s for s in self.series if s.metric == name and _matches(s.labels, matchers)]

    def _count(self, kind: str) -> None:
        self.calls[kind] += 1
        if self.on_call is not None:
            self.on_call(kind)
        if not self.up:
            from autoscaler.metrics.source import PrometheusUnavailable

            raise PrometheusUnavailable("connection refused")

    def _term(self, text: str, at: float) -> dict[tuple[tuple[str, str], ...], float]:
        m = _TERM.match(text)
        if m is None:
            return {}
        agg, by, is_rate, selector, window = m.groups()
        keys = [k.strip() for k in by.split(",") if k.strip()]
        groups: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for s in self._select(selector):
            if is_rate:
                w = seconds(window or "1m")
                value = _rate([(t, v) for t, v in s.points if at - w < t <= at])
            else:
                recent = [(t, v) for t, v in s.points if at - 300.0 < t <= at]
                value = recent[-1][1] if recent else None
            if value is None:
                continue
            groups.setdefault(tuple((k, s.labels.get(k, "")) for k in keys), []).append(value)
        reduce: dict[str, Callable[[list[float]], float]] = {
            "sum": sum, "max": max, "count": lambda v: float(len(v)),
            "avg": lambda v: sum(v) / len(v)}
        return {k: reduce[agg](v) for k, v in groups.items()}

    def _evaluate(self, promql: str, at: float) -> dict[tuple[tuple[str, str], ...], float]:
        terms = [self._term(part, at) for part in promql.split(" + ")]
        if not terms or any(not t for t in terms):
            return {}
        keys = set(terms[0]).intersection(*terms[1:])
        return {k: math.fsum(t[k] for t in terms) for k in keys}

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self._count("query")
        t = 0.0 if at is None else at
        return [Sample(dict(k), t, v) for k, v in self._evaluate(promql, t).items()]

    def query_series(self, promql: str, at: float | None = None) -> list[RangeSeries]:
        self._count("query_series")
        m = _RANGE_VECTOR.match(promql)
        if m is None or at is None:
            return []
        w = seconds(m.group(2))
        out = []
        for s in self._select(m.group(1)):
            pts = tuple((t, v) for t, v in s.points if at - w < t <= at)
            if pts:
                out.append(RangeSeries({"__name__": s.metric, **s.labels}, pts))
        return out

    def query_range(self, promql: str, start: float, end: float,
                    step_s: float) -> list[RangeSeries]:
        self._count("query_range")
        rows: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        n = math.floor((end - start) / step_s + 1e-9)
        for i in range(n + 1):
            t = start + i * step_s
            for k, v in self._evaluate(promql, t).items():
                rows.setdefault(k, []).append((t, v))
        return [RangeSeries(dict(k), tuple(p)) for k, p in rows.items()]
