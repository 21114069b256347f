"""Prometheus' ``histogram_quantile`` in plain Python: the simulator's fake Prometheus and
the live collector (which fetches a histogram's buckets once and derives every quantile
from them) must interpolate exactly as Prometheus does."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """Prometheus' ``histogram_quantile``: ``bounds`` are the finite ``le`` bounds,
    ``cumulative`` the cumulative counts per bound followed by the +Inf count. NaN when
    the histogram is empty."""
    if len(cumulative) != len(bounds) + 1:
        raise ValueError("cumulative needs one count per bound plus the +Inf count")
    # Rates of cumulative counters can come out slightly non-monotonic (samples of the
    # buckets scraped or extrapolated a hair apart); Prometheus then uses the running
    # maximum, e.g. 2.0, 1.9999, 4.0 -> 2.0, 2.0, 4.0.
    cumulative = list(accumulate(cumulative, max))
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    total = cumulative[-1]
    if total <= 0 or math.isnan(total):
        return math.nan
    rank = q * total
    # The first bucket whose cumulative count reaches the rank (counts are monotone now).
    b = bisect_left(cumulative, rank, 0, len(bounds))
    if b == len(bounds):  # in the +Inf bucket
        return bounds[-1]
    upper = bounds[b]
    if b == 0 and upper <= 0:
        return upper
    lower = 0.0 if b == 0 else bounds[b - 1]
    before = 0.0 if b == 0 else cumulative[b - 1]
    inside = cumulative[b] - before
    if inside <= 0:
        return upper
    return lower + (upper - lower) * (rank - before) / inside
