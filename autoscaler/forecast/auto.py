"""Automatic model choice per workload *and per horizon*, scored on the workload's own history.

``fit`` fits every candidate once on the whole history. Each fit already walks its filter
over the last ``interval_window_s`` of history exactly as the live loop would (one
``update`` per sample, forecasts from every origin), recording the h-step errors that give
the intervals; ``auto`` reuses that error matrix as its validation set, so choosing costs no
extra pass. For every horizon h = 1..H it takes the candidate with the lowest MAE at h, and
the result forecasts step h with that horizon's winner: a 1-minute-ahead forecast may come
from ``last`` while the 30-minute-ahead one comes from ``profile``.

What is in- and out-of-sample: the filter *state* is walked forward, so every scored
forecast uses only data before its origin. The few smoothing constants (2 to 5 numbers)
are estimated on ``fit_window_s`` of history that overlaps the scored window, and the
``profile`` shape is a median over all days including the scored ones (one day in 14 moves
a median little). That in-sample part is the price of one fit per candidate instead of
two (a held-back fit plus a refit of the winner), which is what keeps a refit on 14 days
of 1-minute data inside its budget. Nothing after the history's end is ever seen.

Between refits two things follow what the fit could not see: the intervals, calibrated per
horizon on their own misses (``calibration``), and a guard for level shifts: while Trigg's
tracking signal says the plan's 1-step errors are one-sided (a smoother trailing a burst),
the last value forecasts instead (``AutoResult.lagging``), so a burst the validation window
never showed cannot make ``auto`` much worse than the naive forecast.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from autoscaler.forecast.calibration import HorizonCalibration, quantiles_from
from autoscaler.forecast.ets import EtsResult, error_quantiles, step
from autoscaler.forecast.models import DAY_S, Settings, fit_with_fallback
from autoscaler.forecast.types import FloatArray, Forecast, History

DEFAULT_CANDIDATES: tuple[str, ...] = (
    "last", "seasonal_daily", "seasonal_weekly", "ses", "damped", "profile",
)
"""Simplest first: on a tie the simpler model wins. ``holt_winters`` is left out by default:
it is the costliest fit (about a third of the refit budget on its own) and on both real
traces ``profile`` models the daily cycle at least as well; pass ``candidates`` to add it."""

_ERROR_EWMA_WEIGHT = 0.05
"""Weight of the newest 1-step absolute error in ``recent_abs_error`` (~20-step memory)."""

_TIE = 0.005
"""A candidate must beat an earlier (simpler) one by more than 0.5 % of MAE to win."""

NAIVE = frozenset({"last", "seasonal_daily", "seasonal_weekly"})
"""The naive baselines: a fitted model must beat the best of them clearly to be used."""

NAIVE_MARGIN = 0.03
"""A non-naive choice (or a pair) must beat the best naive candidate's validation MAE at
that horizon by more than 3 %, else the naive one forecasts. Why: validation MAE is itself
noisy (a few days of origins), and a winner by less than that margin is as likely to lose
out of sample; a naive forecast can be chosen whenever it is as good, so ``auto`` cannot
be much worse than the best naive model on any trace."""

TRACKING_WEIGHT = 0.1
"""Weight of the newest 1-step error in the tracking signal's two running means."""

TRACKING_LIMIT = 0.7
"""Trigg's tracking signal (smoothed error / smoothed absolute error) beyond which the plan
is taken to lag a level shift, and the last value forecasts instead (``AutoResult``).
Why 0.7: with weight 0.1 and unbiased, independent errors the signal's standard deviation
is sqrt(0.1 / 1.9) / sqrt(2 / pi) = 0.29, so 0.7 is 2.4 of them (about 1 % of steps);
after a shift of 10 noise standard deviations it is crossed on the second step:
(0.19 x 10) / (0.81 + 0.19 x 10) = 0.70, taking the smoothed absolute error before the
shift as 0.8 (the mean absolute value of unit normal noise)."""

_MIN_SCORED = 20
"""Fewer scored origins than this at a horizon and that horizon is not compared."""


def horizon_mae(errors: FloatArray, rows: int) -> FloatArray:
    """MAE per horizon (column) over the last ``rows`` origins, NaN where fewer than
    ``_MIN_SCORED`` targets were present."""
    e = np.abs(errors[errors.shape[0] - rows:]) if rows > 0 else np.empty((0, errors.shape[1]))
    ok = np.isfinite(e)
    cnt = ok.sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mae = np.where(cnt >= _MIN_SCORED, np.nansum(e, axis=0) / np.maximum(cnt, 1), np.nan)
    return np.asarray(mae, dtype=np.float64)


