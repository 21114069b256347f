"""The spread of recent silences (``recur.SILENCE_SPREAD``, off): a recency-weighted
Kaplan-Meier survival of the silences seen, censored where the controller started inside a
silence, read at a quantile and bounded by ski rental; and a cold start's cost that counts
the backlog's drain (``recur.DRAIN_COUNTS``, off).

The surge is the module's worked one: N = 4,000 requests, G = 12,000 replica-s, a first
lead time of 8 readings 10 s apart at 10 req/s on replicas of 1.5 req/s: keeping k = 33
above 1 spares S = (800 - 40) x 3 / 0.01 = 228,000 replica-s.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import recur
from autoscaler.core.recur import Plan, Surge, SurgeMemory

BUDGET = 0.01
SYNC_S = 10.0
LEAD = tuple((10.0, 1.5) for _ in range(8))


def surge(gap_s: float, i: int = 0, *, censored: bool = False) -> Surge:
    return Surge(start=float(i), gap_s=gap_s, requests=4000.0, replica_s=12_000.0,
                 lead=LEAD, censored=censored)


def seen_of(gaps: tuple[float, ...], censored: int | None = None) -> tuple[Surge, ...]:
    return tuple(surge(g, i, censored=i == censored) for i, g in enumerate(gaps))


@pytest.mark.parametrize(("gaps", "censored", "half_life", "expected"), [
    # Weights 0.25, 0.5, 1 (total 1.75): 1 - 0.25 / 1.75; x (1 - 0.5 / 1.5); 0.
    pytest.param((100.0, 200.0, 400.0), None, 1.0,
                 ((100.0, 6 / 7), (200.0, 6 / 7 * 2 / 3), (400.0, 0.0)),
                 id="newest weighs most: 0.857, 0.571, 0"),
    # Equal weights: 2/3, 1/3, 0.
    pytest.param((400.0, 200.0, 100.0), None, 1e12,
                 ((100.0, 2 / 3), (200.0, 1 / 3), (400.0, 0.0)), id="no decay: 2/3, 1/3, 0"),
    # The censored 100 s ends nothing; at risk after it 1.5: 1 - 0.5 / 1.5.
    pytest.param((100.0, 200.0, 400.0), 0, 1.0, ((200.0, 2 / 3), (400.0, 0.0)),
                 id="a censored silence is at risk up to its length, ends nothing"),
    # Censored at 500 s, longer than every ended one: weights 0.25, 0.5, 1 (500 s newest).
    pytest.param((100.0, 200.0, 500.0), 2, 1.0,
                 ((100.0, 1 - 0.25 / 1.75), (200.0, (1 - 0.25 / 1.75) * (1 - 0.5 / 1.5))),
                 id="a long censored silence leaves survival above 0"),
])
def test_survival_is_recency_weighted_and_censored(
        gaps: tuple[float, ...], censored: int | None, half_life: float,
        expected: tuple[tuple[float, float], ...]) -> None:
    got = recur.survival(seen_of(gaps, censored), half_life)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [a for _, a in got] == pytest.approx([a for _, a in expected])


@pytest.mark.parametrize(("gaps", "censored", "k", "hold", "expected"), [
    # Weights 2^(-2/4), 2^(-1/4), 1: S(1,200) = 1 - 1.548 / 2.548 = 0.39, S(3,604) = 0:
    # 90 % ended by 3,604; 33 x 3,604 = 118,932 <= 228,000.
    pytest.param((1200.0, 1200.0, 3604.0), None, 33, 0.0, Plan(33, 3604.0),
                 id="90 % ended by 3,604 s, cheaper than the misses: keep 33"),
    # 90 % by 20,000 s, but 33 x 20,000 > 228,000: the longest within the bound, 600 s.
    pytest.param((20_000.0, 600.0), None, 33, 0.0, Plan(33, 600.0),
                 id="ski rental cuts the quantile back to a silence it pays for"),
    pytest.param((20_000.0, 20_000.0), None, 33, 0.0, Plan(),
                 id="every silence costs more than its misses: release"),
    # Everything within the hold: nothing to add.
    pytest.param((1200.0, 1200.0), None, 33, 1200.0, Plan(), id="within the hold: release"),
    # 2 replicas (1 more) carry 3 of 10 req/s: a keep spares nothing.
    pytest.param((1200.0, 1200.0), None, 1, 0.0, Plan(), id="a keep sparing nothing: release"),
    # The 5,000 s the controller started inside ended nowhere: 1,200 s is kept. Read as
    # ended it weighs 2^(-1/2) / 2.548 = 28 % > 10 %: 90 % ends by 5,000 s, and
    # 33 x 5,000 = 165,000 <= 228,000 would keep for 5,000 s.
    pytest.param((5000.0, 1200.0, 1200.0), 0, 33, 0.0, Plan(33, 1200.0),
                 id="a censored silence is no silence that ended: keep 1,200 s"),
    pytest.param((5000.0, 1200.0, 1200.0), None, 33, 0.0, Plan(33, 5000.0),
                 id="the same silence ended: keep 5,000 s"),
    pytest.param((), None, 33, 0.0, Plan(), id="nothing seen: release"),
    pytest.param((1200.0,), None, 0, 0.0, Plan(), id="nothing above minReplicas: release"),
])
def test_spread_plan(gaps: tuple[float, ...], censored: int | None, k: int, hold: float,
                     expected: Plan) -> None:
    assert recur.spread_plan(seen_of(gaps, censored), k, 1, SYNC_S, BUDGET, hold) == expected


def test_the_quantile_drops_the_oldest_outlier_first() -> None:
    # Equal-length silences of 1,200 s after one of 3,000 s: the 3,000 s weighs 2^(-8/4) =
    # 0.25 of the newest; 0.25 / (0.25 + sum of 8 newer) < 10 %: the keep is 1,200 s.
    # Newest first it would be kept for 3,000 s (the quantile reaches it).
    old_first = seen_of((3000.0, *(1200.0,) * 8))
    new_first = seen_of((*(1200.0,) * 8, 3000.0))
    assert recur.spread_plan(old_first, 33, 1, SYNC_S, BUDGET) == Plan(33, 1200.0)
    assert recur.spread_plan(new_first, 33, 1, SYNC_S, BUDGET) == Plan(33, 3000.0)


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(1.0, 1e6), min_size=1, max_size=12),
       censored=st.none() | st.integers(0, 11), k=st.integers(1, 60),
       hold=st.floats(0.0, 5000.0))
def test_spread_plan_invariants(gaps: list[float], censored: int | None, k: int,
                                hold: float) -> None:
    seen = seen_of(tuple(gaps), censored)
    got = recur.spread_plan(seen, k, 1, SYNC_S, BUDGET, hold)
    surv = recur.survival(seen)
    assert all(0.0 <= a <= 1.0 for _, a in surv)
    assert [a for _, a in surv] == sorted((a for _, a in surv), reverse=True)
    if got != Plan():
        ended = {s.gap_s for s in seen if not s.censored}
        assert got.replicas == k
        assert got.keep_s in ended  # a keep is a silence that ended
        assert got.keep_s > hold
        # Ski rental: never more than the misses it spares (S = 228,000 at most here).
        assert k * (got.keep_s - hold) <= 228_000.0 + 1e-6


def _drive(mem: SurgeMemory, now: float, demand: float | None, *, idle: bool) -> SurgeMemory:
    return recur.observe(mem, now, idle=idle, demand=demand, capacity_rps=1.5, replicas=34,
                         min_replicas=1, hold_s=120.0, lead_s=80.0, sync_s=SYNC_S,
                         budget=BUDGET)


def test_a_silence_the_controller_started_in_is_censored() -> None:
    mem = _drive(SurgeMemory(), 0.0, 0.0, idle=True)
    mem = _drive(mem, 500.0, 10.0, idle=False)
    assert mem.surge is not None and mem.surge.censored and mem.surge.gap_s == 500.0
    # A silence after traffic was seen ended for real.
    mem = _drive(mem, 600.0, 0.0, idle=True)
    mem = _drive(mem, 800.0, 0.0, idle=True)
    mem = _drive(mem, 1000.0, 10.0, idle=False)
    assert mem.surge is not None and not mem.surge.censored and mem.surge.gap_s == 400.0


def test_a_controller_started_on_traffic_censors_nothing() -> None:
    mem = _drive(SurgeMemory(), 0.0, 10.0, idle=False)
    mem = _drive(mem, 100.0, 0.0, idle=True)
    mem = _drive(mem, 300.0, 10.0, idle=False)
    assert mem.surge is not None and not mem.surge.censored


@pytest.mark.parametrize(("on", "drain", "expected"), [
    # Lead: 40 req/s on 1 replica of 10 (sync 15): backlog 450 > 20, 40 x 15 = 600 missed.
    # Drain on 5 replicas (50 req/s): 450 - 150 = 300 > 100: 40 x 15 more; then 150 > 100:
    # 40 x 15; then 0: stop.
    pytest.param(True, ((40.0, 10.0, 5), (40.0, 10.0, 5), (40.0, 10.0, 5), (40.0, 10.0, 5)),
                 1800.0, id="on: the drain's waits count until the backlog clears"),
    pytest.param(False, ((40.0, 10.0, 5),) * 4, 600.0, id="off: the first lead time only"),
])
def test_the_drain_counts_as_the_cold_starts_cost(
        monkeypatch: pytest.MonkeyPatch, on: bool,
        drain: tuple[tuple[float, float, int], ...], expected: float) -> None:
    monkeypatch.setattr(recur, "DRAIN_COUNTS", on)
    s = Surge(start=0.0, gap_s=600.0, requests=1000.0, replica_s=1000.0,
              lead=((40.0, 10.0),), drain=drain if on else ())
    assert recur.excess(s, 1, 15.0, 2.0) == pytest.approx(expected)


def test_the_drain_is_recorded_only_when_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for on in (False, True):
        monkeypatch.setattr(recur, "DRAIN_COUNTS", on)
        mem = _drive(SurgeMemory(), 0.0, 10.0, idle=False)
        mem = _drive(mem, 100.0, 0.0, idle=True)
        for t in range(300, 500, 10):
            mem = _drive(mem, float(t), 10.0, idle=False)
        assert mem.surge is not None
        assert len(mem.surge.lead) == 8  # 300-370 s, within 80 s
        # 380-450 s: the second lead time, recorded only with the rule on.
        assert len(mem.surge.drain) == (8 if on else 0)


def test_off_by_default() -> None:
    assert recur.SILENCE_SPREAD is False
    assert recur.DRAIN_COUNTS is False
    assert recur.UNSEEN is False


def test_the_unseen_silence_never_ends_and_an_unreached_quantile_releases(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Weights 2^(-1/4) = 0.84, 1 and the unseen 1 (total 2.84); both seen end at 1,200 s:
    # S(1,200) = 1 - 1.84 / 2.84 = 0.35.
    seen = seen_of((1200.0, 1200.0))
    assert recur.survival(seen, 4.0, True) == ((1200.0, pytest.approx(1 - 1.8409 / 2.8409,
                                                                      abs=1e-3)),)
    monkeypatch.setattr(recur, "UNSEEN", True)
    monkeypatch.setattr(recur, "QUANTILE", 0.5)
    # 65 % ended by 1,200 s >= 50 %: keep.
    assert recur.spread_plan(seen, 33, 1, SYNC_S, BUDGET) == Plan(33, 1200.0)
    monkeypatch.setattr(recur, "QUANTILE", 0.9)
    # 90 % is never reached while the unseen silence weighs 1 of 2.84: release.
    assert recur.spread_plan(seen, 33, 1, SYNC_S, BUDGET) == Plan()
    monkeypatch.setattr(recur, "UNSEEN", False)
    # Without it the longest that ended stands in: keep.
    assert recur.spread_plan(seen, 33, 1, SYNC_S, BUDGET) == Plan(33, 1200.0)
