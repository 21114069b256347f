"""One additive exponential-smoothing filter that every model here is a setting of.

Error-correction form (Hyndman et al., *Forecasting with Exponential Smoothing*, ch. 2),
the same recursions statsmodels' ``ExponentialSmoothing`` runs for additive components::

    pred = p(t) + l + phi*b + s[slot(t)]          # one-step prediction
    err  = y(t) - pred                            # 0 when y(t) is missing (NaN)
    l    = l + phi*b + alpha*err
    b    = phi*b + alpha*beta*err
    s[slot(t)] += gamma*err

``p`` is an optional *fixed* profile (the ``profile`` model's time-of-week shape). The
baselines are settings too: last value is alpha=1; seasonal naive is alpha=0, gamma=1
(the slot then always holds the value one period ago). Because the update is a handful of
float operations (plus one array copy for seasonal models, ~5 us for a week of minutes),
``update`` stays far below 1 ms.

Intervals are empirical: at fit time the filter is run over the recent history and, from
every origin in the last ``interval_window`` samples, the h-step forecast error is
recorded for h = 1..H. The p-quantile of those errors, added to the point forecast, is the
p-quantile of the forecast. No distribution is assumed; the measured coverage is the test.
Each horizon's half-widths are then multiplied by that horizon's adaptive factor
(``calibration.HorizonCalibration``), which follows the coverage observed after the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from autoscaler.forecast.calibration import HorizonCalibration, quantiles_from
from autoscaler.forecast.types import QUANTILE_LEVELS, FloatArray, Forecast

_MIN_ERRORS_PER_HORIZON = 20
"""Fewer h-step errors than this and the quantile at that horizon is extrapolated from
the 1-step errors (sqrt(h) growth) instead of read from too few samples."""


@dataclass(frozen=True)
class EtsParams:
    alpha: float
    beta: float = 0.0
    gamma: float = 0.0
    phi: float = 1.0
    period: int = 0
    """Seasonal period in steps (0 = no seasonal state)."""


@dataclass(frozen=True)
class EtsState:
    level: float
    trend: float
    season: FloatArray
    """Seasonal state by slot (length ``period``, empty without seasonality); read-only."""
    slot: int
    """Slot of the next observation in ``season``."""
    profile: FloatArray
    """Fixed profile by phase (empty = none); read-only."""
    profile_phase: int
    """Phase of the next observation in ``profile``."""


def _readonly(a: FloatArray) -> FloatArray:
    a.setflags(write=False)
    return a


def damped_sum(phi: float, steps: int) -> FloatArray:
    """phi + phi^2 + ... + phi^h for h = 1..steps (h itself when phi == 1)."""
    h = np.arange(1, steps + 1, dtype=np.float64)
    if phi == 1.0:
        return h
    return np.asarray(phi * (1.0 - phi**h) / (1.0 - phi), dtype=np.float64)


def point_forecast(p: EtsParams, st: EtsState, steps: int) -> FloatArray:
    """Unclipped h-step means for h = 1..steps."""
    out = st.level + damped_sum(p.phi, steps) * st.trend
    k = np.arange(steps)
    if p.period > 0:
        out = out + st.season[(st.slot + k) % p.period]
    if st.profile.size:
        out = out + st.profile[(st.profile_phase + k) % st.profile.size]
    return np.asarray(out, dtype=np.float64)


def step(p: EtsParams, st: EtsState, y: float) -> EtsState:
    """The filter's update for one observation (NaN = missing: the state just moves on)."""
    s_now = float(st.season[st.slot]) if p.period > 0 else 0.0
    prof = float(st.profile[st.profile_phase]) if st.profile.size else 0.0
    pred = prof + st.level + p.phi * st.trend + s_now
    err = y - pred if math.isfinite(y) else 0.0
    season = st.season
    if p.period > 0 and p.gamma != 0.0 and err != 0.0:
        season = st.season.copy()
        season[st.slot] = s_now + p.gamma * err
        season.setflags(write=False)
    return EtsState(
        level=st.level + p.phi * st.trend + p.alpha * err,
        trend=p.phi * st.trend + p.alpha * p.beta * err,
        season=season,
        slot=(st.slot + 1) % p.period if p.period > 0 else 0,
        profile=st.profile,
        profile_phase=(st.profile_phase + 1) % st.profile.size if st.profile.size else 0,
    )


