"""The queue's readings are remembered on steps that hold for an unreadable request rate
(``predictive.QUEUE_THROUGH_HOLDS``), so the first readable window after a backlog drained
during the holds does not count the drained backlog as arrivals; and a window that served a
backlog is read as its echo (``predictive.DRAIN_ECHO``). Both rules are off by default (their
docstrings carry the figures); each is tested here both ways."""

from __future__ import annotations

import pytest

from autoscaler.core.policies import predictive
from autoscaler.core.spec import Spec
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State
from tests.test_predictive import make_spec, snap

STEP = 15.0


def steady(spec: Spec, rate: float) -> tuple[State, float]:
    """Ten minutes of 6 replicas serving ``rate`` with nothing queued: (state, next time)."""
    state, t = State(), 0.0
    for _ in range(40):
        _, state = predictive.decide(snap(at=t, current=6, rate=rate, queue=0.0), state,
                                     spec, t)
        t += STEP
    return state, t


def demand_after(holds: list[float | None], before: float, served: float, queue: float,
                 *, remember: bool, monkeypatch: pytest.MonkeyPatch) -> float:
    """Demand read at the first step after ``holds`` (queue readings on steps whose request
    rate is missing), on a fleet of 6 that served 25 req/s with no queue for 10 minutes,
    then read ``before`` queued (served 20) just before the holds."""
    monkeypatch.setattr(predictive, "QUEUE_THROUGH_HOLDS", remember)
    spec = make_spec()
    state, t = steady(spec, 25.0)
    _, state = predictive.decide(snap(at=t, current=6, rate=20.0, queue=before), state,
                                 spec, t)
    for q in holds:
        t += STEP
        held, state = predictive.decide(snap(at=t, current=6, rate=None, queue=q), state,
                                        spec, t)
        assert not held.valid and held.reason is Reason.METRICS_MISSING
        assert held.replicas == 6
    t += STEP
    d, _ = predictive.decide(snap(at=t, current=6, rate=served, queue=queue), state, spec, t)
    assert d.demand_rps is not None
    return d.demand_rps


@pytest.mark.parametrize(("holds", "before", "served", "queue", "remembered", "forgotten"), [
    # Served 40 req/s over the 60-s window [630, 690] while the queue went 700 -> 0:
    # 40 - 700 / 60 = 28.33 arrived. Forgotten: the only reading, 900 at 615, is older
    # than the window, so nothing is taken off and the backlog reads as 40 req/s.
    pytest.param([700.0, 450.0, 200.0, 0.0], 900.0, 40.0, 0.0, 40.0 - 700.0 / 60.0, 40.0,
                 id="backlog drained during the holds: not demand"),
    # Still growing at the read: served 20 plus the last step's growth, (2,250 - 2,100) /
    # 15 = 10; forgotten, the growth since 615 is (2,250 - 900) / 75 = 18.
    pytest.param([1200.0, 1500.0, 1800.0, 2100.0], 900.0, 20.0, 2250.0, 30.0, 38.0,
                 id="queue still growing: the last step's growth, not the average"),
    # The queue was unreadable too: nothing to remember, both read the same.
    pytest.param([None, None, None, None], 900.0, 40.0, 0.0, 40.0, 40.0,
                 id="no queue readings either: nothing to remember"),
])
def test_demand_after_holds(holds: list[float | None], before: float, served: float,
                            queue: float, remembered: float, forgotten: float,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    got = demand_after(holds, before, served, queue, remember=True, monkeypatch=monkeypatch)
    assert got == pytest.approx(remembered, abs=1e-9)
    off = demand_after(holds, before, served, queue, remember=False, monkeypatch=monkeypatch)
    assert off == pytest.approx(forgotten, abs=1e-9)


def after_a_drain(echo: bool, monkeypatch: pytest.MonkeyPatch) -> list[Decision]:
    """6 replicas (``minReplicas``) carrying 6 req/s; then a standing backlog of 600 while
    the request rate cannot be read (a minute of holds), drained at 10 req/s over the next
    minute (16 served) while the TTFT p99 reads the requests that waited (30 s, against
    2 s). Returns the decisions from the step the queue reached 0."""
    monkeypatch.setattr(predictive, "DRAIN_ECHO", echo)
    monkeypatch.setattr(predictive, "QUEUE_THROUGH_HOLDS", True)
    spec = make_spec(min_replicas=6)
    state, t = steady(spec, 6.0)
    for _ in range(4):
        _, state = predictive.decide(snap(at=t, current=6, rate=None, queue=600.0), state,
                                     spec, t)
        t += STEP
    out = []
    for served, q in ((16.0, 450.0), (16.0, 300.0), (16.0, 150.0), (16.0, 0.0),
                      (6.0, 0.0)):
        d, state = predictive.decide(snap(at=t, current=6, rate=served, queue=q, ttft=30.0),
                                     state, spec, t)
        if q == 0.0:
            out.append(d)
        t += STEP
    return out


def test_a_drained_backlogs_tail_forbids_a_scale_down_but_asks_for_no_replica(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Demand read over the drain: 16 - (450 - 600) / 60 ... down to 16 - 600 / 60 = 6 at
    # the step the queue reaches 0: the plan needs no more than the 6 there are.
    for d in after_a_drain(True, monkeypatch):
        assert d.replicas == 6
        assert "backlog now drained" in d.message
    # Without the rule the confirmed slip asks for one more than are ready.
    plain = after_a_drain(False, monkeypatch)
    assert [(d.reason, d.replicas) for d in plain] == [(Reason.SLO_CORRECTION, 7)] * 2


@pytest.mark.parametrize(("echo", "expected"), [
    pytest.param(True, (200.0, 100.0), id="drain window: the mix before the backlog stays"),
    pytest.param(False, (200.0, 200.0), id="rule off: the drain's 200 generated per request"),
])
def test_the_token_mix_of_a_drain_window_is_not_taken(
        echo: bool, expected: tuple[float, float], monkeypatch: pytest.MonkeyPatch) -> None:
    # 6 req/s at 200 prompt and 100 generated tokens each; then a minute that drains 450
    # queued (served 16 req/s) while the drained batch decodes: 3,200 generated tokens/s,
    # 200 per first token served, twice the requests' real length.
    monkeypatch.setattr(predictive, "DRAIN_ECHO", echo)
    spec = make_spec()
    state = State()

    def step(t: float, served: float, queue: float, gen: float) -> State:
        s = snap(at=t, current=6, rate=served, queue=queue)
        metrics = dict(s.metrics)
        metrics[Signal.PROMPT_TOKENS_RATE] = MetricValue(200.0 * served, t)
        metrics[Signal.GENERATION_TOKENS_RATE] = MetricValue(gen, t)
        _, new = predictive.decide(Snapshot(6, 6, metrics), state, spec, t)
        return new

    t = 0.0
    for _ in range(8):
        state = step(t, 6.0, 450.0, 600.0)
        t += STEP
    for q in (300.0, 150.0, 0.0):
        state = step(t, 16.0, q, 3200.0)
        t += STEP
    assert isinstance(state.policy, predictive.PredictiveState)
    assert state.policy.mix == pytest.approx(expected)
