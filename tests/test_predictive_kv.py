"""The KV-cache floor of the predictive policy: what starts a replica on the cache alone.

A replica started now serves after a cold start and a sync (the lead time: 90 s + 15 s =
105 s = 7 steps of 15 s here). A KV level that has not lasted that long starts nothing on
the cache alone; a level held in every reading of the lead time starts what it needs; a
cache at 95 % (preemption) starts at once. Releasing still reads the median of the minute.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.policies import predictive
from autoscaler.core.spec import Capacity, PolicyKind, PredictiveParams, Spec
from autoscaler.core.types import MetricValue, Reason, Signal, Snapshot, State

SYNC = 15.0
COLD = 90.0
# 2 req/s on replicas of 4 req/s: the request rate alone needs 1 replica at any target
# utilisation above 0.5, so every replica above 1 in these tests is the KV floor's.
RATE = 2.0


def kv_spec() -> Spec:
    return Spec(max_replicas=20, min_replicas=1,
                capacity=Capacity(requests_per_second=4.0, concurrency=8.0),
                policy=PolicyKind.PREDICTIVE, cold_start_s=COLD, sync_period_s=SYNC,
                predictive=PredictiveParams(learn_capacity=False))


def kv_snap(at: float, kv: float, *, current: int, ready: int) -> Snapshot:
    return Snapshot(current_replicas=current, ready_replicas=ready, metrics={
        Signal.REQUEST_RATE: MetricValue(RATE, at), Signal.QUEUE_DEPTH: MetricValue(0.0, at),
        Signal.TTFT_P99: MetricValue(0.5, at), Signal.KV_CACHE_USAGE: MetricValue(kv, at)})


def drive(readings: Sequence[float], *, current: int = 1) -> list[int]:
    """The replicas asked for after each reading (per-replica KV use); replicas are ready
    at once, so each reading is read on the fleet the previous decision left."""
    spec, state, out = kv_spec(), State(), []
    for i, kv in enumerate(readings):
        t = SYNC * i
        d, state = predictive.decide(kv_snap(t, kv, current=current, ready=current),
                                     state, spec, t)
        current = d.replicas
        out.append(d.replicas)
    return out


LOW, BURST = 0.05, 0.82


@pytest.mark.parametrize(("readings", "expected_peak"), [
    # Six readings of 82 % in a row span 75 s, less than the 105-s lead time: the 7-step
    # window still holds a 5 % reading, so the level held throughout is 0.05 of a cache.
    pytest.param((LOW,) * 8 + (BURST,) * 6 + (LOW,) * 8, 1,
                 id="a 75-s burst starts nothing"),
    # Bursts of 30 s every 60 s (a web trace x20): the median of the minute reads 82 % at
    # times, but no lead time is ever covered by it.
    pytest.param((LOW,) * 8 + (BURST, BURST, LOW, LOW) * 10, 1,
                 id="30-s bursts every minute start nothing"),
    # Seven readings of 82 % (every sync of the 105-s lead time): 0.82 caches on 1 ready,
    # ceil(0.82 / 0.8) = 2.
    pytest.param((LOW,) * 8 + (BURST,) * 7, 2, id="a level held for a lead time starts one"),
    # 95 % is vLLM's preemption: one reading acts, ceil(0.96 / 0.8) = 2.
    pytest.param((LOW,) * 8 + (0.96,), 2, id="saturation starts at once"),
    # A fresh controller reading 82 % has no lead time of readings: nothing yet.
    pytest.param((BURST,) * 3, 1, id="a fresh controller waits for a lead time"),
])
def test_the_kv_floor_starts_on_a_level_held_for_a_lead_time(
        readings: tuple[float, ...], expected_peak: int) -> None:
    assert max(drive(readings)) == expected_peak


def test_a_sustained_level_starts_what_it_needs_within_the_lead_time() -> None:
    # 3 ready at 85 % hold 2.55 caches: ceil(2.55 / 0.8) = 4. The level appears at reading
    # 8 (t = 120 s); the 7th reading of it (t = 210 s, 90 s later, within the 105-s lead
    # time) starts the 4th replica, and not earlier.
    out = drive((0.05,) * 8 + (0.85,) * 10, current=3)
    assert out[8:14] == [3] * 6
    assert out[14] == 4


def test_saturation_acts_on_the_reading_itself() -> None:
    # 2 ready at 97 % hold 1.94 caches: ceil(1.94 / 0.8) = 3, at the first such reading.
    spec, state = kv_spec(), State()
    for i in range(8):
        _, state = predictive.decide(kv_snap(SYNC * i, 0.1, current=2, ready=2), state, spec,
                                     SYNC * i)
    d, _ = predictive.decide(kv_snap(SYNC * 8, 0.97, current=2, ready=2), state, spec,
                             SYNC * 8)
    assert d.replicas == 3
    assert d.reason == Reason.FORECAST
    assert "KV cache 97% now on 2 ready needs 3" in d.message


@pytest.mark.parametrize(("kept", "expected"), [
    # Lead time 105 s, sync 15 s, now 200: the window is (95, 200] and must start by 110.
    pytest.param(((95.0, 9.0), (110.0, 0.8), (125.0, 0.9), (200.0, 0.85)), 0.8,
                 id="the lowest reading inside the window"),
    pytest.param(((110.0, 0.8), (200.0, 0.85)), 0.8, id="a gap inside the window still counts"),
    pytest.param(((125.0, 0.8), (200.0, 0.85)), None, id="readings from 125 s only: not covered"),
    pytest.param((), None, id="no reading"),
])
def test_the_sustained_level_is_the_minimum_over_a_covered_lead_time(
        kept: tuple[tuple[float, float], ...], expected: float | None) -> None:
    assert predictive._kv_sustained(kept, 200.0, 105.0, 15.0) == expected


BATCH_FULL = 0.82
"""A replica's batch full of short web requests (512 sequences) holds 82 % of its cache:
the highest reading a burst of them gives (NASA x20), below saturation."""


def fleet(loads: Sequence[float]) -> tuple[int, int]:
    """(replicas started, peak replicas) when the fleet holds ``loads[i]`` replica caches at
    step i and a started replica is ready a cold start later; a reading is the load over
    the ready replicas, at most a full batch (``BATCH_FULL``)."""
    spec, state = kv_spec(), State()
    current, pending, starts, peak = 1, [], 0, 1
    for i, load in enumerate(loads):
        t = SYNC * i
        pending = [p for p in pending if p > t]
        ready = current - len(pending)
        d, state = predictive.decide(kv_snap(t, min(BATCH_FULL, load / ready),
                                             current=current, ready=ready), state, spec, t)
        if d.replicas > current:
            starts += d.replicas - current
            pending += [t + COLD] * (d.replicas - current)
        elif d.replicas < current:
            pending = pending[:max(0, len(pending) - (current - d.replicas))]
        current = d.replicas
        peak = max(peak, current)
    return starts, peak


@pytest.mark.parametrize(("base", "starts_peak"), [
    # 0.1 caches: 1 replica, and the bursts (0.92 caches, read as a full batch) add none.
    pytest.param(0.1, (0, 1), id="1 replica"),
    # 1.0 caches read a full batch (0.82) on 1 ready for a lead time: ceil(0.82 / 0.8) = 2,
    # and on 2 ready (0.5 each) the bursts read (1.0 + 0.82) / 2 = 0.91 for 45 s: no more.
    pytest.param(1.0, (1, 2), id="2 replicas"),
    # 1.8 caches: 1 -> 2 (0.82 held), 2 -> 3 (1.64 held, ceil(1.64 / 0.8) = 3); on 3 ready
    # the bursts read (1.8 + 0.82) / 3 = 0.87: no more.
    pytest.param(1.8, (2, 3), id="3 replicas"),
])
def test_bursty_kv_at_one_to_three_replicas_does_not_flap(
        base: float, starts_peak: tuple[int, int]) -> None:
    # NASA x20's shape: a base load, and every 15 minutes a burst of 0.82 more caches (a
    # full batch of web requests) for 45 s (3 readings), for 8 hours. On the median of the
    # minute (before the floor read a lead time) 2 burst readings out of the 4 in the
    # window started a replica that was ready after the burst, again each time the release
    # hold (doubling after every flap) had let it go: 4, 5 and 6 starts, peaks 2, 3 and 4.
    cycle = [base + BATCH_FULL] * 3 + [base] * 57
    assert fleet([base] * 8 + cycle * 32) == starts_peak


def test_a_sustained_load_still_gets_its_replicas() -> None:
    # Long generations hold 2.4 replica caches from t = 120 s: 1 ready reads a full batch
    # (0.82) for a lead time, ceil(0.82 / 0.8) = 2; 2 ready hold 1.64, ceil(2.05) = 3; 3
    # ready hold 2.4, ceil(2.4 / 0.8) = 3 at the target. Two starts, none released.
    assert fleet([0.1] * 8 + [2.4] * 120) == (2, 3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 12),
                          st.floats(0.5, 0.94)), min_size=1, max_size=12))
def test_no_burst_shorter_than_the_lead_time_starts_a_replica(
        bursts: list[tuple[int, int, float]]) -> None:
    # Any train of bursts below saturation, each at most 6 readings (75 s) long and apart
    # by at least one low reading: the request rate needs 1 replica, and no run of the
    # cache ever covers the 105-s lead time, so the fleet stays at 1.
    readings: list[float] = [LOW] * 8
    for length, gap, level in bursts:
        readings += [level] * length + [LOW] * gap
    assert max(drive(readings)) == 1
