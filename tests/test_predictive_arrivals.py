"""Arrivals read from served work and the queue (``predictive._queue_growth``): a backlog
the fleet drains is served work, not demand, and missing queue readings never lower the
demand further than what the readings show."""

from __future__ import annotations

import pytest

from autoscaler.core.policies import predictive
from autoscaler.core.types import State
from tests.test_predictive import make_spec, snap

NOW = 600.0


def _state(*readings: tuple[float, float]) -> predictive.PredictiveState:
    """The state after these (seconds before NOW, queue depth) readings, oldest first: the
    last is the previous step's, and the queue's recent readings are those the policy keeps
    (the last 60 s of them, the served rate's window)."""
    points = tuple((NOW - ago, q) for ago, q in readings)
    return predictive.PredictiveState(
        last_queue=points[-1] if points else None,
        queue_recent=tuple(p for p in points if p[0] > NOW - 60.0 - 1e-9))


@pytest.mark.parametrize(("readings", "queue", "expected"), [
    pytest.param(((15.0, 40.0),), 100.0, 4.0,
                 id="grew 40 -> 100 in the last 15 s: +60 / 15 = +4 req/s"),
    pytest.param(((60.0, 968.0), (45.0, 700.0), (30.0, 400.0), (15.0, 100.0)), 18.0,
                 (18.0 - 968.0) / 60.0,
                 id="drained 968 -> 18 over the window: -950 / 60 = -15.83 req/s"),
    pytest.param(((75.0, 2000.0), (60.0, 968.0), (15.0, 100.0)), 18.0, -950.0 / 60.0,
                 id="a reading older than the window is not the window's start"),
    pytest.param(((60.0, 10.0), (15.0, 50.0)), 40.0, 0.0,
                 id="shrank in the last step but grew over the window (10 -> 40): 0"),
    pytest.param(((60.0, 5.0), (45.0, 5.0), (30.0, 5.0), (15.0, 5.0)), 5.0, 0.0,
                 id="a steady queue: 0"),
    pytest.param(((90.0, 968.0), (15.0, 500.0)), 18.0, (18.0 - 500.0) / 60.0,
                 id="readings missing: 500 -> 18 known, divided by the whole window, "
                    "-482 / 60 = -8.03, not -482 / 15 = -32.1"),
    pytest.param(((120.0, 968.0),), 18.0, 0.0,
                 id="no reading inside the window: nothing taken off"),
    pytest.param(((15.0, 968.0),), None, 0.0, id="no queue reading now: 0"),
    pytest.param((), 18.0, 0.0, id="no earlier reading: 0"),
])
def test_the_queue_adds_its_growth_and_takes_off_what_drained(
        readings: tuple[tuple[float, float], ...], queue: float | None,
        expected: float) -> None:
    assert predictive._queue_growth(_state(*readings), queue, NOW) == pytest.approx(expected)


def test_a_drained_backlog_is_not_demand() -> None:
    # The demo's first burst, 15-s steps: 968 waiting, drained to 18 within a minute while
    # the fleet serves 39.9 req/s (first tokens over the last 60 s, backlog included). What
    # arrived: 39.9 + (18 - 968) / 60 = 24.07 req/s; the served rate alone read 39.9.
    spec = make_spec()
    state = State()
    demand: list[float | None] = []
    for t, q in ((0.0, 968.0), (15.0, 700.0), (30.0, 400.0), (45.0, 100.0), (60.0, 18.0)):
        d, state = predictive.decide(snap(at=t, current=8, rate=39.9, queue=q), state, spec, t)
        demand.append(d.demand_rps)
    assert demand[-1] == pytest.approx(39.9 - 950.0 / 60.0)
    # At 15 s only one step back is known (0 s, 968): -268 / 60 = -4.47, not -268 / 15.
    assert demand[1] == pytest.approx(39.9 - 268.0 / 60.0)


def test_a_growing_queue_adds_to_the_served_rate() -> None:
    # 40 waiting, then 100 fifteen seconds later at 10 req/s served: 10 + 60 / 15 = 14.
    spec = make_spec()
    _, state = predictive.decide(snap(at=0.0, current=2, rate=10.0, queue=40.0), State(),
                                 spec, 0.0)
    d, _ = predictive.decide(snap(at=15.0, current=2, rate=10.0, queue=100.0), state, spec,
                             15.0)
    assert d.demand_rps == pytest.approx(14.0)


def test_a_missing_queue_reading_lowers_no_demand() -> None:
    # 968 waiting, then no queue reading for two steps, then 18: only the reading 30 s ago
    # is within the window, and the drop (950) is taken over the whole window, 15.83 req/s.
    # Without any reading in the window nothing is taken off.
    spec = make_spec()
    state = State()
    d = None
    for t, q in ((0.0, 968.0), (15.0, None), (30.0, None), (45.0, 18.0)):
        d, state = predictive.decide(snap(at=t, current=8, rate=39.9, queue=q), state, spec, t)
    assert d is not None and d.demand_rps == pytest.approx(39.9 - 950.0 / 60.0)
    state = State()
    for t, q in ((0.0, 968.0), (15.0, None), (30.0, None), (45.0, None), (60.0, None),
                 (75.0, 18.0)):
        d, state = predictive.decide(snap(at=t, current=8, rate=39.9, queue=q), state, spec, t)
    assert d is not None and d.demand_rps == pytest.approx(39.9)
