"""Scoring a replay: attainment, TTFT quantiles, per-bin and per-hour figures.

Both engines are scored by the same code. The request engine gives one item per request
(weight 1, met 0 or 1); the fluid engine one item per tick (weight = the tick's arrivals,
met = the fraction of them within the objective). Collection gaps are not scored: hours
that lie wholly inside a gap are skipped (they have no arrivals either).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autoscaler.traces.model import FloatArray

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class Scored:
    """Per-item outcomes of one replay."""

    time_s: FloatArray
    """Arrival time of the item (seconds since the trace start)."""
    weight: FloatArray
    """Requests per item."""
    met: FloatArray
    """Fraction of the item's requests within their TTFT objective."""
    ttft_s: FloatArray
    """TTFT of the item's requests (inf = never served)."""


def weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    """The smallest value whose weighted CDF reaches ``q`` (numpy's ``inverted_cdf``)."""
    total = float(weights.sum())
    if total <= 0:
        return math.nan
    order = np.argsort(values, kind="stable")
    cw = np.cumsum(weights[order])
    i = int(np.searchsorted(cw, q * total * (1 - 1e-12), side="left"))
    return float(values[order][min(i, len(values) - 1)])


def attainment(s: Scored) -> float:
    n = float(s.weight.sum())
    return float(np.dot(s.weight, s.met) / n) if n > 0 else 1.0


def per_bin(s: Scored, bin_s: float, nbins: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(requests, attainment, TTFT p95) per bin of ``bin_s``; NaN where none arrived."""
    b = np.minimum((s.time_s // bin_s).astype(np.int64), nbins - 1)
    cnt = np.bincount(b, weights=s.weight, minlength=nbins)
    with np.errstate(invalid="ignore", divide="ignore"):
        att = np.bincount(b, weights=s.weight * s.met, minlength=nbins) / cnt
    att[cnt <= 0] = math.nan
    p95 = np.full(nbins, math.nan)
    order = np.lexsort((s.ttft_s, b))
    bo, wo, to = b[order], s.weight[order], s.ttft_s[order]
    cw = np.cumsum(wo)
    start = np.concatenate(([0.0], np.cumsum(cnt)[:-1]))
    has = cnt > 0
    # first position in each bin where the cumulative weight within the bin reaches 95%
    target = start + 0.95 * cnt * (1 - 1e-12)
    pos = np.searchsorted(cw, target[has], side="left")
    pos = np.minimum(pos, len(to) - 1)
    ok = bo[pos] == np.flatnonzero(has)
    vals = to[pos]
    p95_has = np.where(ok, vals, math.nan)
    p95[has] = p95_has
    return (np.asarray(cnt, dtype=np.float64), np.asarray(att, dtype=np.float64),
            np.asarray(p95, dtype=np.float64))


def hourly(s: Scored, duration_s: float, target: float,
           gaps: Sequence[tuple[float, float]]) -> tuple[float, float, int]:
    """(worst hour's attainment, share of scored hours meeting ``target``, hours scored).

    An hour is scored when requests arrived in it and it is not wholly inside a gap."""
    n = max(1, math.ceil(duration_s / HOUR_S - 1e-9))
    cnt, att, _ = per_bin(s, HOUR_S, n)
    starts = np.arange(n) * HOUR_S
    ends = np.minimum(starts + HOUR_S, duration_s)
    in_gap = np.zeros(n, dtype=bool)
    for g0, g1 in gaps:
        in_gap |= (starts >= g0) & (ends <= g1)
    scored = (cnt > 0) & ~in_gap
    if not np.any(scored):
        return math.nan, math.nan, 0
    a = att[scored]
    return float(a.min()), float(np.mean(a >= target - 1e-12)), int(scored.sum())
