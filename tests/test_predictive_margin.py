"""The plan's margins: how the forecast's and the capacity's combine (``core/margin.py``),
and what may start replicas before the forecaster's lead-time error is measured
(``LeadErrors.supported_peak``)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.core import margin
from autoscaler.core.policies import predictive
from autoscaler.core.policies.predictive import LeadErrors
from autoscaler.core.spec import Capacity, Spec
from tests.test_predictive import fixed_params, make_spec, run

Z90 = 1.2815515655446004  # the standard normal's 0.9 quantile


@pytest.mark.parametrize(("utilization", "rsd", "expected"), [
    # 1 / 0.85 - 1 = 0.17647; z rsd = 0.0641, 0.0641 / 0.9359 = 0.0685: the user's wins.
    pytest.param(0.85, 0.05, 0.17647, id="settled estimate: targetUtilization's margin"),
    # z rsd = 0.25631, 0.25631 / (1 - 0.25631) = 0.34465.
    pytest.param(0.85, 0.2, 0.34465, id="rsd 0.2: the estimate's own margin"),
    # z rsd = 0.641, capped at 0.5: 0.5 / 0.5 = 1 (a prior at +-50 %).
    pytest.param(0.85, 0.5, 1.0, id="the prior's rsd 0.5: capped at z rsd = 0.5"),
    pytest.param(1.0, 0.0, 0.0, id="util 1, no doubt: no margin"),
])
def test_capacity_margin_worked_numbers(utilization: float, rsd: float,
                                        expected: float) -> None:
    assert margin.capacity_margin(utilization, Z90, rsd) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(("rule", "base", "quantile", "rsd", "expected"), [
    # Azure conv at 1,665 s: mean 7.5, p90 9.07 req/s, util 0.85. Stacked: 9.07 at 0.85,
    # i.e. 9.07 / 0.85 = 10.67 req/s of capacity (one learned replica holds 10.65).
    pytest.param(margin.STACK, 7.5, 9.07, 0.0, 9.07, id="stack: the quantile as it is"),
    # f = 1.57, c = 7.5 x 0.17647 = 1.32353, sqrt(1.57^2 + 1.32353^2) = 2.05344:
    # 0.85 x (7.5 + 2.05344) = 8.12042 (9.553 req/s of capacity).
    pytest.param(margin.QUADRATURE, 7.5, 9.07, 0.0, 8.12042, id="quadrature, conv"),
    # No forecast margin: the capacity's alone, 0.85 x 7.5 x 1.17647 = 7.5.
    pytest.param(margin.QUADRATURE, 7.5, 7.5, 0.0, 7.5, id="quadrature, no interval"),
    # rsd 0.05 changes nothing (targetUtilization's margin is larger) ...
    pytest.param(margin.UNCERTAIN, 7.5, 9.07, 0.05, 8.12042, id="uncertain, settled"),
    # ... rsd 0.2 does: c = 7.5 x 0.34465 = 2.58488, sqrt(1.57^2 + 2.58488^2) = 3.02431,
    # 0.85 x 10.52431 = 8.94566.
    pytest.param(margin.UNCERTAIN, 7.5, 9.07, 0.2, 8.94566, id="uncertain, rsd 0.2"),
    # No base (demand only in the interval): f = 4, c = 0: 0.85 x 4 = 3.4 (4 of capacity).
    pytest.param(margin.QUADRATURE, 0.0, 4.0, 0.0, 3.4, id="quadrature, no base"),
])
def test_combined_plan_worked_numbers(rule: str, base: float, quantile: float, rsd: float,
                                      expected: float) -> None:
    got = margin.combined_plan(base, quantile, 0.85, rule, 0.9, rsd)
    assert got == pytest.approx(expected, abs=5e-5)


_rates = st.floats(0.0, 1e4, allow_nan=False)
_util = st.floats(0.05, 1.0)
_rsd = st.floats(0.0, 2.0)


@given(_rates, _rates, _rates, _util, _rsd, _rsd, st.sampled_from(margin.RULES))
def test_more_uncertainty_never_plans_less(base: float, q1: float, q2: float, util: float,
                                           rsd1: float, rsd2: float, rule: str) -> None:
    # A wider forecast interval or a less certain capacity never plans less demand, so
    # never fewer replicas (``replicas_needed`` is monotone in demand).
    lo_q, hi_q = sorted((base + q1, base + q2))
    lo_s, hi_s = sorted((rsd1, rsd2))
    assert margin.combined_plan(base, lo_q, util, rule, 0.9, lo_s) <= \
        margin.combined_plan(base, hi_q, util, rule, 0.9, hi_s) * (1 + 1e-12) + 1e-12


@given(_rates, _rates, _util)
def test_quadrature_lies_between_either_margin_and_the_stack(base: float, extra: float,
                                                             util: float) -> None:
    # In capacity (plan / util): at least the larger margin alone (the quantile, or the
    # mean at targetUtilization), at most both stacked (quantile / util).
    q = base + extra
    got = margin.combined_plan(base, q, util, margin.QUADRATURE) / util
    tol = 1e-9 * (1 + q / util)
    assert max(q, base / util) - tol <= got <= q / util + tol


def _errors(*values: float) -> LeadErrors:
    # A forecast promising 0 every 10 s, a lead time of 10 s: the reading 10 s later is the
    # realised peak, so the errors are the readings after the first.
    le = LeadErrors().step(0.0, 0.0, 10.0, 0.0)
    for i, v in enumerate(values, start=1):
        le = le.step(10.0 * i, v, 10.0, 0.0)
    return le


@pytest.mark.parametrize(("errors", "mean", "quantile", "expected"), [
    pytest.param((), 4.8, 11.8, 4.8, id="nothing measured: the mean"),
    # Scored errors +0.8 and +2: at most 2 above the mean, 4.8 + 2 = 6.8.
    pytest.param((0.8, 2.0), 4.8, 11.8, 6.8, id="the largest measured error bounds it"),
    # An interval narrower than the errors measured: the interval (5.5).
    pytest.param((0.8, 2.0), 4.8, 5.5, 5.5, id="a narrow interval stays as it is"),
    # Only over-forecasts measured (negative errors): the mean.
    pytest.param((-1.0, -3.0), 4.8, 11.8, 4.8, id="over-forecasts only: the mean"),
    # A burst scored +10.7: the interval (24.4 on 11.2) is allowed 10.7: 21.9.
    pytest.param((10.7,), 11.2, 24.4, 21.9, id="a measured burst lets the interval plan"),
])
def test_supported_peak_worked_numbers(errors: tuple[float, ...], mean: float,
                                       quantile: float, expected: float) -> None:
    le = _errors(*errors)
    assert len(le.errors) == len(errors)
    assert le.supported_peak(mean, quantile) == pytest.approx(expected)


@given(st.lists(st.floats(-50.0, 50.0), max_size=12), st.floats(0.0, 100.0),
       st.floats(0.0, 100.0), st.floats(0.0, 50.0))
def test_supported_peak_is_between_the_mean_and_the_interval_and_grows_with_errors(
        errors: list[float], mean: float, extra: float, more: float) -> None:
    le = _errors(*errors)
    q = mean + extra
    got = le.supported_peak(mean, q)
    assert mean <= got <= q
    # One more (larger) measured error never lowers it.
    worse = _errors(*errors, max(errors, default=0.0) + more)
    assert worse.supported_peak(mean, q) >= got


# The fleet replay's seed-3 start (``tests/test_fleetdata_prometheus.py``): the first
# rate() readings of a fresh controller, req/s every 15 s, falling from 8.1 and then
# rising to 6.4, around 5-6 req/s after.
SEED3_START = [8.1, 6.8, 5.4, 4.1, 4.1, 4.9, 5.6, 6.4, 6.4, 6.1, 5.8, 5.5]


PER_REPLICA = 10.285
"""One replica holds 12.1 req/s at the SLO, planned at 0.85: 12.1 x 0.85 = 10.285 req/s."""


def _seed3_spec() -> Spec:
    # Cold start 90 s + sync 15 s: a lead time of 105 s, 7 steps, as in the fleet replay.
    return make_spec(capacity=Capacity(requests_per_second=12.1, concurrency=24.0),
                     cold_start_s=90.0,
                     predictive=fixed_params(target_utilization=0.85, scale_down_window_s=0.0))


def test_a_wide_interval_on_few_samples_starts_no_replica() -> None:
    decisions, _, current = run(_seed3_spec(), SEED3_START, current=1)
    # The trend's own p90 rises to 12.6 req/s (2 replicas on the interval alone), but no
    # lead time was scored before the 8th reading and the errors scored after are a few
    # req/s (the mean under-forecast the rise from 4.1 to 6.4 by about 2): one replica.
    assert max(d.forecast_rps or 0.0 for d in decisions) > PER_REPLICA
    assert current == 1
    assert all(d.replicas == 1 for d in decisions)


def test_the_interval_still_holds_a_fleet_it_cannot_start() -> None:
    spec = _seed3_spec()
    # Seven readings on one replica, then a second replica appears (another controller, a
    # restart): while the interval's plan is above 10.285 req/s it is not released.
    _, state, _ = run(spec, SEED3_START[:7], current=1)
    decisions, _, _ = run(spec, SEED3_START[7:], start=7 * spec.sync_period_s, current=2,
                          state=state)
    wide = [d for d in decisions if (d.forecast_rps or 0.0) > PER_REPLICA]
    assert wide
    assert all(d.replicas == 2 for d in wide)


def test_once_calibrated_the_measured_quantile_starts_replicas() -> None:
    spec = _seed3_spec()
    # Readings alternating 3 and 10 req/s (never above 10.285): from the 40th scored lead
    # time on, the plan is the calibrated quantile, and it alone decides the count, up as
    # well as down (no hold window, no scale-down band here).
    rates = [3.0, 10.0] * 35
    decisions, state, _ = run(spec, rates, current=1)
    assert isinstance(state.policy, predictive.PredictiveState)
    assert len(state.policy.lead.errors) >= predictive.MIN_LEAD_ERRORS
    late = decisions[60:]
    assert any(d.replicas == 2 for d in late)
    for d in late:
        assert d.forecast_rps is not None
        assert d.replicas == max(1, math.ceil(d.forecast_rps / PER_REPLICA - 1e-9))
