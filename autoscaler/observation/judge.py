"""Every rule about untrustworthy metrics, in one place: raw readings -> ``Observation``.

A reading that cannot be trusted is *marked*, and left out of the ``Snapshot``'s metrics;
the core then holds (never scales down) on it. A ``partial`` sum and a ``not_yet_valid``
summed rate cannot be above the load, so they go to ``Snapshot.lower_bounds``, on which the
core may only scale up (``autoscaler.core.decide``). The marks, in the order they are
checked:

* ``error``: the query failed this cycle (Prometheus down or slow);
* ``missing``: no series for this target;
* ``nan``: the value is NaN or infinite (``histogram_quantile`` of an empty window);
* ``stale``: the target's newest sample is older than ``max_age_s``;
* ``not_yet_valid``: a summed counter rate whose window the series do not cover yet.
  ``rate()`` divides what the samples saw by the *whole* window, so a series that starts
  45 s into a 60-s window reads a quarter of its rate (the 1.87 req/s against a real 20
  after a Prometheus restart);
* ``partial`` (``Observation.judged``): fewer pods report than are ready, so a sum over
  pods undercounts; a mean or a quantile over the reporting pods is kept.

Coverage, per series, with ``s`` the usual spacing of samples (the median over the
target's series) and ``ws = at - window``:

* the series covers the window's start if its first sample is within ``1.1 s`` of ``ws``
  (Prometheus extrapolates ``rate()`` over such an edge; past it, it does not);
* or if its counter started from zero at most ``1.1 s`` before its first sample: a new pod
  (or a restarted process) counted everything it ever served inside the window, and
  ``rate()`` extrapolates it back to that zero exactly. A counter that is already large
  when its series appears (Prometheus lost its head; a pod that was serving but not
  scraped) does not qualify;
* a counter reset loses what the pod counted between the last scrape before it and the
  reset (Prometheus sees the value after it, counted from 0): the series covers the window
  only from the sample after the reset, so the rate is ``not_yet_valid`` until that sample
  is a whole window old. A reset is not a drop in load, and between two regular scrapes it
  still under-reads: two of four pods restarting 10 s after a scrape lose 100 of a 60-s
  window's 1,200 requests (8 %), enough for a policy without a scale-down delay to release
  a replica it needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from autoscaler.core.types import MetricValue, Signal, Snapshot
from autoscaler.observation.readings import GAP_FACTOR, RawTarget, SeriesWindow, WindowSeries

SUMMED_SIGNALS = frozenset({
    Signal.REQUEST_RATE, Signal.QUEUE_DEPTH, Signal.RUNNING, Signal.CONCURRENCY,
    Signal.PROMPT_TOKENS_RATE, Signal.GENERATION_TOKENS_RATE,
})
"""Sums over pods: a pod that does not report makes them too low (partial => untrusted)."""

WINDOWED_SIGNALS = frozenset({
    Signal.REQUEST_RATE, Signal.PROMPT_TOKENS_RATE, Signal.GENERATION_TOKENS_RATE,
})
"""Summed counter rates: a window the series only partly cover reads too low. Quantiles and
means of rates are ratios of two rates over the same window, which a partial window scales
alike, so they are not held back by coverage."""


END_SLACK_S = 0.5
"""Seconds a sample may lag beyond 1.1 spacings and still count as on time: the scrape's
own duration and ingestion (a 15-s scrape: on time up to 17 s old)."""
REPORTING_SPACINGS = 2.0
"""A series counts as reporting while its newest sample is at most this many spacings old."""


class Status(StrEnum):
    OK = "ok"
    MISSING = "missing"
    NAN = "nan"
    STALE = "stale"
    NOT_YET_VALID = "not_yet_valid"
    PARTIAL = "partial"
    ERROR = "error"


_OK = Status.OK
_BOUND_STATUSES = frozenset({Status.PARTIAL, Status.NOT_YET_VALID})
"""Marks whose summed value is a lower bound of the load (``Observation.snapshot``)."""


class SignalReading(NamedTuple):
    """What one signal looked like this cycle, and why it is (not) used. (A named tuple:
    ten are built per target per decision, and a frozen dataclass is three times slower
    to build.)"""

    status: Status
    value: float | None = None
    observed_at: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of the rate window the target's series cover."""

    series: int
    covered: int
    """Series that cover the whole window."""
    least: float
    """The least share of the window any series accounts for, 0..1 (0 with no series)."""
    reporting: int
    """Series whose newest sample is current: within two spacings of ``at`` (one late or
    missed scrape is not yet a pod that stopped reporting)."""
    current: int
    """Series whose newest sample is on time (within 1.1 spacings + ``END_SLACK_S``): their
    ``rate()`` reaches the window's end. A pod that is reporting but late reads too low."""
    newest: float | None
    """The newest sample of any series (None: no series)."""
    spacing_s: float
    """The usual spacing of samples (NaN when no series has two samples)."""

    @property
    def complete(self) -> bool:
        return self.covered == self.series


