"""Fixed-resolution rate history built from irregular samples, immutable and cheap to extend.

The predictive policy sees one request-rate sample per decision (every 15 s) and must carry
up to weeks of history in its immutable state. Copying a 20,000-element tuple on every one
of a 14-day replay's 80,640 steps would cost ~1.6e9 element copies; here the completed bins
live in fixed-size chunk tuples (``CHUNK`` bins each) under an outer tuple, so a step only
rebuilds the open bin's running sum, a completed bin rebuilds the tail chunk (at most
``CHUNK`` elements), and a full chunk adds one reference to the outer tuple.

Bins are aligned to multiples of ``resolution_s`` on the caller's time axis: bin ``k``
covers [k*res, (k+1)*res). A bin's value is the mean of the samples that fell in it; a bin
without samples is NaN (missing, never zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from autoscaler.forecast.types import History

CHUNK = 256
"""Bins per chunk: 256 one-minute bins are ~4.3 hours; 14 days are 79 chunks."""


@dataclass(frozen=True, slots=True)
class RateBins:
    """Completed bins (chunked) plus the bin being filled."""

    resolution_s: float
    max_bins: int
    """At least this many completed bins are kept (at most ``max_bins + CHUNK``)."""
    first_index: int = 0
    """Absolute index of the first stored completed bin."""
    chunks: tuple[tuple[float, ...], ...] = ()
    """Full chunks of completed bins, oldest first."""
    tail: tuple[float, ...] = ()
    """Completed bins after the last full chunk (fewer than ``CHUNK``)."""
    open_index: int | None = None
    """Absolute index of the bin being filled; None before the first sample."""
    open_sum: float = 0.0
    open_count: int = 0
    last_time: float = -math.inf

    def __len__(self) -> int:
        """Completed bins stored."""
        return len(self.chunks) * CHUNK + len(self.tail)

    @property
    def end_index(self) -> int:
        """Absolute index of the bin after the last completed one."""
        return self.first_index + len(self)

    def add(self, t: float, value: float) -> tuple[RateBins, tuple[float, ...]]:
        """Take the sample ``value`` observed at ``t``; return the new bins and the values of
        the bins this completed (oldest first; NaN for bins without samples).

        A sample at or before the last one is ignored (a repeated call cannot count twice).
        A silence longer than ``max_bins`` starts the history afresh (nothing old is worth
        keeping), and then no completed values are returned.
        """
        if not (t > self.last_time) or not math.isfinite(value):
            return self, ()
        k = math.floor(t / self.resolution_s)
        if self.open_index is None:
            return replace(self, first_index=k, open_index=k, open_sum=value, open_count=1,
                           last_time=t), ()
        if k == self.open_index:
            return replace(self, open_sum=self.open_sum + value, open_count=self.open_count + 1,
                           last_time=t), ()
        skipped = k - self.open_index - 1
        if skipped >= self.max_bins:
            fresh = RateBins(self.resolution_s, self.max_bins)
            return replace(fresh, first_index=k, open_index=k, open_sum=value, open_count=1,
                           last_time=t), ()
        closed = self.open_sum / self.open_count if self.open_count else math.nan
        done = (closed, *([math.nan] * skipped))
        chunks, tail, first = self.chunks, self.tail + done, self.first_index
        if len(self) == 0:
            first = self.open_index
        while len(tail) >= CHUNK:
            chunks, tail = (*chunks, tail[:CHUNK]), tail[CHUNK:]
        # Drop whole chunks from the front once more than max_bins would remain.
        drop = max(0, (len(chunks) * CHUNK + len(tail) - self.max_bins) // CHUNK)
        if drop:
            chunks, first = chunks[drop:], first + drop * CHUNK
        return replace(self, first_index=first, chunks=chunks, tail=tail, open_index=k,
                       open_sum=value, open_count=1, last_time=t), done

    def history(self) -> History:
        """The last ``max_bins`` completed bins as a ``History`` (start on the time axis)."""
        vals = np.fromiter((v for c in (*self.chunks, self.tail) for v in c), dtype=np.float64,
                           count=len(self))
        keep = min(len(vals), self.max_bins)
        start = (self.end_index - keep) * self.resolution_s
        return History(start, self.resolution_s, vals[len(vals) - keep:])
