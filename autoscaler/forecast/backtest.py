"""Rolling-origin backtest, run the way the live loop runs a model (pure; no I/O).

Fit on the first ``train_steps`` samples; then at every origin forecast, take the next
observation with ``update`` and refit on the trailing history every ``refit_every`` steps.
Scores per (model, horizon): MAE of the point forecast, ``relative_mae`` against the best
baseline (last value, seasonal naive daily/weekly) at the same horizon, and the share of
actuals inside the 90% interval [q0.05, q0.95]. Missing actuals (NaN) are not scored.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from autoscaler.forecast import BASELINES, carry_calibration, make_forecaster
from autoscaler.forecast.types import FloatArray, ForecastResult, History


@dataclass(frozen=True)
class BacktestRow:
    model: str
    horizon_s: int
    mae: float
    relative_mae: float
    coverage_90: float
    n: int
    """Forecast origins scored (actual present)."""
    fallbacks: int = 0
    """Fallback steps summed over the initial fit and every refit."""
    chosen: tuple[tuple[str, int], ...] = field(default=())
    """Models actually used, with how many fits ended on each."""


def _score(res: ForecastResult, k: int, steps: tuple[int, ...], actual: FloatArray,
           acc: dict[int, list[float]]) -> None:
    f = res.forecast(max(steps))
    lo, hi = f.quantiles[0.05], f.quantiles[0.95]
    n = actual.shape[0]
    for s in steps:
        j = k + s - 1
        if j >= n:
            continue
        y = float(actual[j])
        m = float(f.mean[s - 1])
        if not (math.isfinite(y) and math.isfinite(m)):
            continue
        a = acc[s]
        a[0] += abs(y - m)
        a[1] += 1.0 if lo[s - 1] <= y <= hi[s - 1] else 0.0
        a[2] += 1.0


def backtest(values: FloatArray, *, resolution_s: float, horizons_s: Sequence[int],
             models: Sequence[str], train_steps: int, refit_every: int,
             start_s: float = 0.0, max_history_steps: int | None = None,
             max_horizon_s: float | None = None) -> list[BacktestRow]:
    """Rows for every model x horizon; baselines are always included (they define
    ``relative_mae``). Horizons must be positive multiples of ``resolution_s``."""
    steps = tuple(round(h / resolution_s) for h in horizons_s)
    if any(s < 1 or abs(s * resolution_s - h) > 1e-6 for s, h in zip(steps, horizons_s,
                                                                    strict=True)):
        raise ValueError(f"horizons {list(horizons_s)} must be positive multiples of "
                         f"{resolution_s:g} s")
    y = np.asarray(values, dtype=np.float64)
    n = y.shape[0]
    if not 0 < train_steps < n:
        raise ValueError(f"train_steps must be in 1..{n - 1}, got {train_steps}")
    names = list(dict.fromkeys([*BASELINES, *models]))
    max_hist = max_history_steps or n
    results: dict[str, tuple[dict[int, list[float]], int, Counter[str]]] = {}
    for name in names:
        fc = make_forecaster(name, resolution_s=resolution_s, max_horizon_s=max_horizon_s)
        res: ForecastResult = fc.fit(History(start_s, resolution_s, y[:train_steps]))
        fallbacks, used = res.fallbacks, Counter([res.model])
        acc: dict[int, list[float]] = {s: [0.0, 0.0, 0.0] for s in steps}
        test = y[train_steps:]
        for k in range(test.shape[0]):
            _score(res, k, steps, test, acc)
            t = train_steps + k + 1  # samples observed after this step
            # The observation always reaches the running result first, as in the live loop
            # (update every bin, then refit when due): its interval calibration scores the
            # intervals issued for this step, and a refit carries that calibration on.
            res = res.update(float(test[k]))
            if (k + 1) % refit_every == 0:
                lo = max(0, t - max_hist)
                res = carry_calibration(res, fc.fit(
                    History(start_s + lo * resolution_s, resolution_s, y[lo:t])))
                fallbacks += res.fallbacks
                used[res.model] += 1
        results[name] = (acc, fallbacks, used)
    rows: list[BacktestRow] = []
    for s, h in zip(steps, horizons_s, strict=True):
        maes = {name: (a[s][0] / a[s][2] if a[s][2] else math.nan)
                for name, (a, _, _) in results.items()}
        base = min((maes[b] for b in BASELINES if math.isfinite(maes[b])), default=math.nan)
        for name, (a, fb, used) in results.items():
            cnt = a[s][2]
            rows.append(BacktestRow(
                model=name, horizon_s=int(h), mae=maes[name],
                relative_mae=maes[name] / base if base > 0 else math.nan,
                coverage_90=a[s][1] / cnt if cnt else math.nan, n=int(cnt), fallbacks=fb,
                chosen=tuple(sorted(used.items())),
            ))
    return rows
