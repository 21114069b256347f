"""The requests/s unit counts work at the mix it was learned at (``autoscaler.core.capacity``):
a count learned on long prompts must not bind on short ones, and the plan follows the work."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import capacity as cap

SLO = 2.0


@pytest.fixture(autouse=True)
def _unit_decode_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worked numbers of this module count a generated token as one prompt token's work
    (790 + 140 = 930); the work model's arithmetic is the same at any decode cost, and
    ``test_the_default_decode_cost`` checks the default's own."""
    monkeypatch.setattr(cap, "DECODE_TOKEN_WORK", 1.0)


def test_the_default_decode_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    # The 8B profile's step time per decoding sequence over its step time per prompt token,
    # 0.12 / 0.05 ms = 2.4: 790 prompt and 140 generated tokens are 790 + 2.4 x 140 = 1,126.
    monkeypatch.undo()
    assert cap.work_per_request((790.0, 140.0)) == pytest.approx(1126.0)


def obs(*, ready: int = 1, prompt: float, gen: float, req: float, ttft: float = 0.3,
        queue: float = 0.0, kv: float = 0.2) -> cap.FleetObservation:
    return cap.FleetObservation(ready_replicas=ready, current_replicas=ready,
                                served=(prompt, gen, req), ttft_s=ttft, queue=queue,
                                kv_usage=kv)


def run(est: cap.LearnedCapacity, o: cap.FleetObservation, t0: float, steps: int,
        mix: tuple[float, float]) -> tuple[cap.LearnedCapacity, float]:
    """``steps`` readings of the same fleet 15 s apart, at tokens per request ``mix``."""
    t = t0
    for k in range(steps):
        t = t0 + 15.0 * k
        est = cap.update(est, o, slo_ttft_s=SLO, now=t, prior_rps=10.0,
                         tokens_per_request=mix)
    return est, t


def learned(c_r: float, ref: float,
            recent: tuple[float, float] = (math.nan, math.nan)) -> cap.LearnedCapacity:
    """Only the requests/s unit plans (the token units have no evidence): ``c_r`` requests/s
    of a mix whose work per request is ``ref``, with ``recent`` the recent mix."""
    return cap.LearnedCapacity(capacity=(1e6, 1e5, c_r), prior=(1e6, 1e5, c_r),
                               measured=(False, False, True), work_ref=ref,
                               recent_mix=recent)


@pytest.mark.parametrize(("mix", "expected"), [
    pytest.param((790.0, 140.0), 790.0 + 140.0, id="prompt plus one per generated token"),
    pytest.param((1000.0, 0.0), math.nan, id="no generated tokens: unknown"),
    pytest.param((None, 140.0), math.nan, id="no prompt counter: unknown"),
    pytest.param((1000.0, None), math.nan, id="no generation counter: unknown"),
    pytest.param((math.inf, 10.0), math.nan, id="not finite: unknown"),
])
def test_work_per_request(mix: tuple[float | None, float | None], expected: float) -> None:
    got = cap.work_per_request(mix)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


@pytest.mark.parametrize(("ref", "mix", "factor"), [
    # Learned at 1,430 + 140 = 1,570; now 790 + 140 = 930: 930 / 1,570 = 0.592.
    pytest.param(1570.0, (790.0, 140.0), 930.0 / 1570.0, id="shorter prompts count less"),
    pytest.param(1570.0, (2860.0, 280.0), 2.0, id="twice the tokens count twice"),
    pytest.param(math.nan, (790.0, 140.0), 1.0, id="still the prior: a plain count"),
    pytest.param(1570.0, (None, 140.0), 1.0, id="mix unknown now: a plain count"),
])
def test_work_factor(ref: float, mix: tuple[float | None, float | None],
                     factor: float) -> None:
    assert cap.work_factor(learned(10.9, ref), mix) == pytest.approx(factor)


