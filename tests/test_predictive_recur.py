"""Surges that recur keep their fleet through a silence (``autoscaler.core.recur``).

The price of a cold start's misses comes from the SLO (error budget b = 1 - target), the
keep time from the silences seen so far (ski rental over thresholds), and the memory is
bounded. Every expected number below is written with its arithmetic.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import recur
from autoscaler.core.decide import decide
from autoscaler.core.recur import Plan, Surge, SurgeMemory
from autoscaler.core.spec import Capacity, PolicyKind, Spec
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State

BUDGET = 0.01  # 1 - 0.99

# The module's worked surge: N = 4,000 requests, G = 12,000 replica-s (3 a request), and a
# first lead time of 8 readings 10 s apart at 10 req/s on replicas of 1.5 req/s. On one
# replica a backlog forms at the first reading and every request behind it waits (first
# come, first served): E = 8 x 10 x 10 = 800; on 2 (3 req/s) still 800; on 7 (10.5 req/s)
# E = 0.
SYNC_S = 10.0
LEAD = tuple((10.0, 1.5) for _ in range(8))


def surge(gap_s: float, *, start: float = 0.0, requests: float = 4000.0,
          replica_s: float = 12_000.0) -> Surge:
    return Surge(start=start, gap_s=gap_s, requests=requests, replica_s=replica_s, lead=LEAD)


@pytest.mark.parametrize(("replicas", "expected"), [
    pytest.param(1, 800.0, id="1 replica: every request waits behind the backlog: 800"),
    pytest.param(2, 800.0, id="2 replicas (3 req/s) still queue all of it: 800 (not 560)"),
    pytest.param(7, 0.0, id="7 replicas carry 10.5 req/s: 0"),
])
def test_excess_counts_every_request_behind_the_backlog(replicas: int,
                                                        expected: float) -> None:
    assert recur.excess(surge(600.0), replicas, SYNC_S) == pytest.approx(expected)


@pytest.mark.parametrize(("lead", "replicas", "slo_s", "expected"), [
    # 20 then 40 req/s at 10 a replica, sync 15 s: backlog 150, then 600.
    pytest.param(((20.0, 10.0), (40.0, 10.0)), 1, 2.0, 900.0,
                 id="1 replica clears 20 in 2 s, backlog 150 and 600: (20 + 40) x 15"),
    pytest.param(((20.0, 10.0), (40.0, 10.0)), 3, 2.0, 600.0,
                 id="3 replicas: no backlog, then 150 > 60 cleared in 2 s: 40 x 15"),
    pytest.param(((20.0, 10.0), (40.0, 10.0)), 3, 3.0, 600.0,
                 id="3 replicas, SLO 3 s: 150 > 90: 40 x 15"),
    pytest.param(((20.0, 10.0), (40.0, 10.0)), 3, 5.0, 0.0,
                 id="3 replicas, SLO 5 s: 150 <= 150 cleared in time: 0"),
    pytest.param(((20.0, 10.0), (40.0, 10.0)), 4, 2.0, 0.0, id="4 replicas: 0"),
    # The backlog drains when demand falls below the fleet: 40, 5, 5 on 3 replicas
    # (30 req/s): 150, 0 (150 - 375 < 0), 0: only the first reading waits.
    pytest.param(((40.0, 10.0), (5.0, 10.0), (5.0, 10.0)), 3, 2.0, 600.0,
                 id="a drained backlog stops counting: 40 x 15"),
])
def test_excess_waits_past_the_slo_first_come_first_served(
        lead: tuple[tuple[float, float], ...], replicas: int, slo_s: float,
        expected: float) -> None:
    s = Surge(start=0.0, gap_s=600.0, requests=1000.0, replica_s=1000.0, lead=lead)
    assert recur.excess(s, replicas, 15.0, slo_s) == pytest.approx(expected)


@pytest.mark.parametrize(("requests", "excess", "expected"), [
    pytest.param(4000.0, 800.0, 228_000.0, id="(800 - 40) x 3 / 0.01 = 228,000"),
    pytest.param(4000.0, 680.0, 192_000.0, id="(680 - 40) x 3 / 0.01 = 192,000"),
    pytest.param(4000.0, 40.0, 0.0, id="misses exactly the budget (1 % of 4,000): 0"),
    pytest.param(80_000.0, 800.0, 0.0, id="800 of 80,000 is the budget: 0"),
    pytest.param(0.0, 800.0, 0.0, id="no requests: 0"),
])
def test_a_miss_is_priced_from_the_error_budget(requests: float, excess: float,
                                                expected: float) -> None:
    s = surge(600.0, requests=requests)
    assert recur.value(s, excess, BUDGET) == pytest.approx(expected)


@pytest.mark.parametrize(("gaps", "above_min", "expected"), [
    # tau 0: 3 x 228,000 = 684,000; tau 1,200: 2 x 33 x 1,200 + 33 x 1,200 + 228,000 =
    # 346,800; tau 3,604: 33 x (1,200 + 1,200 + 3,604) = 198,132 (34 replicas miss none).
    pytest.param((1200.0, 1200.0, 3604.0), 33, Plan(33, 3604.0),
                 id="silences of 1,200, 1,200, 3,604 s: keep 33 for 3,604 s"),
    # tau 19,201: 33 x 19,201 x 2 + 228,000 = 1,495,266 > tau 0: 456,000.
    pytest.param((19_201.0, 63_002.0), 33, Plan(),
                 id="silences of 5 h and 17 h: release"),
    # One silence must pay for itself and for one more that outlasts the keep (each
    # 33 x 6,000 = 198,000): 228,000 - 2 x 198,000 < 0 (the plan before the spread was
    # priced kept, 198,000 < 228,000; ``tests/test_recur_spread.py``) ...
    pytest.param((6000.0,), 33, Plan(), id="one silence of 6,000 s: release"),
    # ... and 33 x 7,000 = 231,000 > 228,000 alone.
    pytest.param((7000.0,), 33, Plan(), id="one silence of 7,000 s: release"),
    # One more replica (3 req/s against 10) still queues every request: it spares nothing.
    pytest.param((3604.0,), 1, Plan(), id="1 replica more sparing nothing: release"),
    pytest.param((600.0,), 0, Plan(), id="nothing above minReplicas: nothing to keep"),
    pytest.param((), 33, Plan(), id="no silence seen: release as before"),
])
def test_the_plan_is_the_cheapest_threshold_over_the_silences_seen(
        gaps: tuple[float, ...], above_min: int, expected: Plan) -> None:
    seen = tuple(surge(g, start=float(i)) for i, g in enumerate(gaps))
    assert recur.plan(seen, above_min, 1, SYNC_S, BUDGET) == expected


def test_a_target_of_100_percent_keeps_through_the_longest_silence_seen() -> None:
    # No budget: a miss is priced infinite, so only covering every remembered gap is
    # finite (33 x (600 + 50,000)); keeping still ends with the longest silence seen.
    seen = (surge(600.0, start=0.0), surge(50_000.0, start=1.0))
    assert recur.value(seen[0], 1.0, 0.0) == float("inf")
    assert recur.value(seen[0], 0.0, 0.0) == 0.0
    assert recur.plan(seen, 33, 1, SYNC_S, 0.0) == Plan(33, 50_000.0)


def test_surges_within_the_budget_are_never_kept_for() -> None:
    # 80,000 requests: 800 misses are the 1 % budget, V = 0, so keeping only costs.
    seen = tuple(surge(60.0, start=float(i), requests=80_000.0) for i in range(5))
    assert recur.plan(seen, 33, 1, SYNC_S, BUDGET) == Plan()


def observe(mem: SurgeMemory, now: float, *, idle: bool = False,
            demand: float | None = None, replicas: int = 4) -> SurgeMemory:
    return recur.observe(mem, now, idle=idle, demand=demand, capacity_rps=4.0,
                         replicas=replicas, min_replicas=1, hold_s=120.0, lead_s=135.0,
                         sync_s=15.0, budget=BUDGET)


def test_a_silence_shorter_than_the_idle_hold_is_a_gap_inside_the_surge() -> None:
    mem = observe(SurgeMemory(quiet_since=0.0), 300.0, demand=12.0)  # a surge after 300 s
    assert mem.surge is not None and mem.surge.gap_s == 300.0
    mem = observe(mem, 315.0, idle=True)  # quiet for 105 s < the 120-s hold ...
    mem = observe(mem, 420.0, idle=True)
    mem = observe(mem, 435.0, demand=12.0)  # ... then traffic again
    assert mem.seen == () and mem.quiet_since is None
    assert mem.surge is not None and mem.surge.start == 300.0
    # 12 req/s x 15 s at 300 s and at 435 s; 9 x 15 s = 135 s of lead from 300 s: only
    # the first reading (435 - 300 = 135 is not < 135) is in it: 12 req/s on one replica
    # of 4 leaves a backlog of 120, and all 12 x 15 = 180 requests wait behind it.
    assert mem.surge.requests == pytest.approx(360.0)
    assert recur.excess(mem.surge, 1, 15.0) == pytest.approx(180.0)


def test_a_silence_that_outlasts_the_hold_remembers_the_surge_and_plans() -> None:
    mem = observe(SurgeMemory(quiet_since=0.0), 300.0, demand=12.0)
    mem = observe(mem, 315.0, idle=True)
    assert mem.quiet_since == 315.0 and mem.seen == ()
    mem = observe(mem, 435.0, idle=True)  # 120 s: the hold
    assert [s.gap_s for s in mem.seen] == [300.0]
    assert mem.surge is None and mem.quiet_since == 315.0
    mem2 = observe(mem, 1000.0, demand=5.0)
    assert mem2.surge is not None and mem2.surge.gap_s == 1000.0 - 315.0


@pytest.mark.parametrize("demand", [
    pytest.param(None, id="demand unknown (stale or missing)"),
    pytest.param(0.0, id="demand 0 but not proved idle (requests in flight)"),
])
def test_readings_that_prove_nothing_neither_start_nor_end_a_silence(
        demand: float | None) -> None:
    quiet = SurgeMemory(quiet_since=100.0, seen=(surge(60.0),))
    assert observe(quiet, 200.0, demand=demand) == quiet
    busy = SurgeMemory(surge=surge(60.0, start=50.0))
    assert observe(busy, 200.0, demand=demand) == busy


def test_the_memory_forgets_after_a_week_and_keeps_at_most_32() -> None:
    week = 7 * 86_400.0
    mem = SurgeMemory()
    t = 0.0
    for _ in range(40):  # 40 surges, each after a 1,000-s silence
        mem = observe(mem, t, idle=True)
        mem = observe(mem, t + 1000.0, demand=12.0)
        mem = observe(mem, t + 1015.0, idle=True)
        mem = observe(mem, t + 1135.0, idle=True)
        t += 2000.0
    assert len(mem.seen) == 32
    late = observe(observe(mem, t + week, demand=12.0), t + week + 15.0, idle=True)
    late = observe(late, t + week + 135.0, idle=True)
    assert [s.start for s in late.seen] == [t + week]  # every older one forgotten


gaps_st = st.lists(st.floats(0.0, 200_000.0), min_size=0, max_size=12)


@settings(max_examples=200, deadline=None)
@given(gaps=gaps_st, above_min=st.integers(0, 80),
       requests=st.floats(1.0, 1e6), replica_s=st.floats(0.0, 1e7),
       demand=st.floats(0.0, 500.0), cap=st.floats(0.01, 100.0))
def test_the_keep_is_a_remembered_gap_and_pays_for_itself(
        gaps: list[float], above_min: int, requests: float, replica_s: float,
        demand: float, cap: float) -> None:
    seen = tuple(Surge(start=float(i), gap_s=g, requests=requests, replica_s=replica_s,
                       lead=((demand, cap),) * 9) for i, g in enumerate(gaps))
    p = recur.plan(seen, above_min, 1, 15.0, BUDGET)
    assert p.replicas in (0, above_min)  # never more than the fleet above minReplicas
    assert p.keep_s == 0.0 or p.keep_s in gaps  # never longer than a silence seen
    # An optimum beats releasing at once, so what it keeps costs no more than the misses
    # of every remembered surge were worth.
    worth = sum(recur.value(s, recur.excess(s, 1, 15.0), BUDGET) for s in seen)
    assert p.replicas * p.keep_s <= worth * (1 + 1e-9) + 1e-6


step_st = st.one_of(st.just("idle"), st.just("stale"), st.floats(0.0, 100.0))


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(step_st, st.floats(1.0, 50_000.0)), max_size=60))
def test_the_memory_stays_bounded_and_only_proofs_start_silences(
        steps: list[tuple[str | float, float]]) -> None:
    mem, t = SurgeMemory(), 0.0
    for kind, dt in steps:
        t += dt
        before = mem
        if kind == "idle":
            mem = observe(mem, t, idle=True)
        else:
            demand = kind if isinstance(kind, float) else None
            mem = observe(mem, t, demand=demand)
            if demand is None or demand == 0.0:
                assert mem == before  # doubtful or no-new-request data changes nothing
            assert mem.quiet_since is None or mem == before
        assert len(mem.seen) <= recur.MEMORY_ENTRIES
        if mem.seen != before.seen:
            # Written only when a silence is recorded, and pruned then: a plan is made only
            # from surges of the last week. Between writes an entry may age past it (a
            # fleet idle for 8 days keeps its week-old list untouched, read by no plan).
            assert all(t - s.start <= recur.MEMORY_S for s in mem.seen)
        assert mem.surge is None or len(mem.surge.lead) <= 135 // 15 + 1
    if all(kind != "idle" for kind, _ in steps):
        # Nothing is remembered without a proven silence but whether traffic was seen (a
        # later silence is then not censored: ``Surge.censored``).
        traffic = any(isinstance(kind, float) and kind > 0.0 for kind, _ in steps)
        assert mem == SurgeMemory(traffic_seen=traffic)


# ---------------------------------------------------------------- through the policy

CAPACITY = Capacity(requests_per_second=4.0, concurrency=8.0)
SYNC = 15.0
BURST_REPLICAS = 4  # 12 req/s at 4 req/s x 0.85: ceil(3.53) = 4


def spec() -> Spec:
    base = Spec(max_replicas=50, min_replicas=1, capacity=CAPACITY,
                policy=PolicyKind.PREDICTIVE, sync_period_s=SYNC)
    return replace(base, predictive=replace(base.predictive, learn_capacity=False))


def busy(at: float, current: int) -> Snapshot:
    return Snapshot(current_replicas=current, ready_replicas=current, metrics={
        Signal.REQUEST_RATE: MetricValue(12.0, at), Signal.QUEUE_DEPTH: MetricValue(0.0, at),
        Signal.RUNNING: MetricValue(3.0, at), Signal.TTFT_P99: MetricValue(0.4, at)})


def silent(at: float, current: int) -> Snapshot:
    return Snapshot(current_replicas=current, ready_replicas=current, metrics={
        Signal.REQUEST_RATE: MetricValue(0.0, at), Signal.QUEUE_DEPTH: MetricValue(0.0, at),
        Signal.RUNNING: MetricValue(0.0, at)})


def run(pattern: list[tuple[str, float]]) -> list[tuple[float, str, Decision]]:
    """Replays (kind, seconds) phases; the fleet follows each decision at once."""
    s = spec()
    state, current, t = State(), BURST_REPLICAS, 0.0
    out: list[tuple[float, str, Decision]] = []
    for kind, seconds in pattern:
        for _ in range(round(seconds / SYNC)):
            snap = busy(t, current) if kind == "burst" else silent(t, current)
            d, state = decide(snap, state, s, t)
            current = d.replicas
            out.append((t, kind, d))
            t += SYNC
    return out


def silence_counts(out: list[tuple[float, str, Decision]], index: int) -> list[int]:
    """Replica counts of the ``index``-th silence (0-based)."""
    runs: list[list[int]] = []
    prev = ""
    for _, kind, d in out:
        if kind == "silent":
            if prev != "silent":
                runs.append([])
            runs[-1].append(d.replicas)
        prev = kind
    return runs[index]


def test_silences_that_recur_within_20_minutes_keep_the_burst_fleet() -> None:
    # Bursts of 10 min at 12 req/s, 20 min apart. A cold start on 1 replica misses
    # (12 - 4) x 15 x 9 = 1,080 of a burst's 7,200 requests (15 %, the budget is 72), worth
    # (1,080 - 72) x (4 x 600 / 7,200) / 0.01 = 33,600 replica-s; 3 replicas kept for a
    # 20-min silence cost 3,600. After two such silences the third is kept through.
    burst, gap = ("burst", 600.0), ("silent", 1200.0)
    out = run([burst, gap, burst, gap, burst, gap, burst, ("silent", 3 * 3600.0)])
    first, third = silence_counts(out, 0), silence_counts(out, 2)
    assert first[-1] == 1  # nothing seen yet: released as before
    # Kept through at the burst's own fleet (the trend's overshoot after a cold burst
    # left 5, not 4), never more.
    assert third[0] >= BURST_REPLICAS
    assert all(n == third[0] for n in third)
    kept = [d for _, kind, d in out if kind == "silent"
            and d.reason == Reason.FORECAST_HOLD and "of silence" in d.message]
    assert kept
    # A silence longer than every one seen (3 h) is released: within the remembered
    # 1,200 s plus the release hold (at most 16 x 120 s).
    last = silence_counts(out, 3)
    assert max(last) <= third[0]
    assert last[-1] == 1
    assert sum(n > 1 for n in last) * SYNC <= 1200.0 + 32 * 60.0


def test_silences_that_last_hours_release_as_before() -> None:
    # The same bursts 5 h apart: keeping 3 replicas breaks even with a cold start's
    # 33,600 replica-s of misses at 33,600 / 3 = 11,200 s (3.1 h); 5 h is past it.
    burst, gap = ("burst", 600.0), ("silent", 5 * 3600.0)
    out = run([burst, gap, burst, gap, burst, gap])
    for i in range(3):
        counts = silence_counts(out, i)
        assert counts[-1] == 1
        # Released within the idle hold and the release hold (each at most 16 x 120 s).
        assert sum(n > 1 for n in counts) * SYNC <= 2 * 1920.0


def test_a_keep_ends_with_the_silence_it_was_planned_for() -> None:
    # After three 1,200-s silences the plan keeps the burst fleet for 1,200 s. What the
    # keep asks is held one release hold (240 s after the bursts' flaps) and then the
    # legacy 300-s scale-down stabilisation, so asking must stop that much earlier: in a
    # 3-h silence the fleet stays above minReplicas for 1,200 s and not, as before,
    # 1,200 + 240 + 300 - 30 = 1,710 s (the fleet cost a hold and a stabilisation more
    # than the plan priced; client 28's 59 replicas kept 1,920 s past a 3,570-s plan).
    burst, gap = ("burst", 600.0), ("silent", 1200.0)
    out = run([burst, gap, burst, gap, burst, gap, burst, ("silent", 3 * 3600.0)])
    last = silence_counts(out, 3)
    assert last[0] > 1
    assert sum(n > 1 for n in last) * SYNC == 1200.0
    # ... and the silences it was planned from are kept through to the next burst.
    assert all(n > 1 for n in silence_counts(out, 2))
