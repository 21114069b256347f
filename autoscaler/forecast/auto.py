"""Automatic model choice per workload by a rolling-origin backtest on its own history.

``fit`` holds back the last ``validation_s`` of history, fits every candidate on the rest,
then walks forward one step at a time exactly as the live loop would (``update`` per
step, no refit) and scores each candidate by its MAE at ``horizon_s`` ahead. The winner
is refitted on the whole history. The result exposes the choice (``chosen``), every
candidate's score, and a running 1-step error so the controller can publish them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from autoscaler.forecast.ets import EtsResult, point_forecast
from autoscaler.forecast.models import DAY_S, Settings, fit_with_fallback
from autoscaler.forecast.types import Forecast, History

DEFAULT_CANDIDATES: tuple[str, ...] = (
    "last", "seasonal_daily", "seasonal_weekly", "ses", "damped", "holt_winters", "profile",
)
"""Simplest first: on a tie the simpler model wins."""

_ERROR_EWMA_WEIGHT = 0.05
"""Weight of the newest 1-step absolute error in ``recent_abs_error`` (~20-step memory)."""


def validation_mae(res: EtsResult, actual: np.ndarray, steps: int) -> float:
    """MAE of ``res``'s ``steps``-ahead point forecast over ``actual``, walking forward
    with ``update`` (origins where the target is missing are skipped)."""
    total, count = 0.0, 0
    r = res
    n = int(actual.shape[0])
    for i in range(n):
        if i + steps - 1 < n:
            target = float(actual[i + steps - 1])
            if math.isfinite(target):
                pred = max(float(point_forecast(r.params, r.state, steps)[-1]), 0.0)
                total += abs(target - pred)
                count += 1
        r = r.update(float(actual[i]))
    return total / count if count else math.inf


@dataclass(frozen=True)
class AutoResult:
    """The chosen model's result plus what the choice was based on."""

    inner: EtsResult
    chosen: str
    """The candidate that won the backtest (``model`` may differ if its refit fell back)."""
    scores: tuple[tuple[str, float], ...] = ()
    """(candidate, validation MAE at ``horizon_s``) for every candidate tried."""
    recent_mae: float = math.nan
    """The winner's validation MAE (requests/s)."""
    recent_abs_error: float = math.nan
    """Running mean (EWMA) of the 1-step absolute error since the fit."""
    extra_fallbacks: int = 0
    extra_reason: str | None = None
    model: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", self.inner.model)

    @property
    def fallbacks(self) -> int:
        return self.inner.fallbacks + self.extra_fallbacks

    @property
    def fallback_reason(self) -> str | None:
        return self.inner.fallback_reason or self.extra_reason

    @property
    def valid(self) -> bool:
        return self.inner.valid

    def forecast(self, steps: int) -> Forecast:
        return self.inner.forecast(steps)

    def update(self, value: float) -> AutoResult:
        err = math.nan
        if math.isfinite(value) and self.inner.valid:
            pred = max(float(point_forecast(self.inner.params, self.inner.state, 1)[0]), 0.0)
            err = abs(value - pred)
        ewma = self.recent_abs_error
        if math.isfinite(err):
            w = _ERROR_EWMA_WEIGHT
            ewma = err if math.isnan(ewma) else (1 - w) * ewma + w * err
        return replace(self, inner=self.inner.update(value), recent_abs_error=ewma)


@dataclass(frozen=True)
class AutoForecaster:
    settings: Settings
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    horizon_s: float = 900.0
    """Score candidates at this lead time (the policy's look-ahead)."""
    validation_s: float = DAY_S
    """Held-back history walked forward for the score (at most a third of the history)."""
    name: str = "auto"

    def fit(self, history: History) -> AutoResult:
        s = self.settings
        n = len(history)
        steps = s.steps(self.horizon_s)
        v = min(s.steps(self.validation_s), n // 3)
        if v < steps + 10:
            # Too short to compare on held-back data: take the robust simple model.
            inner = fit_with_fallback("ses", history, s)
            return AutoResult(inner, chosen="ses", extra_fallbacks=1,
                              extra_reason=f"auto: history too short for a backtest ({n})")
        head = History(history.start_s, history.resolution_s, history.values[: n - v])
        actual = np.asarray(history.values[n - v:])
        scores: list[tuple[str, float]] = []
        seen: set[str] = set()
        for cand in self.candidates:
            r = fit_with_fallback(cand, head, s)
            if r.model in seen or not r.valid:
                continue  # it fell back to a model already scored
            seen.add(r.model)
            scores.append((r.model, validation_mae(r, actual, steps)))
        if not scores:
            inner = fit_with_fallback("last", history, s)
            return AutoResult(inner, chosen="last", extra_fallbacks=1,
                              extra_reason="auto: no candidate could be fitted")
        best = min(scores, key=lambda kv: kv[1])
        inner = fit_with_fallback(best[0], history, s)
        return AutoResult(inner, chosen=best[0], scores=tuple(scores), recent_mae=best[1])
