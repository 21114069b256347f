"""The forecasting models, each a setting of the one filter in ``ets``, plus fallbacks.

Parameters come from statsmodels (``ExponentialSmoothing``, maximum likelihood by SSE)
fitted on the last ``fit_window_s`` of history; the state is then run by our own filter so
that ``update`` is cheap and identical to what statsmodels would compute (checked by the
oracle tests). A model that cannot be fitted (too little data, constant data, a
statsmodels error or ``ConvergenceWarning``) falls back along ``FALLBACK`` and the result
counts it (``fallbacks``, ``fallback_reason``): the fit never raises for bad data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from autoscaler.forecast.ets import EtsParams, EtsResult, EtsState, error_quantiles, run
from autoscaler.forecast.types import QUANTILE_LEVELS, FloatArray, History

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S

FALLBACK: dict[str, str] = {
    "holt_winters_weekly": "holt_winters",
    "holt_winters": "damped",
    "profile": "ses",
    "damped": "ses",
    "ses": "last",
    "seasonal_weekly": "seasonal_daily",
    "seasonal_daily": "last",
}
"""Where each model falls back to when it cannot be fitted; ``last`` is the floor."""


@dataclass(frozen=True)
class Settings:
    """Options shared by every model (all seconds, converted to steps at fit time)."""

    resolution_s: float
    fit_window_s: float = 3 * DAY_S
    """Parameters are estimated on this much recent history (bounds the refit cost:
    statsmodels' optimiser is linear in the sample count)."""
    interval_window_s: float = 3 * DAY_S
    """Forecast origins whose h-step errors give the quantiles."""
    max_horizon_s: float = 3600.0
    """Horizons up to this are measured for the quantiles; beyond, they grow as sqrt(h)."""
    max_history_s: float = 28 * DAY_S
    """Older history is ignored (the ``profile`` model's shape uses all of the rest)."""
    quantiles: bool = True
    """False leaves ``offsets`` empty (no intervals): ``auto`` fits its candidates so and
    computes intervals only for the winners, from the kept error matrix."""

    def steps(self, seconds: float) -> int:
        return max(1, math.ceil(seconds / self.resolution_s - 1e-9))


class Unfit(Exception):
    """This model cannot be fitted on this history; ``str(exc)`` says why."""


def _filled(y: FloatArray) -> FloatArray:
    """NaNs replaced by linear interpolation (nearest value at the edges)."""
    ok = np.isfinite(y)
    if ok.all():
        return y
    x = np.arange(y.shape[0], dtype=np.float64)
    return np.asarray(np.interp(x, x[ok], y[ok]), dtype=np.float64)


def _abs_index(h: History) -> int:
    """Index of the history's first sample counted from time 0 in steps (for phases)."""
    return round(h.start_s / h.resolution_s)


def _period(s: Settings, seconds: float) -> int:
    steps = seconds / s.resolution_s
    if abs(steps - round(steps)) > 1e-6:
        raise Unfit(f"resolution {s.resolution_s:g} s does not divide {seconds:g} s")
    return round(steps)


def _finish(model: str, p: EtsParams, st0: EtsState, y: FloatArray, s: Settings) -> EtsResult:
    end, errors = run(p, st0, y, s.steps(s.max_horizon_s), s.steps(s.interval_window_s))
    if not (math.isfinite(end.level) and math.isfinite(end.trend)):
        raise Unfit("filter diverged")
    offsets = error_quantiles(errors) if s.quantiles else np.zeros((len(QUANTILE_LEVELS), 0))
    return EtsResult(model=model, params=p, state=end, offsets=offsets, errors=errors)


def _no_season() -> FloatArray:
    a = np.empty(0)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class _SmParams:
    alpha: float
    beta: float
    gamma: float
    phi: float
    level0: float
    trend0: float
    seasons0: FloatArray


def _statsmodels_fit(y: FloatArray, **kw: object) -> _SmParams:
    """statsmodels ExponentialSmoothing params, or Unfit on an error or a convergence
    warning (both mean the optimiser's answer cannot be trusted)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    if float(np.nanstd(y)) == 0.0:
        raise Unfit("constant history")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = ExponentialSmoothing(y, **kw).fit(use_brute=False)
        # statsmodels raises a variety (ValueError, LinAlgError, IndexError...) on
        # degenerate data; any of them means "fall back", never "crash the loop".
        except Exception as exc:
            raise Unfit(f"statsmodels failed: {type(exc).__name__}: {exc}") from exc
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            raise Unfit(f"statsmodels did not converge: {w.message}")
    p = res.params

    def num(key: str, default: float) -> float:
        v = float(p.get(key, default))
        return default if math.isnan(v) else v

    out = _SmParams(
        alpha=num("smoothing_level", math.nan),
        beta=num("smoothing_trend", 0.0),
        gamma=num("smoothing_seasonal", 0.0),
        phi=num("damping_trend", 1.0),
        level0=num("initial_level", math.nan),
        trend0=num("initial_trend", 0.0),
        seasons0=np.asarray(p.get("initial_seasons", np.empty(0)), dtype=np.float64),
    )
    if not (math.isfinite(out.alpha) and math.isfinite(out.level0)):
        raise Unfit(f"statsmodels returned alpha={out.alpha}, level={out.level0}")
    return out


def _window(h: History, s: Settings, min_len: int, extra: int = 0) -> tuple[FloatArray, int]:
    """The last fit window (at least ``min_len`` samples) and its first absolute index."""
    n_want = max(s.steps(s.fit_window_s), min_len) + extra
    t = h.tail(min(n_want, s.steps(s.max_history_s)))
    if len(t) < min_len:
        raise Unfit(f"history too short: {len(t)} samples, need {min_len}")
    return np.asarray(t.values), _abs_index(t)


# --- the models ---------------------------------------------------------------------------


def fit_last(h: History, s: Settings) -> EtsResult:
    y, _ = _window(h, s, 1)
    first = y[np.isfinite(y)][0]
    st = EtsState(float(first), 0.0, _no_season(), 0, _no_season(), 0)
    return _finish("last", EtsParams(alpha=1.0), st, y, s)


def _fit_seasonal_naive(name: str, period_s: float) -> Callable[[History, Settings], EtsResult]:
    def fit(h: History, s: Settings) -> EtsResult:
        m = _period(s, period_s)
        y, a0 = _window(h, s, m + 1, extra=m)
        head = y[:m]
        if not np.isfinite(head).any():
            head = np.full(m, float(np.nanmean(y)))
        season = np.empty(m)
        season[(a0 + np.arange(m)) % m] = _filled(head)
        season.setflags(write=False)
        st = EtsState(0.0, 0.0, season, (a0 + m) % m, _no_season(), 0)
        return _finish(name, EtsParams(alpha=0.0, gamma=1.0, period=m), st, y[m:], s)

    return fit


def fit_ses(h: History, s: Settings) -> EtsResult:
    y, _ = _window(h, s, 10)
    p = _statsmodels_fit(_filled(y), initialization_method="estimated")
    st = EtsState(p.level0, 0.0, _no_season(), 0, _no_season(), 0)
    return _finish("ses", EtsParams(alpha=p.alpha), st, y, s)


def fit_damped(h: History, s: Settings) -> EtsResult:
    y, _ = _window(h, s, 20)
    p = _statsmodels_fit(_filled(y), trend="add", damped_trend=True,
                         initialization_method="estimated")
    st = EtsState(p.level0, p.trend0, _no_season(), 0, _no_season(), 0)
    return _finish("damped", EtsParams(alpha=p.alpha, beta=p.beta, phi=p.phi), st, y, s)


def _fit_holt_winters(name: str, period_s: float) -> Callable[[History, Settings], EtsResult]:
    def fit(h: History, s: Settings) -> EtsResult:
        m = _period(s, period_s)
        if m < 2:
            raise Unfit(f"seasonal period of {m} step is no season")
        # statsmodels' heuristic initialisation needs two full cycles (plus a margin for
        # the optimiser); "estimated" would optimise all m initial seasons: far too slow.
        y, a0 = _window(h, s, 2 * m + 2)
        p = _statsmodels_fit(_filled(y), trend="add", damped_trend=True, seasonal="add",
                             seasonal_periods=m, initialization_method="heuristic")
        season = np.empty(m)
        season[(a0 + np.arange(m)) % m] = p.seasons0
        season.setflags(write=False)
        st = EtsState(p.level0, p.trend0, season, a0 % m, _no_season(), 0)
        params = EtsParams(alpha=p.alpha, beta=p.beta, gamma=p.gamma, phi=p.phi, period=m)
        return _finish(name, params, st, y, s)

    return fit


def seasonal_profile(y: FloatArray, a0: int, day: int, weekly: bool) -> FloatArray:
    """A robust time-of-day x day-of-week shape, by absolute phase.

    Returns an array of length ``7*day`` (weekly) or ``day``, indexed by absolute step
    modulo its length. Day-of-week factors are the median daily mean of that weekday over
    the median daily mean of all days; the time-of-day shape is the median over days of
    the weekday-adjusted values, smoothed over ~15 minutes (15 bins at 1-minute
    resolution) so that one noisy minute does not become a permanent feature.
    """
    lead = a0 % day
    n_days = -(-(lead + y.shape[0]) // day)
    grid = np.full(n_days * day, np.nan)
    grid[lead:lead + y.shape[0]] = y
    days = grid.reshape(n_days, day)
    first_dow = (a0 // day) % 7
    dows = (first_dow + np.arange(n_days)) % 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN days/phases are expected
        daily = np.nanmean(days, axis=1)
        factor = np.ones(7)
        overall = float(np.nanmedian(daily))
        if weekly and overall > 0:
            for d in range(7):
                f = float(np.nanmedian(daily[dows == d]))
                factor[d] = f / overall if math.isfinite(f) else 1.0
        day_factor = factor[dows][:, None]
        adj = np.where(day_factor > 0, days / np.where(day_factor > 0, day_factor, 1.0), np.nan)
        shape = np.nanmedian(adj, axis=0)
    shape = np.where(np.isfinite(shape), shape, overall if math.isfinite(overall) else 0.0)
    k = max(1, int(900 // (DAY_S / day)))
    k += 1 - k % 2
    if k > 1:
        pad = np.concatenate((shape[-(k // 2):], shape, shape[: k // 2]))
        shape = np.convolve(pad, np.ones(k) / k, mode="valid")
    if not weekly:
        return np.asarray(shape, dtype=np.float64)
    return np.asarray((factor[:, None] * shape[None, :]).reshape(-1), dtype=np.float64)


def fit_profile(h: History, s: Settings) -> EtsResult:
    """Multi-seasonal: a fixed time-of-week profile from all history plus an SES level on
    what the profile does not explain (regime changes shift that level)."""
    day = _period(s, DAY_S)
    full = h.tail(s.steps(s.max_history_s))
    n_ok = int(np.isfinite(full.values).sum())
    if n_ok < 2 * day:
        raise Unfit(f"history too short: {n_ok} finite samples, need {2 * day} (two days)")
    weekly = len(full) >= 14 * day
    prof = seasonal_profile(np.asarray(full.values), _abs_index(full), day, weekly)
    prof.setflags(write=False)
    y, a0 = _window(h, s, 20)
    remainder = y - prof[(a0 + np.arange(y.shape[0])) % prof.size]
    p = _statsmodels_fit(_filled(remainder), initialization_method="estimated")
    st = EtsState(p.level0, 0.0, _no_season(), 0, prof, a0 % prof.size)
    return _finish("profile", EtsParams(alpha=p.alpha), st, y, s)


FITTERS: dict[str, Callable[[History, Settings], EtsResult]] = {
    "last": fit_last,
    "seasonal_daily": _fit_seasonal_naive("seasonal_daily", DAY_S),
    "seasonal_weekly": _fit_seasonal_naive("seasonal_weekly", WEEK_S),
    "ses": fit_ses,
    "damped": fit_damped,
    "holt_winters": _fit_holt_winters("holt_winters", DAY_S),
    "holt_winters_weekly": _fit_holt_winters("holt_winters_weekly", WEEK_S),
    "profile": fit_profile,
}


def empty_result(reason: str, fallbacks: int) -> EtsResult:
    """The result for a history with no finite value: every forecast is NaN (hold)."""
    st = EtsState(math.nan, 0.0, _no_season(), 0, _no_season(), 0)
    return EtsResult(model="none", params=EtsParams(alpha=1.0), state=st,
                     offsets=np.zeros((6, 0)), fallbacks=fallbacks, fallback_reason=reason,
                     valid=False)


def fit_with_fallback(name: str, h: History, s: Settings, *,
                      keep_errors: bool = False) -> EtsResult:
    """Fit ``name``; on ``Unfit`` walk down ``FALLBACK`` counting each step. The in-sample
    error matrix is dropped unless ``keep_errors``."""
    fallbacks = 0
    reason: str | None = None
    if not np.isfinite(h.values).any():
        return empty_result("no finite value in history", 1)
    current: str | None = name
    while current is not None:
        try:
            res = FITTERS[current](h, s)
        except Unfit as exc:
            fallbacks += 1
            reason = f"{current}: {exc}"
            current = FALLBACK.get(current)
            continue
        return replace(res, fallbacks=fallbacks, fallback_reason=reason,
                       errors=res.errors if keep_errors else None)
    return empty_result(reason or "no model could be fitted", fallbacks)


@dataclass(frozen=True)
class EtsForecaster:
    """A named model with its settings (``make_forecaster`` builds these)."""

    name: str
    settings: Settings

    def fit(self, history: History) -> EtsResult:
        return fit_with_fallback(self.name, history, self.settings)