def test_the_azure_conv_case_plans_one_replica_where_a_count_planned_two() -> None:
    # Learned 10.9 req/s of 1,430 + 140 tokens. At 37 minutes the plan is 9.6 req/s of
    # 790 + 140: as a count 9.6 / (10.9 x 0.85) = 1.04 -> 2 replicas; as work
    # 9.6 x 930 / 1,570 = 5.69 requests of the learned mix -> 5.69 / 9.27 = 0.61 -> 1.
    now = (790.0, 140.0)
    est = learned(10.9, 1570.0, now)
    assert cap.replicas_needed(est, cap.work_demand(est, (None, None, 9.6)), 0.85) == (1, 2)
    count = learned(10.9, math.nan, now)
    assert cap.replicas_needed(count, cap.work_demand(count, (None, None, 9.6)),
                               0.85) == (2, 2)
    # What one replica carries at that mix, as the decision log shows it:
    # 10.9 x 1,570 / 930 = 18.4 req/s.
    assert cap.capacity_at_mix(est, 2) == pytest.approx(10.9 * 1570.0 / 930.0)
    assert cap.requests_equivalent(est, now) == pytest.approx(10.9 * 1570.0 / 930.0)


def test_the_prior_stays_a_count_until_the_fleet_teaches_the_unit() -> None:
    # Prior 10 req/s. A slack fleet at 3 req/s per replica (0.3 of the estimate: no probe)
    # teaches nothing, whatever the mix: the unit stays a count.
    est = cap.start(10.0, (1000.0, 100.0))
    est, _ = run(est, obs(prompt=3000.0, gen=300.0, req=3.0), 0.0, 10, (1000.0, 100.0))
    assert math.isnan(est.work_ref)
    assert cap.work_factor(est, (500.0, 100.0)) == 1.0


def test_the_first_reading_that_teaches_the_unit_fixes_its_mix() -> None:
    # 1 replica carrying 12 req/s of 1,500 + 200 tokens within the SLO (TTFT 1.2 s, loaded)
    # against a 10 req/s prior (15,000 and 2,000 tokens/s at that mix): every unit carried
    # 1.2x its estimate, so each takes what was carried, the requests/s unit 12 requests
    # of 1,500 + 200 = 1,700 work each.
    mix = (1500.0, 200.0)
    est = cap.start(10.0, mix)
    est, t = run(est, obs(prompt=18000.0, gen=2400.0, req=12.0, ttft=1.2), 0.0, 6, mix)
    assert est.capacity[2] == pytest.approx(12.0)
    assert est.work_ref == pytest.approx(1700.0)
    # Later the same fleet carries 12 req/s of half the prompt: 12 x (750 + 200) / 1,700 =
    # 6.7 requests of the learned mix, far below 12: nothing to raise, and the reference
    # stays where it was first set.
    short = (750.0, 200.0)
    est, _ = run(est, obs(prompt=9000.0, gen=2400.0, req=12.0, ttft=1.2), t + 15.0, 6, short)
    assert est.capacity[2] == pytest.approx(12.0)
    assert est.work_ref == pytest.approx(1700.0)


def test_an_overload_at_a_new_mix_is_blamed_in_work() -> None:
    # Learned 12 requests of 1,700 work. One replica then misses the SLO (TTFT 2.6 s; the
    # second reading in a row teaches) serving 5 req/s of 3,200 + 200 tokens: that is
    # 5 x 3,400 / 1,700 = 10 requests of the learned mix, so the estimate moves to
    # 12 + 0.3 x (0.9 x 10 - 12) = 11.1. As a count (5 req/s) it would have dropped to
    # 12 + 0.3 x (0.9 x 5 - 12) = 9.75, and planned the next hour's 1,500-token requests
    # on a replica that carries 12 of them.
    o = obs(prompt=16000.0, gen=1000.0, req=5.0, ttft=2.6)
    heavy = (3200.0, 200.0)
    est, _ = run(learned(12.0, 1700.0), o, 0.0, 6, heavy)
    assert est.capacity[2] == pytest.approx(12.0 + 0.3 * (0.9 * 10.0 - 12.0))
    count, _ = run(learned(12.0, math.nan), o, 0.0, 6, heavy)
    assert count.capacity[2] == pytest.approx(12.0 + 0.3 * (0.9 * 5.0 - 12.0))
    # 8 req/s of that mix is 16 requests of the learned one: above the estimate, so the
    # overload teaches nothing downward (it never raises an estimate either).
    o = obs(prompt=25600.0, gen=1600.0, req=8.0, ttft=2.6)
    est, _ = run(learned(12.0, 1700.0), o, 0.0, 6, heavy)
    assert est.capacity[2] == pytest.approx(12.0)


