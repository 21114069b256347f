"""The raw readings both observation paths produce, typed (no ``dict[str, Any]``).

``WindowSeries`` describes the series of one target over the rate window ``[at - window,
at]``, one ``SeriesWindow`` per series (a pod, or an engine inside a pod). The live collector
builds it from a range-vector query with ``WindowSeries.from_samples``; the fake Prometheus
builds one entry per cohort of pods that share every sample time (``count``), so a steady
150-pod fleet costs one entry per decision.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.core.types import Signal

GAP_FACTOR = 1.1
"""A spacing longer than 1.1 x the usual one is a gap: Prometheus' own threshold for
extrapolating ``rate()`` to the window edges (``extrapolatedRate``), so it is also where its
``rate()`` stops being right."""


@dataclass(frozen=True, slots=True)
class SeriesWindow:
    """One series' samples inside the rate window, summarised as coverage needs them."""

    first_t: float
    """Time of the first sample inside the window (s)."""
    last_t: float
    """Time of the newest sample inside the window (s)."""
    samples: int
    """Samples inside the window."""
    first_value: float = math.nan
    """A counter's value at ``first_t`` (NaN for a gauge: it has no zero point)."""
    increase: float = math.nan
    """A counter's reset-corrected increase from ``first_t`` to ``last_t`` (NaN: gauge)."""
    lost_until: float = math.nan
    """The sample right after the newest counter reset seen (NaN: none). What the counter
    gained between the last scrape before the reset and the reset itself is lost (Prometheus
    sees only the value after it, counted from 0), so the window is covered only from here:
    with 4 pods at 5 req/s, two restarting 10 s after a scrape lose 2 x 5 x 10 = 100 of a
    60-s window's 1,200, and ``rate()`` reads 8 % low. The sample before the reset may lie
    just before the window (``from_samples``' ``since``): a reset between it and the
    window's first sample loses part of the window as well."""
    count: int = 1
    """How many identical series this entry stands for. The replay keeps pods that share
    every sample time as one entry: 150 steady pods are one entry, not 150."""

    @classmethod
    def from_samples(cls, points: Sequence[tuple[float, float]], *,
                     counter: bool, since: float | None = None) -> SeriesWindow:
        """From one series' raw ``(time, value)`` samples (what an instant query of
        ``metric[range]`` returns), oldest first. With ``since`` (the window's start,
        exclusive), samples at or before it are not the window's: only the newest of them
        is read, to see a counter reset between it and the window's first sample."""
        r = sorted(points)
        before: tuple[float, float] | None = None
        if since is not None:
            inside = [p for p in r if p[0] > since]
            if len(inside) < len(r):
                before = r[len(r) - len(inside) - 1]
            r = inside
        if not r:
            raise ValueError("a series needs at least one sample inside the window")
        if not counter:
            return cls(r[0][0], r[-1][0], len(r))
        increase, lost = 0.0, math.nan
        if before is not None and r[0][1] < before[1]:
            lost = r[0][0]
        for (_, va), (tb, vb) in itertools.pairwise(r):
            if vb >= va:
                increase += vb - va
            else:  # a reset: the counter restarted from 0 and counted vb since
                increase += vb
                lost = tb
        return cls(r[0][0], r[-1][0], len(r), r[0][1], increase, lost)


@dataclass(frozen=True, slots=True)
class WindowSeries:
    """The target's series inside the rate window ``[at - window, at]``."""

    rows: tuple[SeriesWindow, ...] = ()

    def __len__(self) -> int:
        return sum(r.count for r in self.rows)

    @classmethod
    def from_samples(cls, series: Sequence[Sequence[tuple[float, float]]], *,
                     counter: bool, since: float | None = None) -> WindowSeries:
        """From each series' raw samples; series without any inside the window (after
        ``since``, when given) are skipped."""
        return cls(tuple(SeriesWindow.from_samples(s, counter=counter, since=since)
                         for s in series
                         if any(since is None or t > since for t, _ in s)))


@dataclass(frozen=True, slots=True)
class RawTarget:
    """Everything one evaluation learned about one target, before any rule is applied."""

    at: float
    """Evaluation time (s)."""
    window_s: float
    """The ``rate()`` window the values were computed over (s)."""
    values: Mapping[Signal, float | None]
    """Every wanted signal: the value its query returned for this target (NaN as NaN), or
    None when the query returned no series for it."""
    series: WindowSeries | None
    """The target's series over the window (None: they could not be read this cycle)."""
    present: int | None = None
    """Series of the target present as an instant vector at ``at`` (None: unknown).
    Prometheus drops a series at once when its pod's scrape fails or the pod goes (a
    staleness marker), while its samples stay in range vectors for a window: a pod that has
    just stopped reporting is seen here first."""
    failed: Mapping[Signal, str] = field(default_factory=dict)
    """Signals whose query failed this cycle, and why."""
    down: str | None = None
    """Why nothing could be read this cycle (Prometheus down), or None."""
