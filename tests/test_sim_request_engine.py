"""The request-level engine against hand-derived numbers and a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.sim.fleet import gpu_seconds
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.sim.request_engine import RequestEngine, run_fixed


def make_profile(**kw: float) -> ReplicaProfile:
    base: dict[str, float] = dict(
        gpus_per_replica=1, prefill_tokens_per_s=10_000.0, decode_step_base_s=0.01,
        decode_step_per_seq_s=0.0, max_num_seqs=256, kv_cache_tokens=1_000_000,
        cold_start_s=100.0, cold_start_jitter_s=0.0,
    )
    base.update(kw)
    return ReplicaProfile(
        name="test", gpus_per_replica=int(base["gpus_per_replica"]),
        prefill_tokens_per_s=base["prefill_tokens_per_s"],
        decode_step_base_s=base["decode_step_base_s"],
        decode_step_per_seq_s=base["decode_step_per_seq_s"],
        max_num_seqs=int(base["max_num_seqs"]), kv_cache_tokens=int(base["kv_cache_tokens"]),
        cold_start_s=base["cold_start_s"], cold_start_jitter_s=base["cold_start_jitter_s"],
    )


def test_single_request_on_an_idle_8b_replica_has_ttft_of_its_prefill_time() -> None:
    p = load_profile("llama3-8b-h100")
    eng = run_fixed(p, [0.0], [2000], [100])
    # Prefill: 2,000 tokens / 20,000 tokens/s = 0.1 s; it emits the first token.
    assert eng.ttft[0] == pytest.approx(0.1)
    # Then 99 decode steps alone: 99 x (0.008 + 0.00012 x 1) = 0.80388 s.
    assert eng.e2e[0] == pytest.approx(0.1 + 99 * 0.00812)


def test_light_load_ttft_stays_at_the_prefill_time() -> None:
    p = load_profile("llama3-8b-h100")
    arrivals = np.arange(50) * 2.0  # one request every 2 s, each done in < 1 s
    eng = run_fixed(p, arrivals, np.full(50, 1000), np.full(50, 50))
    assert np.allclose(eng.ttft, 1000 / 20_000)


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"max_num_seqs": 2}, id="max_num_seqs binds"),
        pytest.param({"kv_cache_tokens": 2100}, id="kv cache binds"),
    ],
)
def test_the_third_simultaneous_request_queues_until_a_slot_frees(
        limits: dict[str, float]) -> None:
    p = make_profile(**limits)
    # 3 requests at t=0, 1,000 prompt tokens (0.1 s prefill), 11 output tokens (10 decode
    # steps of 0.01 s), 1,011 KV tokens each: only two fit.
    eng = run_fixed(p, [0.0, 0.0, 0.0], [1000] * 3, [11] * 3)
    # A prefills [0, 0.1], B [0.1, 0.2] (A's decode stalls), both decode [0.2, 0.3];
    # C is admitted at 0.3 and prefills [0.3, 0.4].
    assert eng.ttft.tolist() == pytest.approx([0.1, 0.2, 0.4])
    assert eng.e2e.tolist() == pytest.approx([0.3, 0.3, 0.5])


def test_without_a_limit_the_same_requests_do_not_queue() -> None:
    eng = run_fixed(make_profile(), [0.0, 0.0, 0.0], [1000] * 3, [11] * 3)
    assert eng.ttft.tolist() == pytest.approx([0.1, 0.2, 0.3])


def slow_reference(p: ReplicaProfile, arr: list[float], pt: list[int], ot: list[int],
                   dt: float = 1e-4) -> tuple[list[float], list[float]]:
    """One replica integrated in tiny time steps: obviously right, slow."""
    n = len(arr)
    ttft, e2e = [math.inf] * n, [math.inf] * n
    waiting: list[int] = []
    prefill: list[int] = []
    left: dict[int, float] = {}  # decoding request -> tokens still to emit (fractional)
    kv = 0
    nxt, t, prefill_left = 0, 0.0, 0.0
    while len([x for x in e2e if x < math.inf]) < n:
        while nxt < n and arr[nxt] <= t + 1e-12:
            waiting.append(nxt)
            nxt += 1
        while waiting and len(prefill) + len(left) < p.max_num_seqs and (
                kv + pt[waiting[0]] + ot[waiting[0]] <= p.kv_cache_tokens):
            i = waiting.pop(0)
            kv += pt[i] + ot[i]
            if not prefill:
                prefill_left = pt[i] / p.prefill_tokens_per_s
            prefill.append(i)
        t += dt
        if prefill:
            prefill_left -= dt
            if prefill_left <= 1e-12:
                i = prefill.pop(0)
                ttft[i] = t - arr[i]
                left[i] = ot[i] - 1.0
                if prefill:
                    prefill_left = pt[prefill[0]] / p.prefill_tokens_per_s
        elif left:
            rate = 1.0 / p.step_time_s(len(left))
            for i in list(left):
                left[i] -= dt * rate
        for i in [i for i, v in left.items() if v <= 1e-9]:
            del left[i]
            e2e[i] = t - arr[i]
            kv -= pt[i] + ot[i]
    return ttft, e2e


def test_virtual_token_clock_matches_a_tiny_step_reference() -> None:
    p = make_profile(decode_step_per_seq_s=0.002, max_num_seqs=3, prefill_tokens_per_s=5000)
    rng = np.random.default_rng(7)
    arr = np.round(np.sort(rng.uniform(0, 1.0, 12)), 3).tolist()
    pt = rng.integers(50, 400, 12).tolist()
    ot = rng.integers(2, 30, 12).tolist()
    eng = run_fixed(p, arr, pt, ot)
    ref_ttft, ref_e2e = slow_reference(p, arr, pt, ot)
    # The reference moves in 0.1 ms steps; allow a few steps of drift per request.
    assert np.allclose(eng.ttft, ref_ttft, atol=2e-3)
    assert np.allclose(eng.e2e, ref_e2e, atol=5e-3)


def test_a_replica_asked_for_at_t_serves_after_the_cold_start_and_costs_from_t() -> None:
    p = make_profile(cold_start_s=100.0, gpus_per_replica=4)
    eng = RequestEngine(p, [], [], [], initial_replicas=1)
    eng.advance(50.0)
    eng.set_target(2, 50.0)
    eng.advance(149.0)
    assert eng.ready_count() == 1 and eng.provisioned_count() == 2
    eng.advance(150.0)
    assert eng.ready_count() == 2
    # GPU-seconds at t=200: 200 s (first) + 150 s (second, from its request at 50 s),
    # times 4 GPUs = 1,400.
    assert gpu_seconds(eng.records(), 200.0, p.gpus_per_replica) == pytest.approx(1400.0)


def test_requests_arriving_with_no_ready_replica_wait_for_the_cold_start() -> None:
    p = make_profile(cold_start_s=100.0)
    eng = RequestEngine(p, [10.0], [1000], [2], initial_replicas=0)
    eng.advance(0.0)
    eng.set_target(1, 0.0)
    eng.advance(200.0)
    eng.finish()
    # Ready at 100 s, prefill 0.1 s: TTFT = 100.1 - 10 = 90.1 s.
    assert eng.ttft[0] == pytest.approx(90.1)


def test_scale_down_drains_in_flight_requests_and_loses_none() -> None:
    p = make_profile(max_num_seqs=4)
    rng = np.random.default_rng(1)
    n = 400
    arr = np.sort(rng.uniform(0, 20, n))
    eng = RequestEngine(p, arr, np.full(n, 500), np.full(n, 80), initial_replicas=3)
    eng.advance(10.0)
    eng.set_target(1, 10.0)
    eng.advance(math.inf)
    eng.finish()
    assert np.isfinite(eng.e2e).all() and np.isfinite(eng.ttft).all()
    drained = [r for r in eng.records() if r.removal_at is not None]
    assert len(drained) == 2
    for r in drained:
        assert r.removal_at == 10.0
        assert r.ended_at is not None and r.ended_at >= 10.0
    # The drained replicas cost GPU time until drained, not beyond.
    total = gpu_seconds(eng.records(), 1000.0, 1)
    kept = next(r for r in eng.records() if r.removal_at is None)
    assert total == pytest.approx(
        sum(r.ended_at for r in drained if r.ended_at is not None) + 1000.0 - kept.requested_at)


def test_scale_down_removes_starting_replicas_first_at_no_further_cost() -> None:
    p = make_profile(cold_start_s=100.0)
    eng = RequestEngine(p, [], [], [], initial_replicas=1)
    eng.set_target(3, 0.0)
    eng.advance(30.0)
    eng.set_target(1, 30.0)
    assert eng.provisioned_count() == 1 and eng.ready_count() == 1
    assert gpu_seconds(eng.records(), 100.0, 1) == pytest.approx(100.0 + 2 * 30.0)


def test_router_spreads_load_to_the_least_busy_replica() -> None:
    p = make_profile()
    arr = np.zeros(10)
    eng = RequestEngine(p, arr, np.full(10, 1000), np.full(10, 50), initial_replicas=2)
    eng.advance(0.0)
    s = eng.sample(0.0)
    assert s.running + s.waiting == 10
    # Each replica prefills its own share: the 5th request on a replica waits 4 prefills.
    eng.advance(math.inf)
    eng.finish()
    assert sorted(eng.ttft.tolist()) == pytest.approx(sorted([0.1 * k for k in range(1, 6)] * 2))
