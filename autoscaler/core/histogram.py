"""Prometheus' ``histogram_quantile`` in plain Python: the simulator's fake Prometheus and
the live collector (which fetches a histogram's buckets once and derives every quantile
from them) must interpolate exactly as Prometheus does. Both also report the bucket each
percentile fell in (``histogram_quantile_buckets``), because an interpolated value only
says the truth lies somewhere in that bucket; ``verdict`` reads a percentile against an
objective with that in mind."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from enum import StrEnum
from itertools import accumulate


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """Prometheus' ``histogram_quantile``: ``bounds`` are the finite ``le`` bounds,
    ``cumulative`` the cumulative counts per bound followed by the +Inf count. NaN when
    the histogram is empty."""
    return histogram_quantiles((q,), bounds, cumulative)[0]


def histogram_quantiles(qs: Sequence[float], bounds: Sequence[float],
                        cumulative: Sequence[float]) -> list[float]:
    """``histogram_quantile`` for several quantiles of one histogram, reading it once."""
    return [v for v, _, _ in histogram_quantile_buckets(qs, bounds, cumulative)]


def histogram_quantile_buckets(qs: Sequence[float], bounds: Sequence[float],
                               cumulative: Sequence[float]
                               ) -> list[tuple[float, float, float]]:
    """``histogram_quantile`` for several quantiles, each with the bucket it fell in:
    ``(value, low, high)``, the bucket being ``(low, high]``.

    The value is interpolated linearly inside the bucket, so it says only that the true
    quantile of the observations (the ``ceil(q x count)``-th smallest) lies in
    ``(low, high]``: with vLLM's TTFT buckets (..., 1.0, 2.5, ...) a p99 that reads 2.2 s
    may be any TTFT from just above 1.0 s to 2.5 s. Always ``low <= value <= high``.

    * The first bucket: ``low`` is 0, Prometheus' own assumption that observations are
      non-negative (it interpolates from 0); a bucket bound at or below 0 gives
      ``(value, value, value)``, as Prometheus returns that bound.
    * The +Inf bucket: Prometheus returns the highest finite bound; the truth lies above
      it, ``(bound, bound, inf)``.
    * NaN (empty histogram) and q outside [0, 1] (-Inf / +Inf) give the value three times:
      no bucket.
    """
    if len(cumulative) != len(bounds) + 1:
        raise ValueError("cumulative needs one count per bound plus the +Inf count")
    # Rates of cumulative counters can come out slightly non-monotonic (samples of the
    # buckets scraped or extrapolated a hair apart); Prometheus then uses the running
    # maximum, e.g. 2.0, 1.9999, 4.0 -> 2.0, 2.0, 4.0.
    cum = list(accumulate(cumulative, max))
    total = cum[-1]
    n = len(bounds)
    out: list[tuple[float, float, float]] = []
    for q in qs:
        if q < 0:
            out.append((-math.inf, -math.inf, -math.inf))
            continue
        if q > 1:
            out.append((math.inf, math.inf, math.inf))
            continue
        if total <= 0 or math.isnan(total):
            out.append((math.nan, math.nan, math.nan))
            continue
        rank = q * total
        # The first bucket whose cumulative count reaches the rank (counts are monotone).
        b = bisect_left(cum, rank, 0, n)
        if b == n:  # in the +Inf bucket
            out.append((bounds[-1], bounds[-1], math.inf))
            continue
        upper = bounds[b]
        if b == 0 and upper <= 0:
            out.append((upper, upper, upper))
            continue
        lower = 0.0 if b == 0 else bounds[b - 1]
        before = 0.0 if b == 0 else cum[b - 1]
        inside = cum[b] - before
        value = upper if inside <= 0 else lower + (upper - lower) * (rank - before) / inside
        out.append((value, lower, upper))
    return out


class Verdict(StrEnum):
    """What a percentile read from a histogram says about an objective on that percentile."""

    MET = "met"
    """The reading is at or below the objective."""
    AMBIGUOUS = "ambiguous"
    """The reading is above the objective, but the bucket it was interpolated in starts
    below it: the true percentile may lie on either side."""
    BREACH = "breach"
    """The reading is above the objective and so is its bucket's lower bound (or the
    bucket is unknown, as for a percentile computed by Prometheus): certainly missed."""


def verdict(value: float, bucket_low: float | None, objective: float) -> Verdict:
    """Classify one percentile reading against ``objective`` (same unit).

    The true percentile lies in the bucket ``(bucket_low, high]`` the reading was
    interpolated in (``histogram_quantile_buckets``). Above the objective with the bucket's
    lower bound at or above it, it is certainly missed; with the lower bound below it the
    reading cannot tell: vLLM's TTFT buckets are (1.0, 2.5] around a 2-s objective, and once
    more than 1 % of a window's requests take over 1.0 s the p99 reads 1.0 + 1.5 x (its
    place among them), 2.1-2.5 s whether they took 1.1 s or 2.4 s. A reading at or below the
    objective is taken as met even when its bucket reaches above it: in a tail bucket the
    observations thin out towards its upper bound, so linear interpolation overstates the
    percentile, and one read below the objective is below it at least as likely.
    ``bucket_low`` None or not finite: the bucket is unknown and the reading is taken at
    its value (a breach when above)."""
    if not value > objective:
        return Verdict.MET
    if bucket_low is not None and math.isfinite(bucket_low) and bucket_low < objective:
        return Verdict.AMBIGUOUS
    return Verdict.BREACH
