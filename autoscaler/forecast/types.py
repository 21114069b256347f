"""The forecasting vocabulary: history in, forecast out, and the two narrow protocols.

Shaped like statsmodels: a ``Forecaster`` is the model (settings only), ``fit(history)``
returns a ``ForecastResult`` that can ``forecast(steps)`` and take one more observation
with ``update(value)``. Everything is immutable; ``update`` returns a new result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.5, 0.9, 0.95, 0.99)
"""Levels every ``Forecast`` carries. The 90% interval is [0.05, 0.95]; the policy plans
headroom at one of the upper levels (0.5, 0.9, 0.99)."""


@dataclass(frozen=True)
class History:
    """Equally spaced observations: ``values[i]`` is the mean rate over
    ``[start_s + i*resolution_s, start_s + (i+1)*resolution_s)``. NaN means missing.

    ``start_s`` places the samples on the caller's time axis so that daily and weekly
    phases line up (seconds since a midnight, or epoch seconds; phase is taken modulo a
    day and a week, so any axis whose zero is a midnight works).
    """

    start_s: float
    resolution_s: float
    values: FloatArray

    def __post_init__(self) -> None:
        arr = np.array(self.values, dtype=np.float64, copy=True).reshape(-1)
        arr.setflags(write=False)
        object.__setattr__(self, "values", arr)
        if not (self.resolution_s > 0 and np.isfinite(self.resolution_s)):
            raise ValueError(f"resolution_s must be a positive number, got {self.resolution_s!r}")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end_s(self) -> float:
        """Start of the bin that would come next."""
        return self.start_s + len(self) * self.resolution_s

    def tail(self, n: int) -> History:
        """The last ``n`` samples (all if fewer), with ``start_s`` moved accordingly."""
        k = max(0, len(self) - max(0, n))
        return History(self.start_s + k * self.resolution_s, self.resolution_s, self.values[k:])

    def append(self, value: float, max_len: int | None = None) -> History:
        """A new history with ``value`` appended, keeping at most ``max_len`` samples."""
        vals = np.append(self.values, float(value))
        h = History(self.start_s, self.resolution_s, vals)
        return h if max_len is None else h.tail(max_len)


@dataclass(frozen=True)
class Forecast:
    """Point forecast and quantiles for steps 1..len(mean) after the history's end.

    ``quantiles[p][k]`` is the p-quantile of demand ``k+1`` steps ahead. All values are
    clipped at 0 (demand is non-negative). A forecast from a result with no usable data
    holds NaN everywhere; callers must treat that as "no forecast" (hold).
    """

    mean: FloatArray
    quantiles: Mapping[float, FloatArray] = field(default_factory=dict)

    def interval(self, coverage: float = 0.9) -> tuple[FloatArray, FloatArray]:
        """The central interval with this coverage (0.9 -> levels 0.05 and 0.95)."""
        lo, hi = round((1 - coverage) / 2, 6), round(1 - (1 - coverage) / 2, 6)
        if lo not in self.quantiles or hi not in self.quantiles:
            raise KeyError(f"no quantiles {lo}/{hi}; have {sorted(self.quantiles)}")
        return self.quantiles[lo], self.quantiles[hi]


class ForecastResult(Protocol):
    """A fitted model at one point in time. (Attributes are read-only properties in the
    protocol so that frozen dataclasses satisfy it.)"""

    @property
    def model(self) -> str:
        """The model actually used, after any fallback (``"damped"`` when ``holt_winters``
        could not be fitted, for example; ``"none"`` when there was no data at all)."""
        ...

    @property
    def fallbacks(self) -> int:
        """How many fallback steps the fit took (0 = the requested model was used)."""
        ...

    @property
    def fallback_reason(self) -> str | None:
        """Why the last fallback happened, in words; None when there was none."""
        ...

    def forecast(self, steps: int) -> Forecast: ...

    def update(self, value: float) -> ForecastResult:
        """Take the next observation (NaN = missing) cheaply; returns a new result."""
        ...


class Forecaster(Protocol):
    """A model's settings; ``fit`` does the work and never raises for bad data."""

    @property
    def name(self) -> str: ...

    def fit(self, history: History) -> ForecastResult: ...
