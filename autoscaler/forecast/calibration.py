"""Per-horizon interval calibration: each horizon's width follows that horizon's own coverage.

A fit measures error quantiles per horizon on its window (``ets.error_quantiles``). Those
in-window quantiles are biased out of sample, and not by the same amount at every horizon:
``auto`` picks the candidate with the smallest validation errors (so the winner's errors are
optimistic), a burst inside the window widens some horizons and not others, and on count
data the quantile of a few hundred errors lands between two count values. Measured on the
Azure code hour (10-s bins, 56 % of them exactly 0), the fitted 90 % intervals alone covered
0.93 / 0.96 / 0.99 at 1 / 2 / 5 minutes, and on the conversation hour 0.85 / 0.85 / 0.81: too
wide at one end and too narrow at the other, so no single multiplier fits both.

So every horizon h keeps its own multiplier ``scales[h-1]`` of the half-widths around the
median, and adapts it on *its own* misses: when an observation arrives, the h-step forecast
issued h steps earlier is taken from a ring of the point forecasts of the last H origins,
and the multiplier moves up on a miss (e^(0.05 x 0.9)) and down on a hit (e^(-0.05 x 0.1)).
This is adaptive conformal inference (Gibbs & Candes 2021) run per horizon, on the width
instead of the level; its long-run miss rate at each horizon tends to 10 % whatever the error
distribution (as long as the multiplier stays inside its bounds): over T scored steps the
miss rate is off by at most |log(final scale / initial scale)| / (0.05 x T).

Each interval is scored as it was issued, so the ring holds the 90 % interval of the last H
origins: 2 x H x H numbers, 58 KB at the live loop's 60 horizons of 60 s. The state is carried
across refits (``forecast.carry_calibration``): a refit re-measures offsets, the multipliers
correct what such measurements get wrong out of sample, and that bias outlives a refit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoscaler.forecast.types import FloatArray

ADAPT_RATE = 0.05
"""Step of the adaptive interval width per scored observation (log scale), once a horizon
has been scored ``(EARLY_RATE / ADAPT_RATE)^2`` times; larger before (``rate``)."""
EARLY_RATE = 1.0
"""The step at a horizon's n-th scored observation is max(ADAPT_RATE, EARLY_RATE/sqrt(n)):
a decaying step (Angelopoulos, Barber & Bates 2024, online conformal prediction with
decaying step sizes) with the unit constant, floored at the steady rate from the 400th
scored observation on (1/sqrt(400) = 0.05). Why: with the steady rate alone a multiplier
moves at most e^(-0.005) per hit, so intervals that start twice too wide need 139 hits in
a row to halve; the Azure code hour has 195 scored 5-minute origins in all, and covered
0.96 at 5 minutes that way. With the decaying step the first 100 hits alone move a
multiplier by e^(-0.1 x (sum of 1/sqrt(n) for n = 1..100)) = e^(-0.1 x 18.6) = e^(-1.86).
Measured on the three short traces with the constant at 0.2 / 0.5 / 1.0, 5-minute
coverage: conv 0.86 / 0.84 / 0.87, code 0.96 / 0.93 / 0.92, demo 0.88 / 0.88 / 0.88."""
TARGET_MISS = 0.1
"""The 90 % interval should miss one observation in ten, at every horizon."""
SCALE_MIN, SCALE_MAX = 0.1, 10.0
"""Bounds of a multiplier: a tenth to ten times the measured half-widths."""


def rate(scored: int) -> float:
    """The step for a horizon's ``scored``-th scored observation (1-based)."""
    return max(ADAPT_RATE, EARLY_RATE / math.sqrt(max(1, scored)))


def adapt_width(scale: float, covered: bool, step_rate: float = ADAPT_RATE) -> float:
    """One horizon's multiplier after one scored observation: a miss widens by
    e^(0.05 x 0.9) = 1.046, a hit narrows by e^(-0.05 x 0.1) = 0.995, so the multiplier
    settles where one step in ten misses. Worked number: 10 steps with one miss:
    0.05 x (0.9 - 9 x 0.1) = 0, the multiplier does not move."""
    miss = 0.0 if covered else 1.0
    moved = scale * math.exp(step_rate * (miss - TARGET_MISS))
    return float(min(SCALE_MAX, max(SCALE_MIN, moved)))


def scaled_offsets(off: FloatArray, levels: tuple[float, ...], scales: FloatArray) -> FloatArray:
    """Offsets (levels x steps) with every level's distance from the median multiplied by
    that step's multiplier. Nesting across levels is kept (the multiplier is positive)."""
    if off.shape[1] == 0 or 0.5 not in levels:
        return off
    med = off[levels.index(0.5)][None, :]
    return np.asarray(med + (off - med) * scales[None, :], dtype=np.float64)