def extend_offsets(off: FloatArray, steps: int) -> FloatArray:
    """Offsets for steps 1..steps: measured columns, then random-walk (sqrt h) growth."""
    hmax = off.shape[1]
    if hmax == 0:
        return np.zeros((off.shape[0], steps))
    if steps <= hmax:
        return off[:, :steps]
    extra = np.arange(hmax + 1, steps + 1, dtype=np.float64)
    return np.concatenate((off, off[:, -1:] * np.sqrt(extra / hmax)[None, :]), axis=1)


def _aligned_mean(mats: list[FloatArray]) -> FloatArray:
    """Mean of error matrices aligned on their last row and first column (the origins end
    at the history's end in every fit): the errors of the mean forecast, exactly, because
    each error is actual minus that model's (clipped) point forecast."""
    r = min(m.shape[0] for m in mats)
    c = min(m.shape[1] for m in mats)
    return np.asarray(sum(m[m.shape[0] - r:, :c] for m in mats) / len(mats), dtype=np.float64)


@dataclass(frozen=True)
class AutoResult:
    """The winners' results and which one (or which equal-weight pair) forecasts each step."""

    members: tuple[EtsResult, ...]
    """One result per model used anywhere in the plan."""
    combos: tuple[tuple[int, ...], ...]
    """Each entry: the ``members`` averaged (one = that model alone)."""
    offsets: tuple[FloatArray, ...]
    """Per combo, error quantiles (levels x measured horizons) of its own errors."""
    plan: tuple[int, ...]
    """``plan[h-1]`` indexes ``combos`` for step h; steps past the plan use its last entry."""
    scores: tuple[tuple[str, float], ...] = ()
    """(candidate, validation MAE at the longest scored horizon) for every candidate."""
    recent_mae: float = math.nan
    """The plan's validation MAE at the longest scored horizon (requests/s)."""
    recent_abs_error: float = math.nan
    """Running mean (EWMA) of the 1-step absolute error since the fit."""
    calibration: HorizonCalibration | None = None
    """Per-horizon multipliers of the half-widths and the plan's point forecasts awaiting
    their score (``calibration``); None right after a fit (every multiplier 1)."""
    tracking: tuple[float, float] = (math.nan, math.nan)
    """(smoothed 1-step error, smoothed 1-step absolute error) of the plan since the fit,
    weight ``TRACKING_WEIGHT``: Trigg's tracking signal is their ratio."""
    last_value: float = math.nan
    """The newest observation that was not missing."""
    extra_fallbacks: int = 0
    extra_reason: str | None = None
    chosen_by_horizon: tuple[str, ...] = ()
    """What forecasts steps 1..H, by name (``damped+profile`` for an averaged pair)."""
    model: str = field(init=False)

    def __post_init__(self) -> None:
        name = self._combo_name(self.plan[-1])
        # While the plan lags a level shift the last value forecasts: say so.
        object.__setattr__(self, "model", f"last (while {name} lags)" if self.lagging else name)

    def _combo_name(self, c: int) -> str:
        return "+".join(self.members[i].model for i in self.combos[c])

    @property
    def chosen(self) -> str:
        """What forecasts the longest scored horizon."""
        return self.chosen_by_horizon[-1] if self.chosen_by_horizon else self.model

    @property
    def fallbacks(self) -> int:
        return sum(m.fallbacks for m in self.members) + self.extra_fallbacks

    @property
    def fallback_reason(self) -> str | None:
        return next((m.fallback_reason for m in self.members if m.fallback_reason),
                    self.extra_reason)

    @property
    def valid(self) -> bool:
        return all(m.valid for m in self.members)

    @property
    def horizons(self) -> int:
        """Measured horizons: the widest offsets of any combo."""
        return max(int(o.shape[1]) for o in self.offsets)

    def _mean_and_offsets(self, steps: int) -> tuple[FloatArray, FloatArray]:
        """The plan's point forecast (clipped at 0) and unscaled offsets (levels x steps)."""
        if len(self.combos) == 1 and len(self.combos[0]) == 1:
            m = self.members[0]
            f = replace(m, calibration=None).forecast(steps)
            return f.mean, m._offsets(steps)
        means = [m.forecast(steps).mean for m in self.members]
        idx = np.asarray(self.plan[:steps], dtype=np.intp)
        if idx.size < steps:
            idx = np.concatenate((idx, np.full(steps - idx.size, self.plan[-1], np.intp)))
        cols = np.arange(steps)
        mean_c = np.stack([np.mean([means[i] for i in c], axis=0) for c in self.combos])
        off_c = np.stack([extend_offsets(o, steps) for o in self.offsets])  # combo, level, h
        return (np.asarray(mean_c[idx, cols], dtype=np.float64),
                np.asarray(off_c[idx, :, cols].T, dtype=np.float64))

    @property
    def lagging(self) -> bool:
        """True while the plan's recent 1-step errors are one-sided beyond
        ``TRACKING_LIMIT`` (Trigg's tracking signal): a smoother with a small smoothing
        constant trails a level shift (a burst) for many steps, and the last value is then
        the better forecast at every horizon. Measured on the embedded demo's 10-s bins:
        in the ten minutes of its first burst the fitted plan's 1-step MAE was 4.0x the
        last value's (1.15x in the second burst's), which made ``auto`` 5 % worse than the
        last value over four hours while it was 11-33 % better in the twenty other
        ten-minute stretches."""
        e, m = self.tracking
        return (math.isfinite(self.last_value) and math.isfinite(e) and m > 0.0
                and abs(e) > TRACKING_LIMIT * m)

    def forecast(self, steps: int) -> Forecast:
        steps = max(1, int(steps))
        if not self.valid:
            nan = np.full(steps, np.nan)
            return Forecast(nan, {lv: nan.copy() for lv in self.members[0].levels})
        return self._issued(*self._mean_and_offsets(steps))

    def _issued(self, mean: FloatArray, off: FloatArray) -> Forecast:
        """The forecast issued from the plan's mean and offsets: the last value instead
        while the plan lags, then the calibrated quantiles."""
        steps = mean.shape[0]
        if self.lagging:
            # The last value, with the plan's spreads around it (its median offset is a
            # correction of the plan's own bias, so it is taken out).
            mean = np.full(steps, max(self.last_value, 0.0))
            off = off - off[self.members[0].levels.index(0.5)][None, :]
        scales = (self.calibration.scales_for(steps) if self.calibration is not None
                  else np.ones(steps))
        return Forecast(mean, quantiles_from(mean, off, self.members[0].levels, scales))

    def update(self, value: float) -> AutoResult:
        if not self.valid:
            return self
        big_h = self.horizons
        plan_mean, plan_off = self._mean_and_offsets(max(big_h, 1))
        f = self._issued(plan_mean, plan_off)
        err = abs(value - float(f.mean[0])) if math.isfinite(value) else math.nan
        ewma = self.recent_abs_error
        tracking, last = self.tracking, self.last_value
        if math.isfinite(err):
            w = _ERROR_EWMA_WEIGHT
            ewma = err if math.isnan(ewma) else (1 - w) * ewma + w * err
            # The tracking signal follows the plan's own error, whichever forecast was
            # issued, so that it falls back once the plan has caught up.
            own = value - float(plan_mean[0])
            e0, m0 = tracking
            wt = TRACKING_WEIGHT
            # Started at (0.1 x e, |e|): one error alone gives a signal of 0.1, not 1.
            tracking = ((wt * own, abs(own)) if math.isnan(e0)
                        else ((1 - wt) * e0 + wt * own, (1 - wt) * m0 + wt * abs(own)))
            last = float(value)
        cal = (self.calibration if self.calibration is not None
               else HorizonCalibration.fresh(big_h))
        if cal.horizons != big_h:
            cal = cal.resized(big_h)
        lo, hi = f.interval(0.9)
        cal = cal.observe(lo, hi, float(value))
        # The members only move their state: the plan's own calibration is the one used.
        members = tuple(replace(m, state=step(m.params, m.state, float(value)))
                        for m in self.members)
        return replace(self, members=members, recent_abs_error=ewma, calibration=cal,
                       tracking=tracking, last_value=last)