def run(p: EtsParams, st: EtsState, y: FloatArray, horizon: int,
        interval_window: int) -> tuple[EtsState, FloatArray]:
    """Filter ``y`` from state ``st``; return the end state and the in-sample h-step
    errors (rows: the last ``interval_window`` origins, columns: h = 1..horizon; NaN where
    the target is missing or past the end)."""
    n = int(y.shape[0])
    m = p.period
    lv = np.empty(n)
    tr = np.empty(n)
    sw = np.empty(n)  # seasonal value written at t (the slot's state after t)
    level, trend, phi, alpha = st.level, st.trend, p.phi, p.alpha
    ab, gamma = p.alpha * p.beta, p.gamma
    season = st.season.tolist()
    slot = st.slot
    prof = st.profile.tolist()
    pp = st.profile_phase
    psize = len(prof)
    ylist = y.tolist()
    # Plain Python floats: ~0.5 us per step, 10 ms for a week of minutes.
    for t in range(n):
        s_now = season[slot] if m else 0.0
        base = level + phi * trend
        yt = ylist[t]
        err = yt - (base + s_now + (prof[pp] if psize else 0.0)) if yt == yt else 0.0
        level = base + alpha * err
        trend = phi * trend + ab * err
        if m:
            s_now += gamma * err
            season[slot] = s_now
            slot = slot + 1 if slot + 1 < m else 0
        if psize:
            pp = pp + 1 if pp + 1 < psize else 0
        lv[t] = level
        tr[t] = trend
        sw[t] = s_now
    end = EtsState(level, trend, _readonly(np.array(season, dtype=np.float64)), slot,
                   st.profile, pp)

    h = min(horizon, m) if m else horizon
    w = min(interval_window, n)
    if h < 1 or w < 1:
        return end, np.empty((0, max(h, 0)))
    origins = np.arange(n - w, n)
    hs = np.arange(1, h + 1)
    idx = origins[:, None] + hs[None, :]
    inside = idx < n
    idx_c = np.minimum(idx, n - 1)
    pred = lv[origins][:, None] + tr[origins][:, None] * damped_sum(phi, h)[None, :]
    if m:
        # The slot of time t+h (h <= m) was last written at t+h-m; before the run it held
        # the initial state of that slot.
        init = st.season[(st.slot + np.arange(-m, 0)) % m]
        s_full = np.concatenate((init, sw))
        pred = pred + s_full[idx_c]
    if psize:
        pred = pred + st.profile[(st.profile_phase + idx_c) % psize]
    err = np.where(inside, y[idx_c] - np.maximum(pred, 0.0), np.nan)
    return end, err


def error_quantiles(errors: FloatArray, levels: tuple[float, ...] = QUANTILE_LEVELS) -> FloatArray:
    """Offsets (levels x horizons) from h-step errors, made nested across levels and
    widening with the horizon (the upper ones never shrink, the lower ones never rise)."""
    n_lev = len(levels)
    hmax = errors.shape[1] if errors.ndim == 2 else 0
    if hmax == 0:
        return np.zeros((n_lev, 0))
    counts = np.sum(np.isfinite(errors), axis=0)
    off = np.zeros((n_lev, hmax))
    lv = np.asarray(levels)
    if counts[0] == 0:
        return off
    # Every column's quantiles at once, numpy's default ("linear") definition: sort with
    # NaN last, then interpolate between order statistics floor/ceil of q*(count-1).
    # Worked number: 5 finite errors, q = 0.9 -> position 3.6 -> 0.4*e(3) + 0.6*e(4).
    srt = np.sort(errors, axis=0)
    pos = lv[:, None] * (np.maximum(counts, 1) - 1)[None, :]
    lo_i = np.floor(pos).astype(np.intp)
    hi_i = np.minimum(lo_i + 1, np.maximum(counts, 1)[None, :] - 1)
    frac = pos - lo_i
    lo_v = np.take_along_axis(srt, lo_i, axis=0)
    hi_v = np.take_along_axis(srt, hi_i, axis=0)
    measured = lo_v + frac * (hi_v - lo_v)
    one_q = measured[:, 0]
    grown = one_q[:, None] * np.sqrt(np.arange(1, hmax + 1))[None, :]
    off = np.where((counts >= _MIN_ERRORS_PER_HORIZON)[None, :], measured, grown)
    off = np.sort(off, axis=0)
    # The median is left as measured (it is a bias correction, not a width).
    upper, lower = lv > 0.5, lv < 0.5
    off[upper] = np.maximum.accumulate(off[upper], axis=1)
    off[lower] = np.minimum.accumulate(off[lower], axis=1)
    return off


