"""The arrivals' dispersion against Poisson, read from the controller's own ``rate()``
readings (``margin.arrival_dispersion``, ``margin.smooth_arrivals``), and the small-fleet
pricing gated on it (``predictive.SMALL_FLEET`` with ``margin.SMOOTH_ONLY``).

The readings are simulated as a live fleet shows them: Poisson (or bursty) arrivals per
second, a counter scraped every 15 s, and a 60-s ``rate()`` that spans the samples in its
window (45 s) and extrapolates their increase to the window."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import margin
from autoscaler.core.policies import predictive
from autoscaler.core.spec import Capacity
from tests.test_predictive import fixed_params, make_spec, run

WINDOW = 60.0
SYNC = 15.0
SPAN = WINDOW - SYNC


def _readings(per_second: np.ndarray, n: int) -> list[float]:
    """``n`` readings, one per 15 s from 60 s on: the increase of the counter over the
    samples in the last 60 s (45 s apart) over their span."""
    counter = np.concatenate(([0.0], np.cumsum(per_second)))
    out = []
    for k in range(n):
        now = int(WINDOW + SYNC * k)
        out.append(float(counter[now] - counter[now - int(SPAN)]) / SPAN)
    return out


def _history(rates: list[float]) -> tuple[tuple[float, float], ...]:
    return tuple((WINDOW + SYNC * k, r) for k, r in enumerate(rates))


def _poisson(rate: float, seconds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).poisson(rate, size=seconds).astype(float)


@pytest.mark.parametrize("rate", [
    pytest.param(0.5, id="half a request per second"),
    pytest.param(5.0, id="5 req/s"),
    pytest.param(80.0, id="80 req/s"),
])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_poisson_arrivals_read_near_one(rate: float, seed: int) -> None:
    rates = _readings(_poisson(rate, 3000, seed), 120)
    d, n = margin.arrival_dispersion(_history(rates), WINDOW, SPAN)
    assert n == 119
    # sd sqrt(2 / 119) = 0.13 under Poisson: 0.6-1.4 is 3 sd either side.
    assert 0.6 < d < 1.4
    assert margin.smooth_arrivals(_history(rates), WINDOW, SPAN)


@pytest.mark.parametrize(("rate", "burst", "every_s"), [
    # A client that sends 60 requests within one second every 3 minutes on top of 2 req/s.
    pytest.param(2.0, 60.0, 180, id="bursts of 60 every 3 min on 2 req/s"),
    pytest.param(20.0, 150.0, 300, id="bursts of 150 every 5 min on 20 req/s"),
])
def test_within_minute_bursts_are_not_smooth(rate: float, burst: float, every_s: int) -> None:
    arrivals = _poisson(rate, 3000, 7)
    arrivals[every_s // 2::every_s] += burst
    rates = _readings(arrivals, 120)
    d, _ = margin.arrival_dispersion(_history(rates), WINDOW, SPAN)
    assert d > margin.DISPERSION_LIMIT
    assert not margin.smooth_arrivals(_history(rates), WINDOW, SPAN)


def test_worked_number_by_hand() -> None:
    # Three readings 15 s apart: 2.0, 2.4, 2.0 req/s over a 45-s span, and 18 more at 2.0.
    # Pairs: 45 x 0.4 = 18 -> 324 over 15 x 4.4 = 66; the same back; then 18 pairs of 0
    # over 15 x 4.0 = 60 each. (324 + 324) / (66 + 66 + 18 x 60) = 648 / 1,212 = 0.534653.
    rates = [2.0, 2.4, 2.0] + [2.0] * 18
    d, n = margin.arrival_dispersion(_history(rates), WINDOW, SPAN)
    assert n == 20
    assert d == pytest.approx(648.0 / 1212.0)


@pytest.mark.parametrize(("history", "pairs"), [
    pytest.param((), 0, id="no readings"),
    pytest.param(_history([3.0] * 10), 9, id="9 pairs: under the minimum"),
    pytest.param(_history([0.0] * 40), 39, id="no arrivals at all"),
    # 61 s apart: windows that share nothing are not a pair.
    pytest.param(tuple((61.0 * k, 3.0 + k % 2) for k in range(40)), 0, id="readings too far apart"),
])
def test_unknown_dispersion_is_not_smooth(history: tuple[tuple[float, float], ...],
                                          pairs: int) -> None:
    d, n = margin.arrival_dispersion(history, WINDOW, SPAN)
    assert math.isnan(d)
    assert n == pairs
    assert not margin.smooth_arrivals(history, WINDOW, SPAN)


def test_only_the_last_half_hour_counts() -> None:
    # An hour of bursty readings, then 30 minutes of steady ones: smooth again.
    bursty = [2.0, 6.0] * 120
    steady = [2.0] * 121
    history = _history(bursty + steady)
    d, n = margin.arrival_dispersion(history, WINDOW, SPAN)
    assert n == 120
    assert d == 0.0


@settings(deadline=None, max_examples=80)
@given(st.lists(st.floats(0.0, 500.0), min_size=21, max_size=200), st.floats(0.01, 100.0),
       st.floats(-1e6, 1e6))
def test_scale_and_shift_invariants(rates: list[float], scale: float, shift: float) -> None:
    d, n = margin.arrival_dispersion(_history(rates), WINDOW, SPAN)
    moved = tuple((t + shift, r) for t, r in _history(rates))
    d2, n2 = margin.arrival_dispersion(moved, WINDOW, SPAN)
    assert n == n2
    if math.isnan(d):
        assert math.isnan(d2)
        return
    assert d >= 0.0
    assert d2 == pytest.approx(d, rel=1e-9, abs=1e-12)
    # Rates scaled by k (counts by k): variance k^2, Poisson's k: the index scales by k.
    d3, _ = margin.arrival_dispersion(_history([r * scale for r in rates]), WINDOW, SPAN)
    assert d3 == pytest.approx(d * scale, rel=1e-6, abs=1e-9)


# ------------------------------------------------------------- the gated pricing


def _spec() -> object:
    # 12.1 req/s per replica at the SLO, planned at 0.85: 10.285; no band, no hold.
    return make_spec(capacity=Capacity(requests_per_second=12.1, concurrency=24.0),
                     cold_start_s=90.0,
                     predictive=fixed_params(target_utilization=0.85,
                                             scale_down_window_s=0.0))


def _replicas(rates: list[float], *, rule: bool, smooth_only: bool,
              monkeypatch: pytest.MonkeyPatch) -> list[int]:
    monkeypatch.setattr(predictive, "SMALL_FLEET", rule)
    monkeypatch.setattr(margin, "SMOOTH_ONLY", smooth_only)
    decisions, _, _ = run(_spec(), rates, current=1)  # type: ignore[arg-type]
    return [d.replicas for d in decisions]


def test_smooth_arrivals_near_one_replica_keep_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Poisson arrivals at 10.4 req/s read through the 45-s span: the readings around
    # 10.285 make the stack start a second replica again and again. One replica carries
    # 12.1 at the SLO and the readings' spread is Poisson's (sd sqrt(10.4 / 45) = 0.48): the
    # demand expected above 12.1 is far under 1 % of it, and the arrivals are smooth, so
    # the pricing starts fewer once the errors calibrate. (Releases keep the stack, so a
    # second replica started is released only when the stack lets it go.)
    rates = _readings(_poisson(10.4, 6000, 11), 380)
    assert margin.smooth_arrivals(_history(rates), WINDOW, SPAN)
    stack = _replicas(rates, rule=False, smooth_only=True, monkeypatch=monkeypatch)
    priced = _replicas(rates, rule=True, smooth_only=True, monkeypatch=monkeypatch)
    # From 130 decisions on (errors calibrated, 30 minutes read): the stack runs two
    # nearly throughout (242 of 250 here), the priced fleet one for most of it (a reading
    # above the forecast's interval refutes the spread, and the stack's step is taken).
    assert stack[130:].count(1) < 25
    assert priced[130:].count(1) > 100


def test_bursty_arrivals_at_the_same_mean_keep_the_stack(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The same mean, 10.4 req/s, but 8.4 req/s Poisson and a burst of 240 requests within
    # one second every 2 minutes: the counts vary far more than Poisson's, so a capacity
    # measured at Poisson arrivals does not cover them: the gated rule decides as the stack
    # does at every step, where the ungated pricing would keep fewer replicas.
    arrivals = _poisson(8.4, 6000, 11)
    arrivals[60::120] += 240.0
    rates = _readings(arrivals, 380)
    assert not margin.smooth_arrivals(_history(rates), WINDOW, SPAN)
    stack = _replicas(rates, rule=False, smooth_only=True, monkeypatch=monkeypatch)
    gated = _replicas(rates, rule=True, smooth_only=True, monkeypatch=monkeypatch)
    ungated = _replicas(rates, rule=True, smooth_only=False, monkeypatch=monkeypatch)
    assert gated == stack
    assert sum(ungated) < sum(stack)
