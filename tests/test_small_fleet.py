"""Steps taken only where worth their cost (``margin.worth_stepping``,
``margin.expected_excess``, ``predictive._small_fleet``).

The stacked margins (the forecast's quantile over ``targetUtilization``) price every step
alike. On one replica a step doubles the spend; the late requests it spares are priced from
the SLO's error budget (the fleet's spend per request over the budget, as ``recur`` prices a
cold start's misses), so a step is taken when the demand expected above the fleet's
capacity at the SLO is more than budget / replicas of all demand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import margin
from autoscaler.core.policies import predictive
from autoscaler.core.spec import Capacity
from tests.test_predictive import fixed_params, make_spec, run


def _excess_reference(mean: float, sd: float, level: float) -> float:
    """Slow and obviously right: E[(D - level)^+] by the midpoint rule over +-12 sd."""
    n = 20_000
    lo, hi = mean - 12.0 * sd, mean + 12.0 * sd
    h = (hi - lo) / n
    total = 0.0
    for i in range(n):
        x = lo + (i + 0.5) * h
        if x > level:
            total += (x - level) * math.exp(-0.5 * ((x - mean) / sd) ** 2) * h
    return total / (sd * math.sqrt(2.0 * math.pi))


@settings(deadline=None, max_examples=60)
@given(st.floats(0.0, 100.0), st.floats(0.05, 20.0), st.floats(0.0, 150.0))
def test_expected_excess_matches_the_integral(mean: float, sd: float, level: float) -> None:
    assert margin.expected_excess(mean, sd, level) == pytest.approx(
        _excess_reference(mean, sd, level), rel=1e-3, abs=1e-6)


@pytest.mark.parametrize(("mean", "sd", "level", "expected"), [
    # z = 1.5: phi 0.129518, tail 0.066807: 0.129518 - 1.5 x 0.066807 = 0.029307.
    pytest.param(10.0, 1.0, 11.5, 0.029307, id="1.5 sd above the mean"),
    # z = 0: phi(0) = 0.398942 x sd 2.
    pytest.param(10.0, 2.0, 10.0, 0.797885, id="at the mean: sd x phi(0)"),
    pytest.param(10.0, 0.0, 8.0, 2.0, id="no spread: what is above"),
    pytest.param(10.0, 0.0, 12.0, 0.0, id="no spread, under the level: nothing"),
])
def test_expected_excess_worked_numbers(mean: float, sd: float, level: float,
                                        expected: float) -> None:
    assert margin.expected_excess(mean, sd, level) == pytest.approx(expected, abs=2e-6)


# sd = (quantile - mean) / z(0.9) with no noise: quantile = mean + 1.281552 x sd.
_Z90 = 1.2815515655446004


@pytest.mark.parametrize(("replicas", "mean", "quantile", "noise", "capacity", "worth"), [
    # Azure conv at 1,680 s: mean 8.5, p90 9.6, noise 0.6457: f = sqrt(1.1^2 - 0.6457^2) =
    # 0.8905, sd 0.6949; E[(D - 11.0)^+] = 2.7e-5, 3e-6 of 8.5 < 1 % / 1.
    pytest.param(1, 8.5, 9.6, 0.6457, 11.0, False, id="Azure conv: one replica carries it"),
    # The conv plan's old worked number (mean 7.5, p90 9.6, n 0.61, C 10.7): f 2.0095, sd
    # 1.5680, E = 0.01193, 0.16 % < 1 %.
    pytest.param(1, 7.5, 9.6, 0.61, 10.7, False, id="a wider margin: 0.16 % above one"),
    # mean 10, sd 1, m C = 11.5: 0.029307 / 10 = 0.293 %: under 1 % / 1 ...
    pytest.param(1, 10.0, 10.0 + _Z90, 0.0, 11.5, False, id="0.29 % above one: not worth"),
    # ... and over 1 % / 5 = 0.2 % on five replicas of 2.3 (the same 11.5 in all).
    pytest.param(5, 10.0, 10.0 + _Z90, 0.0, 2.3, True, id="the same 0.29 % above five: worth"),
    # The mean itself above m C: at least (12 - 10.7) / 12 = 10.8 % above.
    pytest.param(1, 12.0, 13.0, 0.0, 10.7, True, id="mean above the capacity: worth"),
    # Margin all noise (f 0.5 <= n 0.6): sd 0, 9 < 10.7: nothing above.
    pytest.param(1, 9.0, 9.5, 0.6, 10.7, False, id="a margin of noise only: not worth"),
    pytest.param(0, 1.0, 2.0, 0.0, 10.7, True, id="from no replica: always"),
    pytest.param(1, 7.5, math.nan, 0.0, 10.7, True, id="an unknown plan: keep the step"),
])
def test_worth_stepping(replicas: int, mean: float, quantile: float, noise: float,
                        capacity: float, worth: bool) -> None:
    assert margin.worth_stepping(replicas, mean, quantile, noise, capacity, 0.9,
                                 0.01) is worth


@given(st.integers(1, 50), st.floats(0.1, 1e3), st.floats(0.0, 1e3), st.floats(0.0, 100.0),
       st.floats(0.1, 1e3))
def test_a_larger_budget_never_steps_where_a_smaller_does_not(
        m: int, mean: float, extra: float, noise: float, cap: float) -> None:
    # The budget is what the misses may use: a looser SLO never asks for more replicas.
    if margin.worth_stepping(m, mean, mean + extra, noise, cap, 0.9, 0.05):
        assert margin.worth_stepping(m, mean, mean + extra, noise, cap, 0.9, 0.01)


@pytest.fixture(autouse=True)
def _rule_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests pin the rule itself (``predictive.SMALL_FLEET``), on or off by default.
    monkeypatch.setattr(predictive, "SMALL_FLEET", True)
    # The pricing itself: its gate on smooth arrivals (``margin.SMOOTH_ONLY``) would read
    # these alternating readings as bursts (``tests/test_arrival_dispersion.py``).
    monkeypatch.setattr(margin, "SMOOTH_ONLY", False)


def _spec(capacity: float = 12.1) -> object:
    # 12.1 req/s per replica at the SLO, planned at 0.85: 10.285; no band, no hold.
    return make_spec(capacity=Capacity(requests_per_second=capacity, concurrency=24.0),
                     cold_start_s=90.0,
                     predictive=fixed_params(target_utilization=0.85,
                                             scale_down_window_s=0.0))


def test_one_replica_is_not_doubled_for_a_sliver_of_margin() -> None:
    # Readings alternate 9.2 and 10.6 req/s (the minute's noise is 1.736 x sqrt(9.9 / 60)
    # = 0.71). The stack plans at least the 10.6 read, over 10.285: two replicas on every
    # other step. One replica carries 12.1 at the SLO, 1.5 above a 10.6 read whose measured
    # p90 error is under 1.4: the demand expected above 12.1 is well under 1 % of it, and a
    # second replica would double the spend for it. One replica throughout.
    # A steady 9.9 first, for 60 decisions: the rule prices only a measured spread (40
    # lead-time errors scored), and the trend fitted on its first two readings would
    # extrapolate 9.2 -> 10.6 to a mean of 17 (above one replica, a step worth taking).
    decisions, _, _ = run(_spec(), [9.9] * 60 + [9.2, 10.6] * 60,  # type: ignore[arg-type]
                          current=1)
    # The first three 10.6 readings lie above the interval measured on the steady 9.9: a
    # rate outside the forecast's interval refutes the spread, and the stack's step is
    # taken (2, released at the next 9.2). From the 4th on the errors include the swing.
    late = decisions[66:]
    assert max(d.forecast_rps or 0.0 for d in late) > 10.285  # the stack alone needs 2
    assert all(d.replicas == 1 for d in late)
    assert any(d.replicas == 2 for d in decisions[60:66])


def test_a_mean_above_one_replica_still_starts_the_second() -> None:
    # 12.5 req/s steady, above one replica's 12.1 at the SLO: at least 3 % of the demand
    # is above it, over the 1 % budget. Two replicas.
    decisions, _, _ = run(_spec(), [12.5] * 60, current=1)  # type: ignore[arg-type]
    assert all(d.replicas == 2 for d in decisions[40:])


def test_ten_replicas_keep_the_steps_the_margin_asks_for() -> None:
    # Ten times the first case: readings 92 and 106 req/s, noise 1.736 x sqrt(99 / 60) =
    # 2.23. Nine replicas carry 108.9 at the SLO, 2.9 above the 106 read, and the measured
    # p90 error is ~14 (sd ~ (14 - 2.2) / 1.28 ~ 9): the demand expected above 108.9 is
    # ~2 % of it, over 1 % / 9 = 0.11 %: the 10th replica (and the stack's 11th,
    # ceil((99 + 14) / 10.285) = 11) pays for itself.
    decisions, _, _ = run(_spec(), [99.0] * 60 + [92.0, 106.0] * 60,  # type: ignore[arg-type]
                          current=9)
    assert all(d.replicas >= 10 for d in decisions[80:])


@given(st.integers(1, 40), st.floats(0.0, 500.0), st.floats(0.0, 200.0),
       st.floats(0.0, 50.0))
def test_never_above_the_stack_nor_below_one(needed: int, mean: float, extra: float,
                                             noise: float) -> None:
    from autoscaler.core import capacity as cap_mod
    est = cap_mod.start(12.1, (None, None))
    got = predictive._small_fleet(needed, est, (None, None, mean + extra),
                                  (math.nan, math.nan, mean), (0.0, 0.0, noise), 0.9, 0.01)
    assert min(needed, 1) <= got <= needed


def test_before_the_errors_calibrate_the_stack_starts_the_step() -> None:
    # A steady 10.4 req/s from the first decision: above 0.85 x 12.1 = 10.285, so the stack
    # asks for a second replica at once. Fewer than 40 lead-time errors are scored for the
    # first 40 + 7 decisions (a 105-s lead at 15 s), so no spread is measured to price and
    # the stack's step is taken (the replica then stays: the release plan is the stack's).
    decisions, _, _ = run(_spec(), [10.4] * 20, current=1)  # type: ignore[arg-type]
    assert decisions[-1].replicas == 2