def quantiles_from(mean: FloatArray, off: FloatArray, levels: tuple[float, ...],
                   scales: FloatArray) -> dict[float, FloatArray]:
    """The forecast's quantiles: ``mean`` (already clipped at 0) plus the scaled offsets,
    clipped at 0 (demand is non-negative)."""
    sc = scaled_offsets(off, levels, scales)
    return {lv: np.maximum(mean + sc[i], 0.0) for i, lv in enumerate(levels)}


@dataclass(frozen=True)
class HorizonCalibration:
    """Multipliers per measured horizon and the intervals awaiting their score."""

    scales: FloatArray
    """``scales[h-1]`` multiplies the half-widths at h steps (length H); read-only."""
    lower: FloatArray
    """H x H: ``lower[k, h-1]`` is the lower end (q0.05) of the h-step interval issued k
    origins before the newest one (NaN where none was issued). Diagonal entry k is the
    interval, issued k+1 steps earlier, for the observation that arrives next; read-only."""
    upper: FloatArray
    """The same for the upper end (q0.95)."""
    scored: FloatArray
    """Observations scored so far at each horizon (length H); read-only."""

    def __post_init__(self) -> None:
        for name in ("scales", "lower", "upper", "scored"):
            a = np.array(getattr(self, name), dtype=np.float64, copy=True)
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @staticmethod
    def fresh(horizons: int) -> HorizonCalibration:
        """Every multiplier 1, nothing issued yet."""
        h = max(0, int(horizons))
        return HorizonCalibration(np.ones(h), np.full((h, h), np.nan), np.full((h, h), np.nan),
                                  np.zeros(h))

    @property
    def horizons(self) -> int:
        return int(self.scales.shape[0])

    def scales_for(self, steps: int) -> FloatArray:
        """Multipliers for steps 1..steps; past the measured horizons, the last one."""
        if self.horizons == 0:
            return np.ones(steps)
        if steps <= self.horizons:
            return np.asarray(self.scales[:steps], dtype=np.float64)
        return np.concatenate((self.scales, np.full(steps - self.horizons, self.scales[-1])))

    def resized(self, horizons: int) -> HorizonCalibration:
        """The same multipliers for a different number of horizons (a refit with another
        ``max_horizon_s``): cut, or extended with the last one; the ring starts empty,
        because its rows were issued for a different set of horizons."""
        if horizons == self.horizons:
            return self
        fresh = HorizonCalibration.fresh(horizons)
        if self.horizons == 0:
            return fresh
        n = self.scored
        counts = (n[:horizons] if horizons <= n.shape[0]
                  else np.concatenate((n, np.full(horizons - n.shape[0], n[-1]))))
        return HorizonCalibration(self.scales_for(horizons), fresh.lower, fresh.upper, counts)

    def observe(self, lower_now: FloatArray, upper_now: FloatArray,
                value: float) -> HorizonCalibration:
        """Take ``value``, the observation that arrived after the newest origin.

        ``lower_now``/``upper_now`` are the 90 % interval that origin issues for h = 1..H
        (q0.05 and q0.95, with the multipliers in force). Every horizon whose interval for
        ``value`` was issued (h steps ago) is scored on that interval as it was issued, and
        its multiplier adapts. Scoring the issued interval, not today's, is what makes the
        miss rate of the intervals a caller was given tend to 10 %: a burst is missed by the
        narrow intervals issued before it, and the multiplier only rises h steps later.
        A missing ``value`` (NaN) scores nothing; the ring still moves.
        """
        big_h = self.horizons
        if big_h == 0:
            return self
        lower = np.empty_like(self.lower)
        upper = np.empty_like(self.upper)
        lower[1:], upper[1:] = self.lower[:-1], self.upper[:-1]
        lower[0], upper[0] = lower_now[:big_h], upper_now[:big_h]
        if not math.isfinite(value):
            return HorizonCalibration(self.scales, lower, upper, self.scored)
        k = np.arange(big_h)
        lo, hi = lower[k, k], upper[k, k]
        scored = np.isfinite(lo) & np.isfinite(hi)
        if not scored.any():
            return HorizonCalibration(self.scales, lower, upper, self.scored)
        with np.errstate(invalid="ignore"):
            miss = ~((lo <= value) & (value <= hi))
        counts = self.scored + scored
        rates = np.maximum(ADAPT_RATE, EARLY_RATE / np.sqrt(np.maximum(counts, 1.0)))
        step = np.exp(rates * (miss.astype(np.float64) - TARGET_MISS))
        scales = np.where(scored, np.clip(self.scales * step, SCALE_MIN, SCALE_MAX),
                          self.scales)
        return HorizonCalibration(scales, lower, upper, counts)
