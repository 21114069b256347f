"""One control cycle's metrics for every target, in a constant number of queries.

Each signal of the preset is one PromQL query aggregated ``by`` the target labels, so the
answer carries every target at once. Two more queries read the pods' own series of the
counter the preset rates: their raw samples over the rate window and half a window before
it (``counter{sel}[1.5 x window]``, a range vector: each target's newest sample, how much of
the window the series cover, since a window not yet covered after a restart, a gap or a
counter reset reads too low, and the sample before the window that shows a reset at its
start), and their instant count per target (pods reporting: a pod whose scrape failed is
dropped from it at once).
vLLM: 10 queries a cycle (8 signal queries, the TTFT quantiles sharing one, plus these
two) for any number of targets, as before.

The answers are raw readings; ``autoscaler.observation.judge`` applies every rule about
what cannot be trusted (the same code the replay runs), and ``Observation.snapshot()``
turns the trusted values into the core's ``Snapshot``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from autoscaler.core.histogram import histogram_quantile_buckets
from autoscaler.core.types import TTFT_BUCKET_LOW, Signal
from autoscaler.errors import SpecError, TransientError
from autoscaler.metrics.presets import Preset, render, split_quantile
from autoscaler.metrics.rules import plan_recorded
from autoscaler.metrics.source import MetricsSource
from autoscaler.observation import (
    SUMMED_SIGNALS,
    WINDOWED_SIGNALS,
    Observation,
    RawTarget,
    SignalReading,
    Status,
    WindowSeries,
    judge,
)

__all__ = [
    "SUMMED_SIGNALS", "Collector", "CollectorConfig", "CycleResult", "Observation",
    "SignalReading", "Status", "TargetKey", "plan_queries", "rate_selector",
]

_RATE_SELECTOR = re.compile(
    r"\b(?:rate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*\s*\{[^}]*\})\s*\[")


def rate_selector(promql: str) -> str | None:
    """The first counter selector a query takes a ``rate()`` (or ``increase()``) of, e.g.
    ``vllm:time_to_first_token_seconds_count{namespace="a"}``; None if there is none."""
    m = _RATE_SELECTOR.search(promql)
    return m.group(1) if m else None


SERIES_RANGE_FACTOR = 1.5
"""The counter's raw samples are read over this many rate windows (``series_range``)."""