def _usual_spacing(rows: tuple[SeriesWindow, ...]) -> float:
    """Median of the series' mean sample spacings, each series weighted by its count."""
    spacings = sorted(((r.last_t - r.first_t) / (r.samples - 1), r.count)
                      for r in rows if r.samples >= 2)
    total = sum(c for _, c in spacings)
    if total == 0:
        return math.nan
    # The median of the expanded list: the middle element, or the mean of the middle two.
    lo_rank, hi_rank = (total - 1) // 2, total // 2
    seen, lo, hi = 0, math.nan, math.nan
    for value, c in spacings:
        if seen <= lo_rank < seen + c:
            lo = value
        if seen <= hi_rank < seen + c:
            hi = value
            break
        seen += c
    return (lo + hi) / 2


def window_coverage(series: WindowSeries, at: float, window_s: float) -> Coverage:
    """Coverage of ``[at - window_s, at]`` by each series (see the module docstring)."""
    rows = series.rows
    if not rows:
        return Coverage(0, 0, 0.0, 0, 0, None, math.nan)
    ws = at - window_s
    spacing = _usual_spacing(rows)
    known = not math.isnan(spacing)
    allowance = GAP_FACTOR * spacing
    n = covered = reporting = current = 0
    least = 1.0
    for r in rows:
        n += r.count
        on_time = known and r.first_t - ws <= allowance
        fresh = False
        if r.first_value == 0.0:  # a counter that starts at 0 missed nothing before
            fresh = True
        elif known and r.first_value > 0 and r.last_t > r.first_t and r.increase > 0:
            # Zero point of the counter at its own rate, extrapolated back.
            slope = r.increase / (r.last_t - r.first_t)
            fresh = r.first_value <= slope * allowance
        start = ws if (on_time or fresh) else r.first_t
        if not math.isnan(r.lost_until):
            start = max(start, r.lost_until)
        least = min(least, max(0.0, min(1.0, (at - start) / window_s)))
        if start <= ws:
            covered += r.count
        age = at - r.last_t
        if known:
            reporting += r.count if age <= REPORTING_SPACINGS * spacing else 0
            current += r.count if age <= allowance + END_SLACK_S else 0
        elif age <= 0:  # single samples: current only if taken right now
            reporting += r.count
            current += r.count
    return Coverage(n, covered, least, reporting, current, max(r.last_t for r in rows),
                    spacing)


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything one cycle learned about one target, judged."""

    readings: Mapping[Signal, SignalReading]
    newest_sample: float | None
    """Time of the target's newest sample (None: no pod reports at all)."""
    pods_reporting: int
    coverage: float | None = None
    """The least share of the rate window any series covers (None: not measured)."""
    pods_on_time: int | None = None
    """Series whose newest sample is on time (None: not measured)."""

    def judged(self, ready_replicas: int | None = None) -> dict[Signal, SignalReading]:
        """The readings, with sums marked ``partial`` when fewer pods report than the
        scale target says are ready (3 of 4 pods scraped: a queue of 30 may be 40)."""
        if ready_replicas is None:
            return dict(self.readings)
        if self.pods_reporting < ready_replicas:
            why = f"{self.pods_reporting} of {ready_replicas} ready pods report"
            return {s: (SignalReading(Status.PARTIAL, r.value, r.observed_at, why)
                        if s in SUMMED_SIGNALS and r.status is Status.OK else r)
                    for s, r in self.readings.items()}
        if self.pods_on_time is not None and self.pods_on_time < ready_replicas:
            # Reporting, but a scrape is late: rate() extrapolates only half a spacing
            # towards the window's end, so the sum reads low (a removed pod's series is late
            # too, but then more series are on time than pods are ready).
            why = (f"{ready_replicas - self.pods_on_time} of {ready_replicas} ready pods' "
                   "newest samples are late: the rate window's end is not covered yet")
            return {s: (SignalReading(Status.NOT_YET_VALID, r.value, r.observed_at, why)
                        if s in WINDOWED_SIGNALS and r.status is Status.OK else r)
                    for s, r in self.readings.items()}
        return dict(self.readings)

    def snapshot(self, current_replicas: int, ready_replicas: int) -> Snapshot:
        """The core's input: only trusted (``ok``) values; everything else is absent, so
        the core holds instead of reading it as zero. Sums that are ``partial`` and summed
        rates that are ``not_yet_valid`` go to ``Snapshot.lower_bounds`` instead: they
        cannot be above the load (a pod that does not report adds >= 0; an uncovered part
        of a window or a counter reset loses counts, never adds them), so the core may
        scale *up* on them (``autoscaler.core.decide``) and nothing else. A stale, NaN or
        missing reading is no bound: the load may have gone anywhere since."""
        ok = _OK  # a local: enum attribute access is slow, and this runs every decision
        judged = self.judged(ready_replicas)
        metrics: dict[str, MetricValue] = {
            s: MetricValue(r.value, r.observed_at)  # a Signal is its own str key
            for s, r in judged.items()
            if r.status is ok and r.value is not None and r.observed_at is not None}
        if len(metrics) == len(judged):  # the usual case: every reading trusted
            return Snapshot(current_replicas=current_replicas,
                            ready_replicas=ready_replicas, metrics=metrics)
        bounds: dict[str, MetricValue] = {
            s: MetricValue(r.value, r.observed_at)
            for s, r in judged.items()
            if r.status in _BOUND_STATUSES and s in SUMMED_SIGNALS and r.value is not None
            and r.observed_at is not None and math.isfinite(r.value) and r.value >= 0.0}
        return Snapshot(current_replicas=current_replicas, ready_replicas=ready_replicas,
                        metrics=metrics, lower_bounds=bounds)