def _reference_replicas(requests: list[tuple[float, float]], rate: float, c_r: float,
                        ref: float, util: float) -> int:
    """Slow and obvious: the work of every request in one second (``rate`` of them, spread
    over the listed sizes in turn), summed, over what one replica carries at ``util``."""
    n = len(requests)
    work = sum((p + g) * rate / n for p, g in requests)
    per_replica = c_r * ref * util
    return 0 if work <= 0 else max(1, math.ceil(work / per_replica - 1e-9))


@given(st.lists(st.tuples(st.floats(16.0, 8192.0), st.floats(4.0, 2048.0)), min_size=1,
                max_size=20), st.floats(0.1, 200.0), st.floats(0.5, 40.0),
       st.floats(200.0, 6000.0))
@settings(max_examples=200, deadline=None)
def test_the_plan_equals_the_summed_work_of_the_requests(
        requests: list[tuple[float, float]], rate: float, c_r: float, ref: float) -> None:
    n = len(requests)
    mix = (sum(p for p, _ in requests) / n, sum(g for _, g in requests) / n)
    est = learned(c_r, ref, mix)
    got, _ = cap.replicas_needed(est, cap.work_demand(est, (None, None, rate)), 0.85)
    want = _reference_replicas(requests, rate, c_r, ref, 0.85)
    # Equal, or one apart when the quotient sits within float noise of an integer.
    assert abs(got - want) <= 1
    if abs(got - want) == 1:
        q = sum((p + g) * rate / n for p, g in requests) / (c_r * ref * 0.85)
        assert abs(q - round(q)) < 1e-6


MIXES = st.tuples(st.floats(16.0, 8192.0), st.floats(4.0, 2048.0))


@given(MIXES, MIXES, st.floats(0.1, 100.0), st.floats(1.0, 30.0))
@settings(max_examples=200, deadline=None)
def test_a_mix_shift_changes_the_plan_no_more_than_the_work(
        before: tuple[float, float], after: tuple[float, float], rate: float,
        c_r: float) -> None:
    # The same request rate at another mix: the requests/s unit's count scales with the
    # work per request (ceil of k x the old quotient), so a mix whose requests carry
    # k times the work needs at most ceil(k x old) replicas and at least floor(k x old).
    est = learned(c_r, cap.work_per_request(before), before)
    old, _ = cap.replicas_needed(est, cap.work_demand(est, (None, None, rate)), 0.85)
    est = dataclasses.replace(est, recent_mix=after)
    new, _ = cap.replicas_needed(est, cap.work_demand(est, (None, None, rate)), 0.85)
    k = cap.work_per_request(after) / cap.work_per_request(before)
    q_old = rate / (c_r * 0.85)
    assert old == max(1, math.ceil(q_old - 1e-9))
    assert max(1, math.floor(k * q_old - 1e-6)) <= new <= max(1, math.ceil(k * q_old + 1e-6))
    # At constant work (the rate scaled by 1 / k) the count does not move.
    same, _ = cap.replicas_needed(est, cap.work_demand(est, (None, None, rate / k)), 0.85)
    assert abs(same - old) <= (1 if abs(q_old - round(q_old)) < 1e-6 else 0)


@given(st.tuples(st.floats(0.0, 1e5), st.floats(0.0, 1e4), st.floats(0.0, 100.0)),
       st.tuples(st.floats(0.0, 1e5), st.floats(0.0, 1e4), st.floats(0.0, 100.0)),
       MIXES, st.booleans())
@settings(max_examples=200, deadline=None)
def test_the_plan_is_monotone_in_demand(a: tuple[float, float, float],
                                        b: tuple[float, float, float],
                                        mix: tuple[float, float], known: bool) -> None:
    # More demand in every unit never plans fewer replicas, at any mix.
    est = cap.LearnedCapacity(capacity=(12000.0, 1500.0, 9.0), prior=(12000.0, 1500.0, 9.0),
                              measured=(known, True, True), work_ref=1200.0,
                              recent_mix=mix)
    lo = tuple(min(x, y) for x, y in zip(a, b, strict=True))
    hi = tuple(max(x, y) for x, y in zip(a, b, strict=True))
    n_lo, _ = cap.replicas_needed(est, cap.work_demand(est, (lo[0], lo[1], lo[2])), 0.85)
    n_hi, _ = cap.replicas_needed(est, cap.work_demand(est, (hi[0], hi[1], hi[2])), 0.85)
    assert n_lo <= n_hi
