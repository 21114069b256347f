"""Statistics of the arrivals a replay will see, for the result JSON
(``trace.interarrival_cv``, ``trace.collection_gaps``)."""

from __future__ import annotations

import math

import numpy as np

from autoscaler.traces.model import Trace

CV_BLOCK_S = 60
"""Rate traces: the local mean of per-second counts is taken over blocks of this many
seconds (short enough to follow a diurnal or 10-minute rate change, long enough to hold
60 counts for the variance)."""


def interarrival_cv(trace: Trace) -> float:
    """The coefficient of variation of the arrivals' inter-arrival times.

    Request-level traces: ``std / mean`` of the gaps between consecutive arrivals
    (NaN with fewer than three arrivals).

    Rate-level traces have no individual arrivals, so the CV is estimated from per-second
    counts with the renewal-process identity ``Var N(T) / E N(T) -> CV^2`` (the index of
    dispersion of counts tends to the squared gap CV; 1 for Poisson). To keep slow rate
    changes (diurnal, 10-minute steps) from reading as burstiness, each second's count
    is compared with the mean of its own 60-s block:

        CV^2 = sum over blocks of (sum of (x - block mean)^2 * 60/59) / sum of all counts

    over blocks with traffic and outside collection gaps. For a superposition of
    independent clients this is the rate-weighted mean of their CV^2, i.e. the CV of one
    renewal process with the same per-second count dispersion. Traces that are not
    whole counts per second (smooth rates such as ServeGen window means at 600 s) have no
    count noise to measure: their CV is NaN rather than a made-up value.
    """
    if trace.arrivals_s is not None:
        if trace.arrivals_s.size < 3:
            return math.nan
        gaps = np.diff(trace.arrivals_s)
        mean = float(gaps.mean())
        return float(gaps.std() / mean) if mean > 0 else math.nan
    if trace.resolution_s != 1.0:
        return math.nan
    counts = trace.binned_rates(1.0)
    if not np.all(np.abs(counts - np.rint(counts)) < 1e-9):
        return math.nan
    usable = ~trace.gap_mask(1.0)
    n = counts.size // CV_BLOCK_S * CV_BLOCK_S
    if n == 0:
        return math.nan
    x = counts[:n].reshape(-1, CV_BLOCK_S)
    ok = usable[:n].reshape(-1, CV_BLOCK_S).all(axis=1) & (x.sum(axis=1) > 0)
    x = x[ok]
    total = float(x.sum())
    if total <= 0:
        return math.nan
    within = ((x - x.mean(axis=1, keepdims=True)) ** 2).sum() * CV_BLOCK_S / (CV_BLOCK_S - 1)
    return math.sqrt(float(within) / total)


def collection_gap_count(trace: Trace) -> int:
    """Number of collection gaps (``len(trace.gaps)``), for ``trace.collection_gaps``."""
    return len(trace.gaps)
