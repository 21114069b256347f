"""The raw readings both observation paths produce, typed (no ``dict[str, Any]``).

``WindowSeries`` describes the series of one target over the rate window ``[at - window,
at]``, one entry per series (a pod, or an engine inside a pod), as numpy arrays so the replay
can fill it for 150 pods every decision without a Python object per pod. The live collector
builds it from a range-vector query with ``WindowSeries.from_samples``; the fake Prometheus
fills the arrays directly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from autoscaler.core.types import Signal

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

GAP_FACTOR = 1.1
"""A spacing longer than 1.1 x the usual one is a gap: Prometheus' own threshold for
extrapolating ``rate()`` to the window edges (``extrapolatedRate``), so it is also where its
``rate()`` stops being right."""


def _empty() -> FloatArray:
    return np.zeros(0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class WindowSeries:
    """The target's series inside the rate window, one entry per series."""

    first_t: FloatArray = field(default_factory=_empty)
    """Time of each series' first sample inside the window (s)."""
    last_t: FloatArray = field(default_factory=_empty)
    """Time of each series' newest sample inside the window (s)."""
    samples: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Samples inside the window."""
    first_value: FloatArray = field(default_factory=_empty)
    """A counter's value at ``first_t`` (NaN for a gauge: it has no zero point)."""
    increase: FloatArray = field(default_factory=_empty)
    """A counter's reset-corrected increase from ``first_t`` to ``last_t`` (NaN: gauge)."""
    lost_until: FloatArray = field(default_factory=_empty)
    """The latest in-window sample that follows a counter reset *after a gap* (NaN: none):
    what the counter gained between the gap's start and the reset is lost, so the window is
    only covered from here. A reset between two regular scrapes loses at most one scrape
    interval of one pod and is not a gap (a counter reset is not a drop in load)."""
    count: IntArray | None = None
    """How many identical series each entry stands for (None: one each). The replay keeps
    pods that share every sample time as one entry: 150 pods are a handful of entries."""

    def __post_init__(self) -> None:
        n = len(self.first_t)
        for name in ("last_t", "samples", "first_value", "increase", "lost_until"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"WindowSeries.{name} has {len(getattr(self, name))} "
                                 f"entries, first_t has {n}")
        if self.count is not None and len(self.count) != n:
            raise ValueError(f"WindowSeries.count has {len(self.count)} entries, first_t "
                             f"has {n}")

    def counts(self) -> IntArray:
        """Series per entry."""
        return self.count if self.count is not None else np.ones(len(self), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.first_t)

    @classmethod
    def from_samples(cls, series: Sequence[Sequence[tuple[float, float]]], *,
                     counter: bool) -> WindowSeries:
        """From each series' raw ``(time, value)`` samples inside the window (what an
        instant query of ``metric[window]`` returns). Series without samples are skipped."""
        rows = [sorted(s) for s in series if len(s)]
        first_t = np.array([r[0][0] for r in rows], dtype=np.float64)
        last_t = np.array([r[-1][0] for r in rows], dtype=np.float64)
        samples = np.array([len(r) for r in rows], dtype=np.int64)
        if not counter:
            nan = np.full(len(rows), math.nan)
            return cls(first_t, last_t, samples, nan, nan.copy(), nan.copy())
        first_value = np.array([r[0][1] for r in rows], dtype=np.float64)
        increase = np.zeros(len(rows))
        lost = np.full(len(rows), math.nan)
        for i, r in enumerate(rows):
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(r)]
            usual = float(np.median(gaps)) if gaps else math.inf
            for (ta, va), (tb, vb) in itertools.pairwise(r):
                if vb >= va:
                    increase[i] += vb - va
                else:  # a reset: the counter restarted from 0 and counted vb since
                    increase[i] += vb
                    if tb - ta > GAP_FACTOR * usual:
                        lost[i] = tb
        return cls(first_t, last_t, samples, first_value, increase, lost)


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
    failed: Mapping[Signal, str] = field(default_factory=dict)
    """Signals whose query failed this cycle, and why."""
    down: str | None = None
    """Why nothing could be read this cycle (Prometheus down), or None."""
