"""Load forecasting for the predictive policy (pure: no I/O, no clock).

``make_forecaster(name, resolution_s=...)`` returns a model; ``fit(History)`` returns a
result with ``forecast(steps)`` (point + quantiles) and a cheap ``update(value)``.
Names: ``last``, ``seasonal_daily``, ``seasonal_weekly``, ``ses``, ``damped``,
``holt_winters`` (daily season), ``holt_winters_weekly``, ``profile`` (time-of-week shape
+ smoothed level), ``auto`` (chosen per workload and per horizon on its own recent history).

Fallbacks are counted on each result (``fallbacks``, ``fallback_reason``); the package
keeps no global mutable state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from autoscaler.forecast.auto import DEFAULT_CANDIDATES, AutoForecaster, AutoResult
from autoscaler.forecast.calibration import HorizonCalibration
from autoscaler.forecast.ets import EtsResult
from autoscaler.forecast.models import DAY_S, FITTERS, EtsForecaster, Settings
from autoscaler.forecast.types import (
    QUANTILE_LEVELS,
    Forecast,
    Forecaster,
    ForecastResult,
    History,
)

MODEL_NAMES: tuple[str, ...] = (*FITTERS, "auto")


def carry_calibration(old: ForecastResult | None, new: ForecastResult) -> ForecastResult:
    """``new`` (a refit) with ``old``'s per-horizon interval calibration
    (``calibration.HorizonCalibration``: the multipliers and the point forecasts still
    awaiting their score).

    A refit re-measures the error quantiles on its window, but the multipliers correct what
    such in-window quantiles get wrong out of sample, and that bias outlives a refit: on a
    bursty series the 5th/95th percentiles of ~40 errors include a spike and cover
    0.95-0.99 of what follows. Reset to 1 at every refit (every 10 minutes on the Azure
    hours), a multiplier moving e^(-0.005) per covered step could shrink an interval by at
    most e^(-0.3) = 0.74 before being thrown away. The forecasts awaiting their score were
    issued by the old result; they are still what was promised, so they are scored too."""
    cal = getattr(old, "calibration", None)
    if (isinstance(cal, HorizonCalibration) and hasattr(new, "calibration")
            and dataclasses.is_dataclass(new) and not isinstance(new, type)):
        return dataclasses.replace(new, calibration=cal)
    return new


BASELINES: tuple[str, ...] = ("last", "seasonal_daily", "seasonal_weekly")


def make_forecaster(
    name: str,
    *,
    resolution_s: float,
    fit_window_s: float | None = None,
    interval_window_s: float | None = None,
    max_horizon_s: float | None = None,
    max_history_s: float | None = None,
    candidates: Sequence[str] | None = None,
    horizon_s: float | None = None,
    validation_s: float | None = None,
    combine: bool | None = None,
) -> Forecaster:
    """Build a forecaster. Every option is keyword-only, in seconds where it is a time,
    and None means the model's default (``Settings`` and ``AutoForecaster`` name them):
    ``fit_window_s``, ``interval_window_s``, ``max_horizon_s``, ``max_history_s``; for
    ``auto`` only: ``candidates`` (model names), ``horizon_s`` (longest horizon compared;
    default ``max_horizon_s``), ``validation_s`` (scored window, default 3 days) and
    ``combine`` (also score the mean of each horizon's two best models; default True).
    Unknown names, or an ``auto`` option given to another model, raise ``ValueError``."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown forecaster {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if not (resolution_s > 0):
        raise ValueError(f"resolution_s must be > 0, got {resolution_s!r}")
    for field_name, value in (("fit_window_s", fit_window_s),
                              ("interval_window_s", interval_window_s),
                              ("max_horizon_s", max_horizon_s),
                              ("max_history_s", max_history_s)):
        if value is not None and not value > 0:
            raise ValueError(f"{field_name} must be > 0, got {value!r}")
    base = Settings(resolution_s=float(resolution_s))
    settings = Settings(
        resolution_s=float(resolution_s),
        fit_window_s=base.fit_window_s if fit_window_s is None else float(fit_window_s),
        interval_window_s=(base.interval_window_s if interval_window_s is None
                           else float(interval_window_s)),
        max_horizon_s=base.max_horizon_s if max_horizon_s is None else float(max_horizon_s),
        max_history_s=base.max_history_s if max_history_s is None else float(max_history_s))
    auto_only = {k for k, v in (("candidates", candidates), ("horizon_s", horizon_s),
                                ("validation_s", validation_s), ("combine", combine))
                 if v is not None}
    if name != "auto":
        if auto_only:
            raise ValueError(f"options {sorted(auto_only)} are for 'auto' only")
        return EtsForecaster(name, settings)
    cands = tuple(candidates) if candidates is not None else DEFAULT_CANDIDATES
    bad = [c for c in cands if c not in FITTERS]
    if bad:
        raise ValueError(f"unknown candidates {bad}; allowed: {', '.join(FITTERS)}")
    return AutoForecaster(
        settings, candidates=cands,
        horizon_s=None if horizon_s is None else float(horizon_s),
        validation_s=3 * DAY_S if validation_s is None else float(validation_s),
        combine=True if combine is None else combine,
    )


__all__ = [
    "BASELINES", "DEFAULT_CANDIDATES", "MODEL_NAMES", "QUANTILE_LEVELS", "AutoForecaster",
    "AutoResult", "EtsResult", "Forecast", "ForecastResult", "Forecaster", "History",
    "HorizonCalibration", "carry_calibration", "make_forecaster",
]
