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
    return histogram_quantiles((q,), bounds, cumulative)[0]


def histogram_quantiles(qs: Sequence[float], bounds: Sequence[float],
                        cumulative: Sequence[float]) -> list[float]:
    """``histogram_quantile`` for several quantiles of one histogram, reading it once."""
    if len(cumulative) != len(bounds) + 1:
        raise ValueError("cumulative needs one count per bound plus the +Inf count")
    # Rates of cumulative counters can come out slightly non-monotonic (samples of the
    # buckets scraped or extrapolated a hair apart); Prometheus then uses the running
    # maximum, e.g. 2.0, 1.9999, 4.0 -> 2.0, 2.0, 4.0.
    cum = list(accumulate(cumulative, max))
    total = cum[-1]
    n = len(bounds)
    out = []
    for q in qs:
        if q < 0:
            out.append(-math.inf)
            continue
        if q > 1:
            out.append(math.inf)
            continue
        if total <= 0 or math.isnan(total):
            out.append(math.nan)
            continue
        rank = q * total
        # The first bucket whose cumulative count reaches the rank (counts are monotone).
        b = bisect_left(cum, rank, 0, n)
        if b == n:  # in the +Inf bucket
            out.append(bounds[-1])
            continue
        upper = bounds[b]
        if b == 0 and upper <= 0:
            out.append(upper)
            continue
        lower = 0.0 if b == 0 else bounds[b - 1]
        before = 0.0 if b == 0 else cum[b - 1]
        inside = cum[b] - before
        out.append(upper if inside <= 0 else lower + (upper - lower) * (rank - before) / inside)
    return out
