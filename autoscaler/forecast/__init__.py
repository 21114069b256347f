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

from autoscaler.forecast.auto import DEFAULT_CANDIDATES, AutoForecaster, AutoResult
from autoscaler.forecast.ets import EtsResult
from autoscaler.forecast.models import FITTERS, EtsForecaster, Settings
from autoscaler.forecast.types import (
    QUANTILE_LEVELS,
    Forecast,
    Forecaster,
    ForecastResult,
    History,
)

MODEL_NAMES: tuple[str, ...] = (*FITTERS, "auto")
BASELINES: tuple[str, ...] = ("last", "seasonal_daily", "seasonal_weekly")


def make_forecaster(name: str, *, resolution_s: float, **options: object) -> Forecaster:
    """Build a forecaster. Options (seconds): ``fit_window_s``, ``interval_window_s``,
    ``max_horizon_s``, ``max_history_s``; for ``auto`` also ``candidates`` (names),
    ``horizon_s`` (longest horizon compared; default ``max_horizon_s``) and
    ``validation_s`` (scored window, default 3 days) and ``combine`` (also score the mean
    of each horizon's two best models; default True). Unknown names or options raise
    ``ValueError``."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown forecaster {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if not (resolution_s > 0):
        raise ValueError(f"resolution_s must be > 0, got {resolution_s!r}")
    auto_keys = {"candidates", "horizon_s", "validation_s", "combine"}
    common = {k: float(v) for k, v in options.items() if k not in auto_keys}  # type: ignore[arg-type]
    try:
        settings = Settings(resolution_s=float(resolution_s), **common)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ValueError(f"unknown forecaster option: {exc}") from exc
    if name != "auto":
        if auto_keys & options.keys():
            raise ValueError(f"options {sorted(auto_keys & options.keys())} are for 'auto' only")
        return EtsForecaster(name, settings)
    cands: tuple[str, ...] = tuple(options.get("candidates", DEFAULT_CANDIDATES))  # type: ignore[arg-type]
    bad = [c for c in cands if c not in FITTERS]
    if bad:
        raise ValueError(f"unknown candidates {bad}; allowed: {', '.join(FITTERS)}")
    horizon = options.get("horizon_s")
    return AutoForecaster(
        settings, candidates=cands,
        horizon_s=None if horizon is None else float(horizon),  # type: ignore[arg-type]
        validation_s=float(options.get("validation_s", 3 * 86_400.0)),  # type: ignore[arg-type]
        combine=bool(options.get("combine", True)),
    )


__all__ = [
    "BASELINES", "DEFAULT_CANDIDATES", "MODEL_NAMES", "QUANTILE_LEVELS", "AutoForecaster",
    "AutoResult", "EtsResult", "Forecast", "ForecastResult", "Forecaster", "History",
    "make_forecaster",
]