def judge(raw: RawTarget, max_age_s: float) -> Observation:
    """Apply every rule to one target's raw readings."""
    wanted = list(raw.values) + [s for s in raw.failed if s not in raw.values]
    if raw.down is not None or raw.series is None:
        why = raw.down or "the target's series could not be read this cycle"
        return Observation({s: SignalReading(Status.ERROR, detail=why) for s in wanted},
                           None, 0)
    cov = window_coverage(raw.series, raw.at, raw.window_s)
    newest = cov.newest
    uncovered = ""
    if not cov.complete:
        late = cov.series - cov.covered
        uncovered = (f"rate window {cov.least:.0%} covered: {late} of {cov.series} series "
                     f"start inside the {raw.window_s:g}-s window (a restart, a scrape gap, "
                     "a counter reset or a pod that reappeared); not yet valid")
    readings: dict[Signal, SignalReading] = {}
    for signal in wanted:
        if signal in raw.failed:
            readings[signal] = SignalReading(
                Status.ERROR, detail=f"this signal's query failed this cycle: "
                                     f"{raw.failed[signal]}")
            continue
        value = raw.values.get(signal)
        if value is None:
            why = ("no pod of this target reports" if newest is None
                   else "the preset's series for this signal are absent")
            readings[signal] = SignalReading(Status.MISSING, detail=why)
        elif not math.isfinite(value):
            readings[signal] = SignalReading(
                Status.NAN, value=value, detail="NaN/Inf (e.g. no requests in the rate window)")
        elif raw.present == 0 and newest is not None:
            readings[signal] = SignalReading(
                Status.STALE, value=value, observed_at=newest,
                detail="no series of this target is present now (its pods stopped "
                       "reporting); what is left in the window is the past")
        elif newest is None:
            readings[signal] = SignalReading(
                Status.STALE, value=value,
                detail=f"no sample of this target in the last {raw.window_s:g} s")
        elif raw.at - newest > max_age_s:
            readings[signal] = SignalReading(
                Status.STALE, value=value, observed_at=newest,
                detail=f"newest sample {raw.at - newest:.0f} s old > {max_age_s:g} s")
        elif signal in WINDOWED_SIGNALS and uncovered:
            readings[signal] = SignalReading(Status.NOT_YET_VALID, value=value,
                                             observed_at=newest, detail=uncovered)
        else:
            readings[signal] = SignalReading(_OK, value, newest)
    reporting, on_time = cov.reporting, cov.current
    if raw.present is not None:
        reporting, on_time = min(reporting, raw.present), min(on_time, raw.present)
    return Observation(readings, newest, reporting, cov.least if cov.series else None,
                       on_time)
