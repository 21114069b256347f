"""A release plans on capacity the fleet was sized up on or has carried, not on a probe.

``autoscaler.core.release``: the learner raises its estimate by probing while the SLO holds,
and a release is what would put the probed load on the replicas that stay. With
``RELEASE_ON_SHOWN_CAPACITY`` on, a release plans on min(estimate, max(anchor, carried /
release utilisation)) (the default); off, on the estimate alone.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import capacity as cap_mod
from autoscaler.core import release
from autoscaler.core.decide import decide
from autoscaler.core.policies.predictive import PredictiveState
from autoscaler.core.spec import Capacity, PolicyKind, Spec
from autoscaler.core.types import MetricValue, Signal, Snapshot, State

NAN = math.nan
# Release utilisation at the defaults: targetUtilization 0.85 x scaleDownBand 0.85.
DOWN = 0.85 * 0.85  # 0.7225
SYNC = 15.0


@pytest.mark.parametrize(("capacity", "anchor", "carried", "expected"), [
    # Probed from 13,500 to 18,000 prompt tok/s per replica; carried at most 9,000:
    # max(13,500, 9,000 / 0.7225 = 12,456.7) = 13,500, below the estimate.
    pytest.param((18_000.0,), (13_500.0,), (9_000.0,), 13_500.0,
                 id="probe above the anchor: the anchor"),
    # Carried 11,000 per replica in the SLO: 11,000 / 0.7225 = 15,224.9 > 13,500.
    pytest.param((18_000.0,), (13_500.0,), (11_000.0,), 11_000.0 / 0.7225,
                 id="a load already carried: release down to it"),
    # Carried 14,000: 14,000 / 0.7225 = 19,377 is above the estimate, which still bounds.
    pytest.param((18_000.0,), (13_500.0,), (14_000.0,), 18_000.0,
                 id="never above the estimate"),
    # An overload cut the estimate to 12,000 since: min(12,000, ...) = 12,000.
    pytest.param((12_000.0,), (13_500.0,), (11_000.0,), 12_000.0,
                 id="estimate fell below both: the estimate"),
    pytest.param((18_000.0,), (13_500.0,), (NAN,), 13_500.0,
                 id="nothing carried since the last overload: the anchor"),
    pytest.param((18_000.0,), (NAN,), (11_000.0,), 18_000.0,
                 id="no anchor for the unit: the estimate"),
])
def test_release_capacity_worked_numbers(capacity: tuple[float, ...],
                                         anchor: tuple[float, ...],
                                         carried: tuple[float, ...], expected: float) -> None:
    got = release.release_capacity(capacity, release.ReleaseMemory(anchor, carried), DOWN)
    assert got[0] == pytest.approx(expected)


def test_first_sight_has_no_anchor_and_plans_on_the_estimate() -> None:
    got = release.release_capacity((18_000.0, NAN, 200.0), release.ReleaseMemory(), DOWN)
    assert got[0] == 18_000.0 and math.isnan(got[1]) and got[2] == 200.0


@pytest.mark.parametrize(("scaled_up", "overloaded", "anchor", "carried"), [
    # The module's worked number: anchor follows the estimate down only, carried rises.
    pytest.param(False, False, (12_000.0, 2_400.0, 200.0), (9_500.0, 1_800.0, 150.0),
                 id="steady: anchor down only, carried up"),
    pytest.param(True, False, (12_000.0, 2_600.0, 210.0), (9_500.0, 1_800.0, 150.0),
                 id="scale-up: anchor is the estimate"),
    # An overload forgets the old carried loads, then takes this step's (none: a breach
    # carries nothing, so the caller passes None; here the reading is given to show the
    # order: forget, then raise).
    pytest.param(False, True, (12_000.0, 2_400.0, 200.0), (9_500.0, 1_800.0, 140.0),
                 id="overload: carried forgotten first"),
])
def test_remember_worked_numbers(scaled_up: bool, overloaded: bool,
                                 anchor: tuple[float, ...], carried: tuple[float, ...]) -> None:
    mem = release.ReleaseMemory((13_500.0, 2_400.0, 200.0), (9_000.0, NAN, 150.0))
    got = release.remember(mem, (12_000.0, 2_600.0, 210.0), (9_500.0, 1_800.0, 140.0),
                           scaled_up, overloaded)
    assert got.anchor == anchor
    assert got.carried == carried


def test_a_reading_that_did_not_meet_the_objective_carries_nothing() -> None:
    mem = release.ReleaseMemory((13_500.0,), (9_000.0,))
    assert release.remember(mem, (18_000.0,), None, False).carried == (9_000.0,)


_POS = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)
_MAYBE = st.one_of(_POS, st.just(NAN))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_MAYBE, _MAYBE, _MAYBE), min_size=3, max_size=3),
       st.floats(min_value=0.05, max_value=1.0))
def test_release_capacity_never_exceeds_the_estimate(units: list[tuple[float, float, float]],
                                                     util: float) -> None:
    # So the rule can only keep replicas the estimate alone would release, never release
    # one it would keep.
    cap = tuple(u[0] for u in units)
    mem = release.ReleaseMemory(tuple(u[1] for u in units), tuple(u[2] for u in units))
    for c, r in zip(cap, release.release_capacity(cap, mem, util), strict=True):
        assert (math.isnan(c) and math.isnan(r)) or r <= c


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_MAYBE, _MAYBE, _MAYBE, _MAYBE), min_size=3, max_size=3))
def test_between_scale_ups_the_anchor_never_rises_and_carried_never_falls(
        units: list[tuple[float, float, float, float]]) -> None:
    mem = release.ReleaseMemory(tuple(u[0] for u in units), tuple(u[1] for u in units))
    got = release.remember(mem, tuple(u[2] for u in units), tuple(u[3] for u in units),
                           scaled_up=False)
    for old, new in zip(mem.anchor, got.anchor, strict=True):
        assert not (math.isfinite(old) and new > old)
    for old, new in zip(mem.carried, got.carried, strict=True):
        assert not (math.isfinite(old) and not new >= old)


# --- the decision ---------------------------------------------------------------------------

# A requests/s estimate of 10 req/s per replica (probed up), sized up on 8. At 20 req/s:
# plan ceil(20 / (10 x 0.85)) = ceil(2.35) = 3; the estimate alone releases to
# ceil(20 / (10 x 0.7225)) = ceil(2.77) = 3, the anchor keeps ceil(20 / (8 x 0.7225)) =
# ceil(3.46) = 4.
RATE = 20.0
START = 4


def spec() -> Spec:
    """The learner off, so the estimate stays the one given (the test is about what a
    release plans on, not how the estimate moves)."""
    base = Spec(max_replicas=50, min_replicas=1,
                capacity=Capacity(requests_per_second=10.0, concurrency=20.0),
                policy=PolicyKind.PREDICTIVE, sync_period_s=SYNC)
    return replace(base, predictive=replace(base.predictive, learn_capacity=False))


def estimate(rps: float) -> cap_mod.LearnedCapacity:
    return cap_mod.LearnedCapacity(capacity=(NAN, NAN, rps), prior=(NAN, NAN, rps))


def reading(at: float, current: int, *, ttft: float | None = 0.4, rate: float = RATE
            ) -> Snapshot:
    metrics = {Signal.REQUEST_RATE: MetricValue(rate, at),
               Signal.QUEUE_DEPTH: MetricValue(0.0, at)}
    if ttft is not None:
        metrics[Signal.TTFT_P99] = MetricValue(ttft, at)
    return Snapshot(current_replicas=current, ready_replicas=current, metrics=metrics)


def run(memory: release.ReleaseMemory, steps: int = 24, **kw: float | None) -> list[int]:
    """Six minutes at a steady 20 req/s from 4 replicas (two 120-s holds and more)."""
    s = spec()
    state = State(policy=PredictiveState(capacity=estimate(10.0), release=memory))
    current, out = START, []
    for i in range(steps):
        t = SYNC * (i + 1)
        d, state = decide(reading(t, current, **kw), state, s, t)  # type: ignore[arg-type]
        current = d.replicas
        out.append(current)
    return out


@pytest.mark.parametrize(("on", "carried", "final"), [
    pytest.param(False, NAN, 3, id="off (main): the probed estimate releases to 3"),
    pytest.param(True, NAN, 4, id="on: the anchor of 8 keeps 4"),
    # Carried 6.0 per replica: 6.0 / 0.7225 = 8.30; ceil(20 / (8.30 x 0.7225)) =
    # ceil(20 / 6.0) = 4 (the 5 req/s each of 4 replicas now carry is below it).
    pytest.param(True, 6.0, 4, id="on: carried 6 keeps 4"),
    # Carried 7.0: ceil(20 / 7.0) = ceil(2.86) = 3 -- each of 3 replicas carries 6.67,
    # a load already carried.
    pytest.param(True, 7.0, 3, id="on: carried 7 releases to 3"),
])
def test_a_probed_estimate_releases_only_to_loads_already_carried(
        monkeypatch: pytest.MonkeyPatch, on: bool, carried: float, final: int) -> None:
    monkeypatch.setattr(release, "RELEASE_ON_SHOWN_CAPACITY", on)
    counts = run(release.ReleaseMemory((NAN, NAN, 8.0), (NAN, NAN, carried)))
    assert counts[-1] == final
    assert min(counts) == final  # never below it on the way


def test_missing_ttft_never_releases_with_the_rule_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # Carried 7.0 would release to 3 (above), but with no TTFT reading nothing is
    # released and nothing is carried.
    monkeypatch.setattr(release, "RELEASE_ON_SHOWN_CAPACITY", True)
    assert set(run(release.ReleaseMemory((NAN, NAN, 8.0), (NAN, NAN, 7.0)), ttft=None)) \
        == {START}


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=200.0),
       est=st.floats(min_value=1.0, max_value=50.0),
       anchor=st.one_of(st.floats(min_value=1.0, max_value=50.0), st.just(NAN)),
       carried=st.one_of(st.floats(min_value=0.1, max_value=50.0), st.just(NAN)),
       current=st.integers(min_value=1, max_value=30),
       ttft=st.one_of(st.just(None), st.floats(min_value=0.01, max_value=10.0)))
def test_one_step_with_the_rule_never_asks_for_fewer_replicas(
        rate: float, est: float, anchor: float, carried: float, current: int,
        ttft: float | None) -> None:
    # From the same state and reading, the rule's count is never below main's: it can keep
    # a replica the estimate would release, never release one the estimate keeps.
    s = spec()
    state = State(policy=PredictiveState(
        capacity=estimate(est),
        release=release.ReleaseMemory((NAN, NAN, anchor), (NAN, NAN, carried))))
    snap = reading(SYNC, current, ttft=ttft, rate=rate)
    old = release.RELEASE_ON_SHOWN_CAPACITY
    try:
        release.RELEASE_ON_SHOWN_CAPACITY = False
        off, _ = decide(snap, state, s, SYNC)
        release.RELEASE_ON_SHOWN_CAPACITY = True
        on, _ = decide(snap, state, s, SYNC)
    finally:
        release.RELEASE_ON_SHOWN_CAPACITY = old
    assert on.replicas >= off.replicas
    if ttft is None:
        assert on.replicas >= current  # missing data never releases
