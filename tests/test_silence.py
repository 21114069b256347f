"""A silence's release hold runs alongside the proof that the fleet is idle, not after it.

Worked numbers for every test here (``test_predictive_idle``'s burst: 12 req/s on 4 req/s a
replica holds 4 replicas; minReplicas 1; sync 15 s; base hold max(scale-down window 120 s,
1 cold start 120 s) = 120 s, not doubled: nothing was released). The silence's first
decision is at t0 (request rate, queue and running fresh and 0, no TTFT):

* t0 .. t0 + 105 s (8 decisions): shorter than one hold, a gap between bursts: 4 kept,
  and recorded as asked, so if traffic comes back the burst's fleet is held one more hold.
* t0 + 120 s: the silence has lasted one hold; what its first hold asked no longer holds,
  the burst's last recommendation (t0 - 15 s) is older than the hold: released to 1.

Before, the absent TTFT was missing data until t0 + 120 s (4 recorded at t0 .. t0 + 105 s),
and those records held 4 until t0 + 105 + 120 = t0 + 225 s: released at t0 + 225 s, the 16th
silent decision instead of the 9th.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import recur
from autoscaler.core.decide import decide
from autoscaler.core.spec import PolicyKind, Spec, default_behavior
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot
from tests.test_predictive_idle import BURST_REPLICAS, SYNC, after_burst, busy, run_silence, silent
from tests.test_predictive_idle import spec as idle_spec


def spec() -> Spec:
    """``test_predictive_idle``'s spec with the ``behavior`` a predictive spec without one
    runs with, live and in replay (``default_behavior``: no scale-down stabilisation on top
    of the hold), so the release times below are the hold's alone."""
    s = idle_spec()
    behavior = default_behavior(PolicyKind.PREDICTIVE)
    assert behavior is not None and behavior.scale_down.stabilization_window_seconds == 0
    return replace(s, behavior=behavior)


@pytest.fixture(autouse=True)
def hold_from_silence_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule under test, off by default (``recur.HOLD_FROM_SILENCE_START``)."""
    monkeypatch.setattr(recur, "HOLD_FROM_SILENCE_START", True)


def trickle(at: float, current: int) -> Snapshot:
    """Traffic back at 1 req/s, TTFT within the SLO: on its own the plan asks for 1."""
    return Snapshot(current_replicas=current, ready_replicas=current, metrics={
        Signal.REQUEST_RATE: MetricValue(1.0, at),
        Signal.QUEUE_DEPTH: MetricValue(0.0, at),
        Signal.RUNNING: MetricValue(1.0, at),
        Signal.TTFT_P99: MetricValue(0.3, at)})


def first_release(decisions: list[Decision]) -> int | None:
    """Index of the first decision below the burst's fleet, or None."""
    return next((i for i, d in enumerate(decisions) if d.replicas < BURST_REPLICAS), None)


@pytest.mark.parametrize(("steps", "released_at"), [
    pytest.param(6, None, id="90 s of silence (< 120 s hold): kept"),
    pytest.param(8, None, id="t0..t0+105 s, 8 decisions, never a whole hold: kept"),
    pytest.param(9, 8, id="the 9th decision at t0+120 s has seen one hold: released there"),
    pytest.param(80, 8, id="20 min of silence: released at t0+120 s (old code: t0+225 s)"),
])
def test_a_silence_is_released_one_hold_after_it_began(
        steps: int, released_at: int | None) -> None:
    s = spec()
    state, current, start = after_burst(s)
    decisions, _, end = run_silence(s, state, current, start, steps)
    assert first_release(decisions) == released_at
    if released_at is not None:
        assert decisions[released_at].replicas == s.min_replicas == 1
        assert end == 1
        # Never on missing data: the absent TTFT was read as the idle fleet's.
        assert all(d.reason is not Reason.METRICS_MISSING for d in decisions)
    else:
        assert end == BURST_REPLICAS


