"""One control cycle's metrics for every target, in a constant number of queries.

Each signal of the preset is one PromQL query aggregated ``by`` the target labels, so the
answer carries every target at once; two more queries on the preset's liveness gauge give
each target's newest sample time (staleness) and the number of pods reporting (partial
results). 1,000 targets x 10 signals is 12 queries a cycle, not 10,000.

What cannot be trusted is *marked*, never read as zero load:

* ``missing``: the query returned no series for the target (not exported, or the target
  vanished);
* ``nan``: the value is NaN or infinite (``histogram_quantile`` of an empty window);
* ``stale``: the target's newest sample is older than ``max_age_s``;
* ``partial``: fewer pods report than are ready, so a *sum* over pods undercounts the load
  (an average or a quantile over the reporting pods is still kept);
* ``error``: the query failed (Prometheus down or slow); ``CycleResult.errors`` says why.

``Observation.snapshot()`` turns the trusted values into the core's ``Snapshot``. A signal
that is not trusted is left out, and the core then holds rather than scaling down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from autoscaler.core.histogram import histogram_quantile
from autoscaler.core.types import MetricValue, Signal, Snapshot
from autoscaler.errors import SpecError, TransientError
from autoscaler.metrics.presets import Preset, render
from autoscaler.metrics.rules import plan_recorded
from autoscaler.metrics.source import MetricsSource

SUMMED_SIGNALS = frozenset({
    Signal.REQUEST_RATE, Signal.QUEUE_DEPTH, Signal.RUNNING, Signal.CONCURRENCY,
    Signal.PROMPT_TOKENS_RATE, Signal.GENERATION_TOKENS_RATE,
})
"""Signals that are sums over pods: a missing pod makes them too low, so partial => untrusted."""


class Status(StrEnum):
    OK = "ok"
    MISSING = "missing"
    NAN = "nan"
    STALE = "stale"
    PARTIAL = "partial"
    ERROR = "error"


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
class SignalReading:
    """What one signal of one target looked like this cycle, and why it is (not) used."""

    status: Status
    value: float | None = None
    observed_at: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything one cycle learned about one target."""

    target: TargetKey
    readings: Mapping[Signal, SignalReading]
    newest_sample: float | None
    """Time of the target's newest liveness sample (None: no pod reports at all)."""
    pods_reporting: int

    def judged(self, ready_replicas: int | None = None) -> dict[Signal, SignalReading]:
        """The readings, with sums marked ``partial`` when fewer pods report than the
        scale target says are ready (e.g. 3 of 4 pods scraped: a queue of 30 may be 40)."""
        if ready_replicas is None or self.pods_reporting >= ready_replicas:
            return dict(self.readings)
        why = f"{self.pods_reporting} of {ready_replicas} ready pods report"
        return {s: (SignalReading(Status.PARTIAL, r.value, r.observed_at, why)
                    if s in SUMMED_SIGNALS and r.status is Status.OK else r)
                for s, r in self.readings.items()}

    def snapshot(self, current_replicas: int, ready_replicas: int) -> Snapshot:
        """The core's input: only trusted (``ok``) values; everything else is absent, so
        the core holds instead of reading it as zero."""
        metrics = {s.value: MetricValue(r.value, r.observed_at)
                   for s, r in self.judged(ready_replicas).items()
                   if r.status is Status.OK and r.value is not None and r.observed_at is not None}
        return Snapshot(current_replicas=current_replicas, ready_replicas=ready_replicas,
                        metrics=metrics)


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

    def liveness_queries(self) -> tuple[str, str]:
        m = f"{self.preset.liveness_metric}{{{self.selector}}}"
        return (f"max by ({self.by}) (timestamp({m}))", f"count by ({self.by}) ({m})")


_QUANTILE_PREFIX = "histogram_quantile("


