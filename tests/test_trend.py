"""The simple trend forecaster (Holt, damped trend), against slow references."""

from __future__ import annotations

import itertools
import math
import random
from statistics import NormalDist
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.errors import SpecError
from autoscaler.forecast.trend import TrendForecaster, damped_sum


def reference_holt(
    values: list[float], alpha: float, beta: float, phi: float, g: float, spread: str
) -> tuple[float, float, float]:
    """Textbook damped Holt on a regular grid, written as plainly as possible.

    Start: level = y0; then level = y1, trend = y1 - y0. Returns (level, trend, sigma) where
    sigma is the bias-corrected exponentially weighted RMS of the one-step residuals (for
    ``upside``, of the positive ones only, counted twice; negative ones count as 0).
    """
    level = values[0]
    trend = 0.0
    weights: list[float] = []
    squares: list[float] = []
    for i, y in enumerate(values[1:], start=1):
        if i == 1:
            trend = y - level
            level = y
            continue
        prediction = level + phi * trend
        e = y - prediction
        if spread == "two_sided":
            squares.append(e**2)
        else:
            squares.append(2 * e**2 if e > 0 else 0.0)
        new_level = alpha * y + (1 - alpha) * prediction
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        level = new_level
    # Weight of the j-th residual (0-based, n of them) is g * (1 - g) ** (n - 1 - j).
    n = len(squares)
    weights = [g * (1 - g) ** (n - 1 - j) for j in range(n)]
    sigma = math.sqrt(sum(w * s for w, s in zip(weights, squares, strict=True)) / sum(weights)) \
        if weights else 0.0
    return level, trend, sigma


def noisy_series(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [20 + 0.3 * i + 5 * math.sin(i / 7) + rng.gauss(0, 2) for i in range(n)]


GRID = [
    pytest.param(alpha, beta, phi, spread, id=f"alpha {alpha}, beta {beta}, phi {phi}, {spread}")
    for alpha in (0.1, 0.5, 1.0)
    for beta in (0.0, 0.15, 0.6)
    for phi in (0.8, 0.95, 1.0)
    for spread in ("upside", "two_sided")
]


@pytest.mark.parametrize(("alpha", "beta", "phi", "spread"), GRID)
def test_fit_matches_a_plain_loop_holt_recursion_on_a_regular_grid(
    alpha: float, beta: float, phi: float, spread: Literal["upside", "two_sided"]
) -> None:
    values = noisy_series(seed=7, n=80)
    times = [15.0 * i for i in range(len(values))]
    model = TrendForecaster(alpha=alpha, beta=beta, phi=phi, step_s=15.0, variance_weight=0.05,
                            spread=spread)
    result = model.fit(times, values)
    level, trend, sigma = reference_holt(values, alpha, beta, phi, 0.05, spread)
    assert result.level == pytest.approx(level, rel=1e-9, abs=1e-9)
    assert result.trend == pytest.approx(trend, rel=1e-9, abs=1e-9)
    assert result.sigma == pytest.approx(sigma, rel=1e-9, abs=1e-9)
    expected = [max(0.0, level + sum(phi**i for i in range(1, h + 1)) * trend)
                for h in range(1, 10)]
    assert result.forecast(9).mean == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("alpha", "beta", "phi"), [
    pytest.param(0.5, 0.15, 0.95, id="defaults"),
    pytest.param(0.2, 0.4, 0.85, id="slow level, fast trend"),
    pytest.param(0.9, 0.05, 0.99, id="fast level, slow trend"),
])
def test_fit_matches_statsmodels_holt_with_a_known_start(
    alpha: float, beta: float, phi: float
) -> None:
    from statsmodels.tsa.holtwinters import Holt

    values = noisy_series(seed=3, n=60)
    model = TrendForecaster(alpha=alpha, beta=beta, phi=phi, step_s=1.0)
    ours = model.fit([float(i) for i in range(len(values))], values).forecast(12).raw_mean
    # Our first two points set level = y1 and trend = y1 - y0; statsmodels' "known" start
    # with those values fed the rest of the series is the same model.
    sm = Holt(np.asarray(values[2:]), damped_trend=True, initialization_method="known",
              initial_level=values[1], initial_trend=values[1] - values[0]).fit(
        smoothing_level=alpha, smoothing_trend=beta, damping_trend=phi, optimized=False)
    assert list(ours) == pytest.approx(list(sm.forecast(12)), rel=1e-9)


@pytest.mark.parametrize("gaps", [
    pytest.param([15.0] * 30, id="regular 15 s"),
    pytest.param([15.0, 45.0, 15.0, 7.5, 120.0, 15.0, 30.0] * 4, id="irregular gaps"),
])
def test_a_straight_line_is_forecast_exactly_without_damping(gaps: list[float]) -> None:
    # y = 5 + 0.2 t (t in seconds): with phi = 1 the gap recursion predicts each point
    # exactly, so the trend per 15 s step is 0.2 x 15 = 3 and residuals are zero.
    times = [0.0]
    for g in gaps:
        times.append(times[-1] + g)
    values = [5 + 0.2 * t for t in times]
    result = TrendForecaster(phi=1.0, step_s=15.0).fit(times, values)
    assert result.trend == pytest.approx(3.0)
    assert result.sigma == pytest.approx(0.0, abs=1e-9)
    last = times[-1]
    assert result.forecast(4).mean == pytest.approx([5 + 0.2 * (last + 15 * h)
                                                     for h in range(1, 5)])