def test_a_gap_shorter_than_a_hold_holds_the_fleet_one_hold_after_traffic_returns() -> None:
    """The gap's decisions are recorded as the count they found: traffic that comes back
    at 1 req/s after 7 silent decisions (t0 .. t0 + 90 s) finds 4 held while the last gap
    record (t0 + 90 s) is inside the hold, through t0 + 195 s; released at t0 + 210 s, when
    it is one hold old. Had the gap's hold not been recorded, 1 req/s (the plan asks 1)
    would have released at once, at t0 + 105 s."""
    s = spec()
    state, current, t0 = after_burst(s)
    gap, state, current = run_silence(s, state, current, t0, 7)
    assert current == BURST_REPLICAS and first_release(gap) is None
    t = t0 + 7 * SYNC
    counts = {}
    while t <= t0 + 300.0:
        d, state = decide(trickle(t, current), state, s, t)
        current = d.replicas
        counts[t - t0] = current
        t += SYNC
    assert all(n == BURST_REPLICAS for dt, n in counts.items() if dt <= 195.0)
    assert counts[210.0] == 1


# ---------------------------------------------------------------- invariants

# A reading of the silent fleet that proves nothing: each is what the rule "missing,
# stale or partially covered metrics are not low load" protects.
DOUBTFUL: list[dict[str, object]] = [
    {"rate": None}, {"rate": (0.0, 600.0)},
    {"rate": None, "bounds": {Signal.REQUEST_RATE: 0.0}},
    {"queue": None}, {"queue": (0.0, 600.0)},
    {"queue": None, "bounds": {Signal.QUEUE_DEPTH: 0.0}},
    {"running": None}, {"running": (0.0, 600.0)},
    {"running": None, "bounds": {Signal.RUNNING: 0.0}},
    {"queue": (2.0, 0.0)}, {"running": (1.0, 0.0)}, {"arrivals": (3.0, 0.0)},
]
# 0: busy (12 req/s, the plan needs 4 on its own), 1: provably idle, 2+: doubtful.
STEP = st.integers(min_value=0, max_value=1 + len(DOUBTFUL))


@settings(max_examples=60, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=60))
def test_only_a_silence_proven_for_a_whole_hold_releases(kinds: list[int]) -> None:
    """Any mix of busy, idle and doubtful readings after the burst: a doubtful reading never
    releases, a busy one never does (it needs the 4 it has), and a provably idle one only
    once the unbroken run of idle readings it ends has lasted the base hold of 120 s
    (8 decisions at 15 s: the run's first is at t0, the release no earlier than t0+120 s)."""
    s = spec()
    state, current, t = after_burst(s)
    run = 0  # idle readings in a row, this one included
    for kind in kinds:
        if kind == 0:
            snap, run = busy(t, current), 0
        elif kind == 1:
            snap, run = silent(t, current), run + 1
        else:
            snap, run = silent(t, current, **DOUBTFUL[kind - 2]), 0  # type: ignore[arg-type]
        d, state = decide(snap, state, s, t)
        if d.replicas < current:
            assert kind == 1, f"released on a {'busy' if kind == 0 else 'doubtful'} reading"
            assert (run - 1) * SYNC >= 120.0, f"released {(run - 1) * SYNC:g} s into silence"
            assert d.replicas >= s.min_replicas
        current = d.replicas if d.valid else current
        t += SYNC


@pytest.mark.parametrize(("on", "released_at"), [
    pytest.param(False, 15, id="off (default): t0+105 s's missing-TTFT hold lasts to t0+225 s"),
    pytest.param(True, 8, id="on: released at t0+120 s, one hold after the silence began"),
])
def test_the_rule_is_off_by_default_and_costs_one_hold_more(
        monkeypatch: pytest.MonkeyPatch, on: bool, released_at: int) -> None:
    """Off, the silence's first hold (t0 .. t0 + 105 s) reads the absent TTFT as missing data
    and records 4; those records hold 4 until the last (t0 + 105 s) is one hold old: released
    at t0 + 225 s, the 16th silent decision."""
    monkeypatch.setattr(recur, "HOLD_FROM_SILENCE_START", on)
    s = spec()
    state, current, start = after_burst(s)
    decisions, _, _ = run_silence(s, state, current, start, 20)
    assert first_release(decisions) == released_at
    assert decisions[released_at].replicas == 1
    missing = [i for i, d in enumerate(decisions) if d.reason is Reason.METRICS_MISSING]
    assert missing == ([] if on else list(range(8)))
