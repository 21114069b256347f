"""The backlog's drain plan in time (``autoscaler.core.drain``) and predictive's use of it:
replicas still starting are supply from their expected ready time, so a burst during a cold
start is answered once."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autoscaler.core.behavior import scale_up_ceiling
from autoscaler.core.drain import drain_replicas
from autoscaler.core.policies import predictive
from autoscaler.core.spec import Behavior
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State
from tests.test_predictive import make_spec


def reference(queue: int, arrival: int, ready: int, per_replica: int,
              starting_in: tuple[int, ...], new_in: int, deadline: int, most: int) -> int:
    """Slow and obviously correct: for each count from 0 up, the ready ones first, then the
    starting ones earliest first, then new ones, simulate the backlog second
    by second (integer inputs, so exact) and take the first that is empty at the deadline.
    Past ready + starting the count stops at the bound: ``most`` and ready + enough others
    to carry every arrival (at least those starting), past which, with each replica
    queueing its own requests, no count drains sooner."""
    if queue <= 0:
        return 0
    starting = sorted(starting_in)
    have = ready + len(starting)
    bound = max(have, min(most, ready + max(len(starting), -(-arrival // per_replica))))
    for total in range(bound + 1):
        used = starting[:max(0, total - ready)]
        new = max(0, total - have)
        q = queue
        for second in range(deadline):
            serving = min(total, ready) + sum(1 for t in used if t <= second)
            serving += new if second >= new_in else 0
            q = max(0, q + arrival - per_replica * serving)
        if q == 0:
            return total
    return bound


@pytest.mark.parametrize(
    ("queue", "arrival", "ready", "starting_in", "most", "expected"), [
        # Per replica 8 req/s, a new replica serves from 90 s, the deadline is 120 s.
        pytest.param(0, 30, 2, (60,), 50, 0, id="no queue: asks for nothing"),
        pytest.param(100, 10, 2, (), 50, 2,
                     id="100 queued, 6 req/s spare: drained in 17 s, before any new replica"),
        pytest.param(66, 22, 2, (), 50, 5,
                     id="66 queued at 22 req/s: 786 left -> 4 on a shared queue, 2 + 3 help"),
        pytest.param(66, 22, 2, (), 4, 4, id="the bound (max replicas, scale-up limit) binds"),
        pytest.param(156, 22, 2, (75, 75, 75), 50, 5,
                     id="15 s later, 3 starting (ready in 75 s): drained by then, no more"),
        pytest.param(156, 22, 2, (75, 75, 75, 100), 50, 5,
                     id="a 4th starting, ready last, is not needed: 5 kept, not 6"),
        pytest.param(400, 20, 2, (0, 0), 50, 3,
                     id="2 overdue starting count from now: one is enough, 880 - 960 < 0"),
        pytest.param(100, 20, 2, (30, 60), 50, 3,
                     id="only the first starting is needed: 100 + 2,400 - 1,920 - 720 < 0"),
        pytest.param(3000, 20, 2, (60,), 50, 5,
                     id="a huge backlog: as many as help, ready + ceil(20 / 8) = 5"),
        pytest.param(2000, 4, 10, (), 50, 3,
                     id="2,000 queued at 4 req/s: 3 ready drain it, (2,000 + 480) / 960 = 2.6"),
        pytest.param(2000, 4, 10, (30,), 50, 3,
                     id="the same with one starting: it is not needed either"),
    ])
def test_drain_plan_matches_the_second_by_second_backlog(
        queue: int, arrival: int, ready: int, starting_in: tuple[int, ...], most: int,
        expected: int) -> None:
    got = drain_replicas(queue, arrival, ready, 8.0, starting_in, 90.0, 120.0, most)
    assert got == expected
    assert reference(queue, arrival, ready, 8, starting_in, 90, 120, most) == expected


@dataclass(frozen=True)
class Plan:
    """One drain problem in integers (so the reference's arithmetic is exact)."""

    queue: int
    arrival: int
    ready: int
    per_replica: int
    starting_in: tuple[int, ...]
    new_in: int
    drain: int
    most: int

    def ask(self, queue: int | None = None, starting_in: tuple[int, ...] | None = None) -> int:
        return drain_replicas(self.queue if queue is None else queue, self.arrival, self.ready,
                              float(self.per_replica),
                              self.starting_in if starting_in is None else starting_in,
                              float(self.new_in), float(self.new_in + self.drain), self.most)


_plans = st.builds(
    Plan, queue=st.integers(0, 5000), arrival=st.integers(0, 80), ready=st.integers(0, 12),
    per_replica=st.integers(1, 12),
    starting_in=st.lists(st.integers(0, 150), max_size=6).map(lambda v: tuple(sorted(v))),
    new_in=st.integers(0, 150), drain=st.integers(1, 60), most=st.integers(0, 40))


@settings(max_examples=300, deadline=None)
@given(_plans)
def test_the_plan_equals_the_slow_reference(p: Plan) -> None:
    assert p.ask() == reference(p.queue, p.arrival, p.ready, p.per_replica, p.starting_in,
                                p.new_in, p.new_in + p.drain, p.most)


@settings(max_examples=300, deadline=None)
@given(_plans, st.integers(0, 5000))
def test_more_queue_never_asks_for_fewer(p: Plan, more: int) -> None:
    assert p.ask(queue=p.queue + more) >= p.ask()


@settings(max_examples=300, deadline=None)
@given(_plans)
def test_the_count_is_within_the_bound(p: Plan) -> None:
    # Above ready + starting only up to max replicas and the scale-up limit (``most``).
    assert 0 <= p.ask() <= max(p.ready + len(p.starting_in), p.most)


@settings(max_examples=300, deadline=None)
@given(_plans, st.integers(1, 150))
def test_a_replica_already_starting_is_never_asked_for_twice(p: Plan, dt: int) -> None:
    # Ask at t = 0; dt seconds later (before any replica becomes ready) the replicas asked
    # are starting, ready at new_in - dt, and the queue has followed the fluid path. The
    # plan then asks for no more than it did: the same replicas are not asked for again.
    assume(p.queue > 0)  # with no queue nothing is asked; a queue that forms later asks anew
    p = replace(p, most=1000)
    dt = min(dt, *p.starting_in, p.new_in)  # nothing becomes ready strictly inside (0, dt)
    first = p.ask()
    asked = max(0, first - p.ready - len(p.starting_in))
    queue = p.queue
    for second in range(dt):
        serving = p.ready + sum(1 for t in p.starting_in if t <= second)
        serving += asked if second >= p.new_in else 0
        queue = max(0, queue + p.arrival - p.per_replica * serving)
    later = (*(t - dt for t in p.starting_in), *(p.new_in - dt,) * asked)
    assert p.ask(queue=queue, starting_in=later) <= first


# --- the scale-up ceiling --------------------------------------------------------------


@pytest.mark.parametrize(("current", "events", "max_replicas", "expected"), [
    # The HPA's default scale-up: 100 % or 4 pods per 15 s, the larger.
    pytest.param(2, (), 200, 6, id="from 2: max(2 + 4, 2 x 2) = 6"),
    pytest.param(10, (), 200, 20, id="from 10: max(14, 20) = 20"),
    pytest.param(2, (), 5, 5, id="maxReplicas 5 binds"),
    # 4 added 5 s ago: the period started at 2, so still max(6, 4) = 6 from 6.
    pytest.param(6, ((95.0, 4),), 200, 6, id="a scale-up 5 s ago uses the period's start"),
])
def test_scale_up_ceiling(current: int, events: tuple[tuple[float, int], ...],
                          max_replicas: int, expected: int) -> None:
    spec = replace(make_spec(), max_replicas=max_replicas)
    assert scale_up_ceiling(current, State(scale_up_events=events), spec, 100.0) == expected


def test_scale_up_ceiling_without_behavior_is_the_legacy_limit() -> None:
    # Legacy: max(2 x current, 4): from 3, 6.
    spec = replace(make_spec(), behavior=None)
    assert scale_up_ceiling(3, State(), spec, 0.0) == 6


# --- a backlog during a cold start, through predictive.decide --------------------------

CAP = 4.0  # req/s per replica, the spec's capacity (learning off in make_spec)


def _restart(behavior: Behavior | None = None) -> list[tuple[float, int, int, Decision]]:
    """9 req/s on 3 replicas (the forecast's 3 at 3.2 req/s planned each) for 10 minutes;
    at 600 s two of them restart (ready again at 720 s, a 120-s cold start the policy did
    not ask for). A toy fleet: ready replicas serve up to 4 req/s each (the served rate the
    policy reads), the rest queues; a replica the policy asks for at t is ready at t + 120 s.
    Demand stays at 9 req/s, so the forecast keeps asking for 3 and every replica beyond
    comes from the backlog's drain plan."""
    spec = make_spec() if behavior is None else replace(make_spec(), behavior=behavior)
    state = State()
    ready_at: list[float] = [0.0, 0.0, 0.0]
    queue = 0.0
    out: list[tuple[float, int, int, Decision]] = []
    for i in range(80):
        t = 15.0 * i
        if t == 600.0:
            ready_at[1:3] = [720.0, 720.0]
        ready = sum(1 for a in ready_at if a <= t)
        current = len(ready_at)
        served = min(9.0 + queue / 15.0, ready * CAP)
        queue = max(0.0, queue + (9.0 - served) * 15.0)
        snap = Snapshot(current_replicas=current, ready_replicas=ready, metrics={
            Signal.REQUEST_RATE: MetricValue(served, t),
            Signal.QUEUE_DEPTH: MetricValue(queue, t),
            Signal.TTFT_P99: MetricValue(0.5, t)})
        d, state = predictive.decide(snap, state, spec, t)
        if d.replicas > current:
            ready_at += [t + spec.cold_start_s] * (d.replicas - current)
        out.append((t, current, ready, d))
    return out


def test_a_backlog_during_a_cold_start_is_answered_once() -> None:
    steps = _restart()
    drains = [(t, d.replicas) for t, _, _, d in steps if d.reason == Reason.BACKLOG_DRAIN]
    # 600 s: 1 ready serves 4 of the 9 req/s, 75 queued; the 2 restarting serve from 720 s.
    # Deadline 150 s: 75 + 9 x 150 - 4 x (150 + 2 x 30) = 585 left -> 5 more on a shared
    # queue, but 1 ready + ceil(9 / 4) = 3 others carrying every arrival = 4 is the most
    # that drains sooner: one more, asked once.
    assert drains[0] == (600.0, 4)
    # Through the cold start the count stays 4: the replica asked at 600 s and the two
    # restarting are supply from their ready times, neither asked for again every step
    # (the queue grows by 75 a step) nor released while the plan needs them (the
    # forecast alone asks for 3, and this spec holds no release).
    assert [d.replicas for t, _, _, d in steps if 600.0 <= t < 720.0] == [4] * 8
    assert all(d.reason == Reason.BACKLOG_DRAIN for t, _, _, d in steps if 600.0 <= t < 720.0)


def test_a_starting_replica_the_policy_did_not_ask_for_is_taken_as_asked_now() -> None:
    assert predictive._starting_asked((100.0, 100.0, 130.0), 2, 190.0) == (100.0, 130.0)
    assert predictive._starting_asked((100.0, 130.0), 3, 205.0) == (100.0, 130.0, 205.0)
    assert predictive._starting_asked((100.0,), 0, 205.0) == ()
    assert math.isclose(sum(predictive._starting_asked((), 2, 10.0)), 20.0)