def _window_seconds(window: str) -> float:
    """PromQL duration (``1m``, ``90s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
             "y": 31536000.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", window)
    if not parts or "".join(n + u for n, u in parts) != window.strip():
        raise SpecError("metrics.window", window, "a PromQL duration such as 1m or 90s")
    return sum(float(n) * units[u] for n, u in parts)


@dataclass(frozen=True, slots=True, order=True)
class TargetKey:
    """A workload as Prometheus labels it: namespace and workload name."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> TargetKey:
        ns, sep, name = text.partition("/")
        if not sep or not ns or not name or "/" in name:
            raise SpecError("target", text, "NAMESPACE/NAME")
        return cls(ns, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """What to ask Prometheus. Defaults live here."""

    preset: Preset
    selector: str = ""
    """Extra label matchers for every query, e.g. ``namespace=~"llm-.*"``."""
    namespace_label: str = "namespace"
    workload_label: str = "workload"
    """The label naming the workload (set by relabelling, e.g. from
    ``app.kubernetes.io/name``)."""
    window: str = "1m"
    """``rate()`` range. At least 4 scrape intervals, so a missed scrape still leaves 2+
    samples (15 s scrapes: 1m)."""
    max_age_s: float = 60.0
    """A target whose newest sample is older than this is stale (seconds)."""
    signals: tuple[Signal, ...] | None = None
    """Signals to query; None = every signal the preset has."""
    recorded: bool = False
    """Read the recording rules ``recording_rules()`` generates (``autoscaler metrics
    rules``) instead of aggregating raw series each cycle: needed at ~1,000 targets."""

    def __post_init__(self) -> None:
        if self.max_age_s <= 0:
            raise SpecError("metrics.maxAgeSeconds", self.max_age_s, "> 0")
        if self.signals is not None:
            unknown = [s for s in self.signals if s not in self.preset.queries]
            if unknown:
                raise SpecError("metrics.signals", ", ".join(unknown),
                                f"signals of preset {self.preset.name}: "
                                f"{', '.join(self.preset.queries)}")

    @property
    def by(self) -> str:
        return f"{self.namespace_label}, {self.workload_label}"

    def wanted(self) -> tuple[Signal, ...]:
        return self.signals if self.signals is not None else tuple(self.preset.queries)

    def promql(self, signal: Signal) -> str:
        for quantile, low in TTFT_BUCKET_LOW.items():
            if signal == low and signal not in self.preset.queries:
                # Derived with its quantile from the same buckets (``_quantiles``).
                return f"lower bound of the bucket of: {self.promql(quantile)}"
        return render(self.preset.queries[signal], sel=self.selector, by=self.by,
                      window=self.window)

    def plan(self) -> tuple[dict[Signal, str], dict[str, list[tuple[Signal, float]]]]:
        """The queries one cycle sends: plain ones, and histogram inner expressions whose
        quantiles are derived locally (both reading recorded series when ``recorded``)."""
        plain, quantiles = plan_queries({s: self.promql(s) for s in self.wanted()})
        if not self.recorded:
            return plain, quantiles
        _, plain_q, quant_q = plan_recorded(self.preset.name, plain, quantiles)
        return plain_q, quant_q

    def recording_rules(self) -> list[dict[str, str]]:
        """Prometheus recording rules for this configuration (see ``metrics.rules``)."""
        plain, quantiles = plan_queries({s: self.promql(s) for s in self.wanted()})
        return plan_recorded(self.preset.name, plain, quantiles)[0]

    @property
    def window_s(self) -> float:
        return _window_seconds(self.window)

    @property
    def series_range(self) -> str:
        """The range of the counter's raw samples: the rate window and half a window more
        (two scrape intervals at least, the window being four or more), so each series'
        last sample before the window comes back too. A counter reset between it and the
        window's first sample is then seen (the observation rules need it) in the same one
        query: 1m -> 90s."""
        ms = round(self.window_s * SERIES_RANGE_FACTOR * 1000)
        return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"

    def series_queries(self) -> tuple[str, str, bool]:
        """The range-vector query of every pod's series over the window, the instant count
        of the same series per target (a pod whose scrape just failed is dropped from it at
        once), and whether the series is a counter. The series are the request-rate
        counter's when the preset rates one (its values tell a new pod, counting from zero,
        from a restart that lost samples); else the first rated counter's; else the liveness
        gauge's (then only times are judged)."""
        order = [Signal.REQUEST_RATE, *sorted(WINDOWED_SIGNALS - {Signal.REQUEST_RATE})]
        for signal in order:
            if signal in self.preset.queries:
                found = rate_selector(self.promql(signal))
                if found is not None:
                    return (f"{found}[{self.series_range}]",
                            f"count by ({self.by}) ({found})", True)
        gauge = f"{self.preset.liveness_metric}{{{self.selector}}}"
        return f"{gauge}[{self.window}]", f"count by ({self.by}) ({gauge})", False


def plan_queries(promql: Mapping[Signal, str]
                 ) -> tuple[dict[Signal, str], dict[str, list[tuple[Signal, float]]]]:
    """Split rendered queries into those sent as they are and quantiles of a shared inner
    expression: ``histogram_quantile(0.5, X)`` and ``histogram_quantile(0.95, X)`` become one
    query of ``X`` and two local quantiles. Anything else (``histogram_quantile(...) /
    1000``, a custom expression) is sent as written (``presets.split_quantile``)."""
    plain: dict[Signal, str] = {}
    quantiles: dict[str, list[tuple[Signal, float]]] = {}
    for signal, text in promql.items():
        split = split_quantile(text)
        if split is not None:
            q, inner = split
            quantiles.setdefault(inner, []).append((signal, q))
        else:
            plain[signal] = text
    return plain, quantiles


@dataclass(frozen=True, slots=True)
class CycleResult:
    """One cycle: per-target observations plus what it cost."""

    at: float
    observations: Mapping[TargetKey, Observation]
    queries: int
    wall_s: float
    errors: Mapping[str, str] = field(default_factory=dict)
    """Query (or "liveness") -> why it failed this cycle."""


class Collector:
    """Builds every target's observation from one round of grouped queries."""

    def __init__(self, source: MetricsSource, config: CollectorConfig, *,
                 parallelism: int = 4) -> None:
        self.source = source
        self.config = config
        self.parallelism = parallelism
        """Queries in flight at once (the source must be thread-safe, as a requests
        session is for concurrent GETs)."""

    def _key(self, labels: Mapping[str, str]) -> TargetKey | None:
        ns = labels.get(self.config.namespace_label)
        name = labels.get(self.config.workload_label)
        return TargetKey(ns, name) if ns and name else None

    def _by_target(self, promql: str, at: float) -> dict[TargetKey, tuple[float, float]]:
        out: dict[TargetKey, tuple[float, float]] = {}
        for sample in self.source.query(promql, at):
            key = self._key(sample.labels)
            if key is not None:
                out[key] = (sample.time, sample.value)
        return out

    def _series(self, promql: str, counter: bool, at: float,
                only: frozenset[TargetKey] | None = None) -> dict[TargetKey, WindowSeries]:
        grouped: dict[TargetKey, list[tuple[tuple[float, float], ...]]] = {}
        for series in self.source.query_series(promql, at):
            key = self._key(series.labels)
            if key is not None and (only is None or key in only):
                grouped.setdefault(key, []).append(series.points)
        since = at - self.config.window_s
        return {key: WindowSeries.from_samples(rows, counter=counter, since=since)
                for key, rows in grouped.items()}

    def collect(self, at: float, targets: Iterable[TargetKey] | None = None, *,
                only: bool = False) -> CycleResult:
        """Query every signal once at time ``at`` (Unix seconds).

        The result holds every target Prometheus returned, plus each of ``targets`` (those
        the caller manages) even when Prometheus has nothing for it: its readings then say
        why (``missing``, or ``error`` while Prometheus is down). With ``only``, it holds
        ``targets`` alone: the queries still answer for every target (one round for all),
        but the others are not judged. The controller asks for the autoscalers due this
        tick: 1,000 at a 15-s sync and a 5-s tick are due a third at a time, and judging
        the other two thirds was a tenth of its CPU.
        A bad query raises ``QueryError`` (a spec error: the same every cycle); a failing
        Prometheus marks the signal ``error`` for every target and carries on.
        """
        t0 = time.perf_counter()
        cfg = self.config
        errors: dict[str, str] = {}
        queries = 0
        only_keys = frozenset(targets or ()) if only else None
        series_q, present_q, counter = cfg.series_queries()
        series: dict[TargetKey, WindowSeries] = {}
        present: dict[TargetKey, tuple[float, float]] = {}
        values: dict[Signal, dict[TargetKey, tuple[float, float]] | None] = {}
        failed: dict[Signal, str] = {}
        down: str | None = None
        plain, quantiles = cfg.plan()
        # The queries of one cycle run concurrently: Prometheus evaluates them in parallel
        # (20 at a time by default), and their JSON encoding, transfer and decoding overlap.
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            queries += 2
            try:
                series_f = pool.submit(self._series, series_q, counter, at, only_keys)
                present_f = pool.submit(self._by_target, present_q, at)
                series, present = series_f.result(), present_f.result()
            except TransientError as exc:
                # Prometheus just failed us: one error for the cycle, not one timeout per
                # signal (10 signals x 5 s timeouts would stall the loop for a minute).
                down = f"Prometheus failed this cycle: {exc}"
                errors["liveness"] = str(exc)
            if down is None:
                plain_f = {s: pool.submit(self._by_target, q, at) for s, q in plain.items()}
                quant_f = {inner: pool.submit(self._quantiles, inner, qs, at, only_keys)
                           for inner, qs in quantiles.items()}
                queries += len(plain_f) + len(quant_f)
                for signal, fut in plain_f.items():
                    try:
                        values[signal] = fut.result()
                    except TransientError as exc:
                        values[signal] = None
                        failed[signal] = errors[signal.value] = str(exc)
                for inner, qfut in quant_f.items():
                    try:
                        values.update(qfut.result())
                    except TransientError as exc:
                        # The bucket bounds go with their quantile: absent (no reading).
                        for signal, _ in quantiles[inner]:
                            values[signal] = None
                            failed[signal] = errors[signal.value] = str(exc)
            else:
                values = {s: None for s in plain}
                values.update({s: None for wanted in quantiles.values() for s, _ in wanted})
        keys = (set(only_keys) if only_keys is not None else
                set(targets or ()) | set(series) | {k for v in values.values() if v for k in v})
        window_s = cfg.window_s
        observations = {}
        for key in keys:
            raw = RawTarget(
                at=at, window_s=window_s,
                values={s: (v[key][1] if key in v else None) if v is not None else None
                        for s, v in values.items()},
                series=None if down is not None else series.get(key, WindowSeries()),
                present=int(present[key][1]) if key in present else 0,
                failed=failed, down=down)
            observations[key] = judge(raw, cfg.max_age_s)
        return CycleResult(at=at, observations=observations, queries=queries,
                           wall_s=time.perf_counter() - t0, errors=errors)

    def _quantiles(self, inner: str, wanted: list[tuple[Signal, float]], at: float,
                   only: frozenset[TargetKey] | None = None
                   ) -> dict[Signal, dict[TargetKey, tuple[float, float]]]:
        """Every quantile of one histogram from a single query of its per-target bucket
        rates. At 1,000 targets x 3 pods x 23 buckets one such query costs Prometheus about
        as much as one ``histogram_quantile`` (~1.3 s here), so p50, p95 and p99 together
        cost a third of three queries."""
        buckets: dict[TargetKey, dict[float, float]] = {}
        stamp: dict[TargetKey, float] = {}
        for sample in self.source.query(inner, at):
            key = self._key(sample.labels)
            le = sample.labels.get("le")
            if key is None or le is None or (only is not None and key not in only):
                continue
            try:
                bound = float(le)  # "+Inf" parses to inf
            except ValueError:
                continue
            buckets.setdefault(key, {})[bound] = sample.value
            stamp[key] = sample.time
        # A TTFT percentile also reports the lower bound of the bucket it fell in
        # (``Signal.TTFT_P99_BUCKET_LOW``): the true percentile lies above it.
        lows = [(s, TTFT_BUCKET_LOW[s]) for s, _ in wanted if s in TTFT_BUCKET_LOW]
        out: dict[Signal, dict[TargetKey, tuple[float, float]]] = {
            s: {} for s in (*(s for s, _ in wanted), *(low for _, low in lows))}
        qs = [q for _, q in wanted]
        for key, by_le in buckets.items():
            bounds = sorted(b for b in by_le if math.isfinite(b))
            if math.inf not in by_le or not bounds:
                continue  # Prometheus answers nothing for a histogram without +Inf
            cumulative = [by_le[b] for b in bounds] + [by_le[math.inf]]
            at = stamp[key]
            for (signal, _), (value, low, _) in zip(
                    wanted, histogram_quantile_buckets(qs, bounds, cumulative), strict=True):
                out[signal][key] = (at, value)
                if signal in TTFT_BUCKET_LOW:
                    out[TTFT_BUCKET_LOW[signal]][key] = (at, low)
        return out