def _single(res: EtsResult, chosen: str, reason: str | None = None) -> AutoResult:
    return AutoResult((replace(res, errors=None),), ((0,),), (res.offsets,), (0,),
                      chosen_by_horizon=(chosen,), extra_fallbacks=1 if reason else 0,
                      extra_reason=reason)


@dataclass(frozen=True)
class AutoForecaster:
    settings: Settings
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    horizon_s: float | None = None
    """Longest horizon compared (default ``settings.max_horizon_s``); longer steps use its
    winner."""
    validation_s: float = 3 * DAY_S
    """Scored origins: the last this-many seconds (capped by ``interval_window_s`` and by
    a third of the history)."""
    combine: bool = True
    """Also score the equal-weight mean of each horizon's two best models (forecast
    combination); it wins a horizon only by beating the best single model."""
    name: str = "auto"

    def fit(self, history: History) -> AutoResult:
        s = self.settings
        n = len(history)
        hmax = min(s.steps(self.horizon_s if self.horizon_s is not None else s.max_horizon_s),
                   s.steps(s.max_horizon_s))
        rows = min(s.steps(self.validation_s), s.steps(s.interval_window_s), n // 3)
        if rows < hmax + _MIN_SCORED:
            # Too short to compare on held-back origins: take the robust simple model.
            return _single(fit_with_fallback("ses", history, s), "ses",
                           f"auto: history too short for a backtest ({n} samples)")
        fits: list[EtsResult] = []
        errs: list[FloatArray] = []
        seen: set[str] = set()
        quick = replace(s, quantiles=False)
        for cand in self.candidates:
            r = fit_with_fallback(cand, history, quick, keep_errors=True)
            if r.model in seen or not r.valid or r.errors is None or r.errors.shape[0] == 0:
                continue  # it fell back to a model already scored
            seen.add(r.model)
            fits.append(r)
            errs.append(r.errors)
        if not fits:
            return _single(fit_with_fallback("last", history, s), "last",
                           "auto: no candidate could be fitted")
        # Every fit's error rows end at the history's end, so the last ``rows`` rows are the
        # same origins for every candidate (a shorter matrix scores fewer).
        table = np.full((len(fits), hmax), np.nan)  # candidates x horizons
        for i, e in enumerate(errs):
            got = horizon_mae(e, min(rows, e.shape[0]))[:hmax]
            table[i, : got.size] = got
        picks: list[tuple[int, ...]] = []
        maes: list[float] = []
        pair_mae: dict[tuple[int, int], FloatArray] = {}
        for h in range(hmax):
            col = table[:, h]
            best = -1
            for i, v in enumerate(col):
                if math.isfinite(v) and (best < 0 or v < col[best] * (1 - _TIE)):
                    best = i
            if best < 0:
                picks.append(picks[-1] if picks else ())
                maes.append(maes[-1] if maes else math.nan)
                continue
            naive = [i for i, f in enumerate(fits)
                     if f.model in NAIVE and math.isfinite(col[i])]
            best_naive = min(naive, key=lambda i: col[i]) if naive else -1
            if (best_naive >= 0 and fits[best].model not in NAIVE
                    and not col[best] < col[best_naive] * (1 - NAIVE_MARGIN)):
                best = best_naive
            pick: tuple[int, ...] = (best,)
            mae = float(col[best])
            ranked = [i for i in np.argsort(col, kind="stable") if math.isfinite(col[i])]
            if self.combine and len(ranked) >= 2:
                pair = (int(min(ranked[0], ranked[1])), int(max(ranked[0], ranked[1])))
                if pair not in pair_mae:
                    both = _aligned_mean([errs[pair[0]], errs[pair[1]]])
                    m = np.full(hmax, np.nan)
                    got = horizon_mae(both, min(rows, both.shape[0]))[:hmax]
                    m[: got.size] = got
                    pair_mae[pair] = m
                pm = float(pair_mae[pair][h])
                floor = col[best_naive] * (1 - NAIVE_MARGIN) if best_naive >= 0 else math.inf
                if math.isfinite(pm) and pm < mae * (1 - _TIE) and pm < floor:
                    pick, mae = pair, pm
            picks.append(pick)
            maes.append(mae)
        if not picks[-1]:
            return _single(fit_with_fallback("ses", history, s), "ses",
                           "auto: no horizon had enough scored origins")
        picks = [p if p else picks[-1] for p in picks]
        used = sorted({i for p in picks for i in p})
        combos_l = list(dict.fromkeys(picks))
        members = tuple(replace(fits[i], errors=None,
                                offsets=error_quantiles(errs[i])) for i in used)
        pos = {i: k for k, i in enumerate(used)}
        combos = tuple(tuple(pos[i] for i in c) for c in combos_l)
        offsets = tuple(members[c[0]].offsets if len(c) == 1
                        else error_quantiles(_aligned_mean([errs[used[i]] for i in c]))
                        for c in combos)
        plan = tuple(combos_l.index(p) for p in picks)
        scores = tuple((f.model, float(table[i, -1])) for i, f in enumerate(fits))
        names = tuple("+".join(fits[i].model for i in p) for p in picks)
        return AutoResult(members, combos, offsets, plan, scores=scores,
                          recent_mae=maes[-1], chosen_by_horizon=names)