@dataclass(frozen=True)
class EtsResult:
    """A fitted model: parameters, state, and error quantiles by horizon."""

    model: str
    params: EtsParams
    state: EtsState
    offsets: FloatArray
    """Error quantiles, shape (len(levels), H): row i is levels[i], column h-1 is h steps."""
    levels: tuple[float, ...] = QUANTILE_LEVELS
    fallbacks: int = 0
    fallback_reason: str | None = None
    valid: bool = True
    """False when there was no usable data at all: forecasts are then NaN."""
    calibration: HorizonCalibration | None = None
    """Per-horizon multipliers of the half-widths and the point forecasts awaiting their
    score (``calibration``); None right after a fit (every multiplier 1)."""
    errors: FloatArray | None = field(default=None, repr=False, compare=False)
    """The fit's in-sample h-step errors (``run``'s matrix), kept only when the caller
    asked for them (``auto`` scores candidates on them); None otherwise, so a result held
    in the policy's state stays small."""

    def forecast(self, steps: int) -> Forecast:
        steps = max(1, int(steps))
        if not self.valid:
            nan = np.full(steps, np.nan)
            return Forecast(nan, {lv: nan.copy() for lv in self.levels})
        mean = np.maximum(point_forecast(self.params, self.state, steps), 0.0)
        scales = (self.calibration.scales_for(steps) if self.calibration is not None
                  else np.ones(steps))
        return Forecast(mean, quantiles_from(mean, self._offsets(steps), self.levels, scales))

    def _offsets(self, steps: int) -> FloatArray:
        hmax = self.offsets.shape[1]
        if hmax == 0:
            return np.zeros((len(self.levels), steps))
        if steps <= hmax:
            return self.offsets[:, :steps]
        # Past the measured horizons: grow like a random walk (sqrt of the horizon), outward
        # only. An upper offset can be negative when the measured errors all lie below the
        # forecast (history [4, 3] under `last`: the one error is -1), and scaling -1 by
        # sqrt(h) would pull the upper quantile *down* with the horizon.
        extra = np.arange(hmax + 1, steps + 1, dtype=np.float64)
        last = self.offsets[:, -1:]
        scaled = last * np.sqrt(extra / hmax)[None, :]
        levels = np.asarray(self.levels, dtype=np.float64)[:, None]
        tail = np.where(levels > 0.5, np.maximum(last, scaled),
                        np.where(levels < 0.5, np.minimum(last, scaled), last))
        return np.concatenate((self.offsets, tail), axis=1)

    def update(self, value: float) -> EtsResult:
        if not self.valid:
            return self
        big_h = self.offsets.shape[1]
        cal = self.calibration if self.calibration is not None else HorizonCalibration.fresh(big_h)
        if cal.horizons != big_h:
            cal = cal.resized(big_h)
        if big_h:
            lo, hi = self.forecast(big_h).interval(0.9)
            cal = cal.observe(lo, hi, float(value))
        return replace(self, state=step(self.params, self.state, float(value)),
                       calibration=cal)