def plan_queries(promql: Mapping[Signal, str]
                 ) -> tuple[dict[Signal, str], dict[str, list[tuple[Signal, float]]]]:
    """Split rendered queries into those sent as they are and quantiles of a shared inner
    expression: ``histogram_quantile(0.5, X)`` and ``histogram_quantile(0.95, X)`` become one
    query of ``X`` and two local quantiles. Anything else (``histogram_quantile(...) /
    1000``, a custom expression) is sent as written."""
    plain: dict[Signal, str] = {}
    quantiles: dict[str, list[tuple[Signal, float]]] = {}
    for signal, text in promql.items():
        stripped = text.strip()
        head, sep, rest = stripped.removeprefix(_QUANTILE_PREFIX).partition(",")
        inner = rest.strip()[:-1].strip() if stripped.endswith(")") else ""
        try:
            q = float(head)
        except ValueError:
            q = math.nan
        if (stripped.startswith(_QUANTILE_PREFIX) and sep and inner and 0 <= q <= 1
                and _balanced(inner)):
            quantiles.setdefault(inner, []).append((signal, q))
        else:
            plain[signal] = text
    return plain, quantiles


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


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

    def collect(self, at: float, targets: Iterable[TargetKey] | None = None) -> CycleResult:
        """Query every signal once at time ``at`` (Unix seconds).

        The result holds every target Prometheus returned, plus each of ``targets`` (those
        the caller manages) even when Prometheus has nothing for it: its readings then say
        why (``missing``, or ``error`` while Prometheus is down).
        A bad query raises ``QueryError`` (a spec error: the same every cycle); a failing
        Prometheus marks the signal ``error`` for every target and carries on.
        """
        t0 = time.perf_counter()
        cfg = self.config
        errors: dict[str, str] = {}
        queries = 0
        newest_q, count_q = cfg.liveness_queries()
        newest: dict[TargetKey, tuple[float, float]] = {}
        counts: dict[TargetKey, tuple[float, float]] = {}
        values: dict[Signal, dict[TargetKey, tuple[float, float]] | None] = {}
        plain, quantiles = cfg.plan()
        # The queries of one cycle run concurrently: Prometheus evaluates them in parallel
        # (20 at a time by default), and their JSON encoding, transfer and decoding overlap.
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            live = [pool.submit(self._by_target, q, at) for q in (newest_q, count_q)]
            queries += 2
            try:
                newest, counts = live[0].result(), live[1].result()
                liveness_ok = True
            except TransientError as exc:
                # Prometheus just failed us: one error for the cycle, not one timeout per
                # signal (10 signals x 5 s timeouts would stall the loop for a minute).
                liveness_ok = False
                errors["liveness"] = str(exc)
            if liveness_ok:
                plain_f = {s: pool.submit(self._by_target, q, at) for s, q in plain.items()}
                quant_f = {inner: pool.submit(self._quantiles, inner, wanted, at)
                           for inner, wanted in quantiles.items()}
                queries += len(plain_f) + len(quant_f)
                for signal, fut in plain_f.items():
                    try:
                        values[signal] = fut.result()
                    except TransientError as exc:
                        values[signal] = None
                        errors[signal.value] = str(exc)
                for inner, qfut in quant_f.items():
                    try:
                        values.update(qfut.result())
                    except TransientError as exc:
                        for signal, _ in quantiles[inner]:
                            values[signal] = None
                            errors[signal.value] = str(exc)
            else:
                values = {s: None for s in plain}
                values.update({s: None for wanted in quantiles.values() for s, _ in wanted})
        keys = set(targets or ()) | set(newest) | {k for v in values.values() if v for k in v}
        observations = {
            key: self._observe(key, at, newest.get(key), counts.get(key), values, liveness_ok)
            for key in keys}
        return CycleResult(at=at, observations=observations, queries=queries,
                           wall_s=time.perf_counter() - t0, errors=errors)

    def _quantiles(self, inner: str, wanted: list[tuple[Signal, float]], at: float
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
            if key is None or le is None:
                continue
            try:
                bound = float(le)  # "+Inf" parses to inf
            except ValueError:
                continue
            buckets.setdefault(key, {})[bound] = sample.value
            stamp[key] = sample.time
        out: dict[Signal, dict[TargetKey, tuple[float, float]]] = {s: {} for s, _ in wanted}
        for key, by_le in buckets.items():
            bounds = sorted(b for b in by_le if math.isfinite(b))
            if math.inf not in by_le or not bounds:
                continue  # Prometheus answers nothing for a histogram without +Inf
            cumulative = [by_le[b] for b in bounds] + [by_le[math.inf]]
            for signal, q in wanted:
                out[signal][key] = (stamp[key], histogram_quantile(q, bounds, cumulative))
        return out

    def _observe(self, key: TargetKey, at: float, newest: tuple[float, float] | None,
                 count: tuple[float, float] | None,
                 values: Mapping[Signal, Mapping[TargetKey, tuple[float, float]] | None],
                 liveness_ok: bool) -> Observation:
        sample_t = newest[1] if newest is not None and math.isfinite(newest[1]) else None
        pods = int(count[1]) if count is not None and math.isfinite(count[1]) else 0
        readings: dict[Signal, SignalReading] = {}
        for signal, by_target in values.items():
            readings[signal] = self._reading(signal, key, at, sample_t, by_target, liveness_ok)
        return Observation(target=key, readings=readings, newest_sample=sample_t,
                           pods_reporting=pods)

    def _reading(self, signal: Signal, key: TargetKey, at: float, sample_t: float | None,
                 by_target: Mapping[TargetKey, tuple[float, float]] | None,
                 liveness_ok: bool) -> SignalReading:
        cfg = self.config
        if not liveness_ok:
            return SignalReading(Status.ERROR, detail="Prometheus failed this cycle")
        if by_target is None:
            return SignalReading(Status.ERROR, detail="this signal's query failed this cycle")
        hit = by_target.get(key)
        if hit is None:
            why = ("no pod of this target reports" if sample_t is None
                   else "the preset's series for this signal are absent")
            return SignalReading(Status.MISSING, detail=why)
        _, value = hit
        if not math.isfinite(value):
            return SignalReading(Status.NAN, value=value,
                                 detail="NaN/Inf (e.g. no requests in the rate window)")
        if sample_t is None:
            return SignalReading(Status.STALE, value=value, detail="sample age unknown")
        age = at - sample_t
        if age > cfg.max_age_s:
            return SignalReading(Status.STALE, value=value, observed_at=sample_t,
                                 detail=f"newest sample {age:.0f} s old > {cfg.max_age_s:g} s")
        return SignalReading(Status.OK, value=value, observed_at=sample_t)