def test_incremental_updates_equal_a_fit_over_the_same_series() -> None:
    values = noisy_series(seed=11, n=50)
    times = [15.0 * i for i in range(len(values))]
    model = TrendForecaster()
    step_by_step = model.start()
    for t, y in zip(times, values, strict=True):
        step_by_step = step_by_step.update(t, y)
    assert step_by_step == model.fit(times, values)


def test_an_observation_at_or_before_the_last_time_is_ignored() -> None:
    result = TrendForecaster().fit([0.0, 15.0, 30.0], [1.0, 2.0, 3.0])
    assert result.update(30.0, 100.0) is result
    assert result.update(10.0, 100.0) is result


def test_quantiles_are_the_normal_quantiles_with_spread_growing_like_sqrt_h() -> None:
    result = TrendForecaster().fit([15.0 * i for i in range(40)], noisy_series(seed=5, n=40))
    fc = result.forecast(9)
    sigma = result.sigma
    assert sigma > 0
    z90 = NormalDist().inv_cdf(0.9)
    expected = [max(0.0, m + z90 * sigma * math.sqrt(h))
                for h, m in enumerate(fc.raw_mean, start=1)]
    assert fc.quantile(0.9) == pytest.approx(expected)


def test_forecast_and_quantiles_never_go_below_zero() -> None:
    # A steep fall: the raw trend points below zero within the horizon.
    result = TrendForecaster(phi=1.0).fit([0.0, 15.0, 30.0, 45.0], [30.0, 20.0, 10.0, 5.0])
    fc = result.forecast(10)
    assert min(fc.raw_mean) < 0
    for q in (0.5, 0.9, 0.99):
        assert min(fc.quantile(q)) >= 0.0
    assert min(fc.mean) >= 0.0


@pytest.mark.parametrize(("kwargs", "field"), [
    pytest.param({"alpha": 0.0}, "trend.alpha", id="alpha of zero never learns"),
    pytest.param({"beta": 1.5}, "trend.beta", id="beta above one"),
    pytest.param({"phi": 0.0}, "trend.phi", id="phi of zero"),
    pytest.param({"variance_weight": 2.0}, "trend.variance_weight", id="variance weight"),
    pytest.param({"step_s": 0.0}, "trend.step_s", id="zero step"),
    pytest.param({"spread": "sideways"}, "trend.spread", id="unknown spread"),
])
def test_invalid_settings_are_rejected_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(SpecError) as err:
        TrendForecaster(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_damped_sum_matches_the_explicit_sum_for_whole_steps() -> None:
    for phi in (0.5, 0.9, 0.99, 1.0):
        for k in range(0, 12):
            assert damped_sum(phi, k) == pytest.approx(sum(phi**i for i in range(1, k + 1)))


def test_fitting_twice_gives_identical_results() -> None:
    values = noisy_series(seed=13, n=120)
    times = [15.0 * i for i in range(len(values))]
    a = TrendForecaster().fit(times, values)
    b = TrendForecaster().fit(times, values)
    assert a == b
    assert a.forecast(9) == b.forecast(9)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), min_size=3,
                    max_size=60),
    steps=st.integers(min_value=1, max_value=30),
)
def test_quantiles_are_nested_and_interval_widths_grow_with_the_horizon(
    values: list[float], steps: int
) -> None:
    result = TrendForecaster().fit([15.0 * i for i in range(len(values))], values)
    fc = result.forecast(steps)
    qs = fc.quantiles()
    q50, q90, q99 = qs[0.5], qs[0.9], qs[0.99]
    for h in range(steps):
        assert q50[h] <= q90[h] <= q99[h]
        # q50 is the clipped mean.
        assert q50[h] == pytest.approx(fc.mean[h], abs=1e-9 * (1 + abs(fc.mean[h])))
    # Where nothing is clipped at zero (q50 > 0), the 50..99 interval widens with h.
    widths = [(h, q99[h] - q50[h]) for h in range(steps) if q50[h] > 0]
    for (h1, w1), (h2, w2) in itertools.pairwise(widths):
        assert h2 > h1 and w2 >= w1 - 1e-9
    if result.sigma > 0 and len(widths) >= 2:
        assert widths[-1][1] > widths[0][1]


def test_a_sudden_drop_does_not_widen_the_upside_band() -> None:
    # Steady 32 (zero residuals), then 3.2: the residual is -28.8. Upside-only spread stays
    # 0, so the p90 is the (falling) mean; two-sided spread jumps and lifts the p90 above 32.
    times = [15.0 * i for i in range(21)]
    values = [32.0] * 20 + [3.2]
    up = TrendForecaster().fit(times, values).forecast(9)
    both = TrendForecaster(spread="two_sided").fit(times, values).forecast(9)
    assert max(up.quantile(0.9)) == pytest.approx(max(up.mean)) and max(up.mean) < 32.0
    assert max(both.quantile(0.9)) > 32.0


def test_a_sudden_rise_widens_the_upside_band() -> None:
    times = [15.0 * i for i in range(21)]
    fc = TrendForecaster().fit(times, [10.0] * 20 + [20.0]).forecast(9)
    assert max(fc.quantile(0.9)) > max(fc.mean) + 1.0
