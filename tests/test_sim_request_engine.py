"""The request-level engine against hand-derived numbers and a slow step-by-step reference
of vLLM's scheduling rules."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from autoscaler.sim.fleet import gpu_seconds
from autoscaler.sim.fluid_engine import FluidEngine, token_means_per_tick
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.sim.request_engine import RequestEngine, run_fixed
from autoscaler.traces.model import TokenMix, TokenWindows, Trace


def make_profile(**kw: float) -> ReplicaProfile:
    base: dict[str, float] = dict(
        gpus_per_replica=1, step_base_s=0.01, step_per_prefill_token_s=1e-4,
        step_per_decode_seq_s=0.0, max_num_seqs=256, max_num_batched_tokens=4096,
        block_size=16, num_gpu_blocks=100_000, cold_start_s=100.0, cold_start_jitter_s=0.0,
    )
    base.update(kw)
    return ReplicaProfile(
        name="test", gpus_per_replica=int(base["gpus_per_replica"]),
        step_base_s=base["step_base_s"],
        step_per_prefill_token_s=base["step_per_prefill_token_s"],
        step_per_decode_seq_s=base["step_per_decode_seq_s"],
        max_num_seqs=int(base["max_num_seqs"]),
        max_num_batched_tokens=int(base["max_num_batched_tokens"]),
        block_size=int(base["block_size"]), num_gpu_blocks=int(base["num_gpu_blocks"]),
        cold_start_s=base["cold_start_s"], cold_start_jitter_s=base["cold_start_jitter_s"],
    )


# --- a slow, obviously correct reference ------------------------------------------------
@dataclass
class RefResult:
    ttft: list[float]
    e2e: list[float]
    preemptions: int
    steps: list[dict[str, int]] = field(default_factory=list)
    """Per step: tokens, running, blocks in use (for the invariants)."""


def reference(p: ReplicaProfile, arr: list[float], pt: list[int], ot: list[int]) -> RefResult:
    """One replica, one step at a time, every rule written out plainly."""
    n = len(arr)
    bs, total, budget = p.block_size, p.num_gpu_blocks, p.max_num_batched_tokens
    cap = total * bs
    pt = [min(max(1, x), cap - 1) for x in pt]
    ot = [min(max(1, o), max(1, cap - x)) for x, o in zip(pt, ot, strict=True)]
    computed, gen, blocks = [0] * n, [0] * n, [0] * n
    decoding = [False] * n
    """Prefilled since its last admission: its steps are decodes. Not the same as
    ``computed == prompt + gen - 1``: a request preempted after 2 tokens of a 1-token
    prompt recomputes 3 tokens; with a budget of 2 its last chunk is 1 token with
    computed = 2 = 1 + 2 - 1, yet it is the end of a prefill, priced per token like a
    fresh 3-token prompt's last chunk (vLLM recomputes a preempted sequence "treating
    the sequences as new prompts", ``PreemptionMode`` in vllm/core/scheduler.py)."""
    ttft, e2e = [math.inf] * n, [math.inf] * n
    waiting: deque[int] = deque()
    running: list[int] = []
    res = RefResult(ttft, e2e, 0)
    t, nxt, done = 0.0, 0, 0
    while done < n:
        # Within 1e-9 s is the same instant: t is a sum of float step times (0.011 +
        # 6 x 0.011 = 0.07699999999999999) and an arrival at 0.077 is at that boundary.
        while nxt < n and arr[nxt] <= t + 1e-9:
            waiting.append(nxt)
            nxt += 1
        if not running and not waiting:
            t = arr[nxt]
            continue
        left = budget
        sched: dict[int, int] = {}
        preempted = False
        idx = 0
        while idx < len(running) and left > 0:
            i = running[idx]
            tok = min(pt[i] + gen[i] - computed[i], left)
            need = math.ceil((computed[i] + tok) / bs) - blocks[i]
            lost = False
            while sum(blocks) + need > total:
                j = running.pop()  # the most recently admitted
                blocks[j] = computed[j] = 0
                decoding[j] = False
                waiting.appendleft(j)
                res.preemptions += 1
                preempted = True
                if j == i:
                    lost = True
                    break
            if lost:
                break
            blocks[i] += need
            sched[i] = tok
            left -= tok
            idx += 1
        if not preempted:
            while waiting and left > 0 and len(running) < p.max_num_seqs:
                i = waiting[0]
                tok = min(pt[i] + gen[i], left)
                need = math.ceil(tok / bs)
                if sum(blocks) + need > total:
                    break
                waiting.popleft()
                running.append(i)
                blocks[i] = need
                sched[i] = tok
                left -= tok
        if not sched:  # everything was preempted; the next step admits again
            continue
        decodes = [i for i in sched if decoding[i]]
        prefill = sum(tok for i, tok in sched.items() if i not in decodes)
        res.steps.append({"tokens": sum(sched.values()), "running": len(running),
                          "blocks": sum(blocks)})
        t += p.step_time_s(len(decodes), prefill)
        for i, tok in sched.items():
            computed[i] += tok
            if computed[i] == pt[i] + gen[i]:
                if gen[i] == 0:
                    ttft[i] = t - arr[i]
                gen[i] += 1
                decoding[i] = True
                if gen[i] >= ot[i]:
                    e2e[i] = t - arr[i]
                    blocks[i] = 0
                    running.remove(i)
                    done += 1
    return res


# --- hand-derived cases --------------------------------------------------------------
def test_single_request_on_an_idle_8b_replica() -> None:
    p = load_profile("llama3-8b-h100")
    eng = run_fixed(p, [0.0], [2000], [100])
    # One step prefills all 2,000 tokens (budget 8,192): 0.008 + 2,000 x 0.00005 = 0.108 s;
    # it emits the first token.
    assert eng.ttft[0] == pytest.approx(0.108)
    # Then 99 decode steps alone: 99 x (0.008 + 0.00012 x 1) = 0.80388 s.
    assert eng.e2e[0] == pytest.approx(0.108 + 99 * 0.00812)


def test_a_long_prompt_is_prefilled_in_chunks_of_the_token_budget() -> None:
    p = make_profile(max_num_batched_tokens=1000)
    eng = run_fixed(p, [0.0], [2500], [2])
    # Chunks of 1,000, 1,000, 500 tokens: 3 x 0.01 + 2,500 x 1e-4 = 0.28 s to the first
    # token, then one decode step of 0.01 s.
    assert eng.ttft[0] == pytest.approx(0.28)
    assert eng.e2e[0] == pytest.approx(0.29)


def test_decodes_share_the_step_with_a_later_prefill() -> None:
    p = make_profile(step_per_decode_seq_s=0.001)
    eng = run_fixed(p, [0.0, 0.05], [100, 300], [4, 2])
    # A: prefill step [0, 0.02] (0.01 + 100 x 1e-4). B arrives at 0.05 while A decodes:
    # A's decode steps take 0.011 s: [0.02, 0.031], [0.031, 0.042], [0.042, 0.053]; A is
    # done at 0.053 (4 tokens). B joins the next step at 0.053: 0.01 + 300 x 1e-4 = 0.04
    # -> first token at 0.093, then one decode step of 0.011 -> 0.104.
    assert eng.ttft.tolist() == pytest.approx([0.02, 0.093 - 0.05])
    assert eng.e2e.tolist() == pytest.approx([0.053, 0.104 - 0.05])


@pytest.mark.parametrize(
    ("limits", "ttft"),
    [
        # Budget 2,048: step 1 prefills A (1,000), B (1,000) and the first 48 tokens of C:
        # 0.01 + 2,048 x 1e-4 = 0.2148 s. Step 2: A's and B's decodes + C's other 952
        # tokens: 0.01 + 952 x 1e-4 = 0.1052 s -> C's first token at 0.32 s.
        pytest.param({"max_num_batched_tokens": 2048}, [0.2148, 0.2148, 0.32], id="budget"),
        # Two sequences at most: A and B take 0.01 + 2,000 x 1e-4 = 0.21 s, then 10
        # decode steps of 0.01 s (11 output tokens) -> done at 0.31 s; C is admitted then
        # and prefills in 0.01 + 0.1 = 0.11 s -> 0.42 s.
        pytest.param({"max_num_seqs": 2}, [0.21, 0.21, 0.42], id="max_num_seqs"),
        # 130 blocks of 16 tokens: A and B take 2 x 63 = 126 blocks, C (63) waits for A
        # or B to finish at 0.31 s like above.
        pytest.param({"num_gpu_blocks": 130}, [0.21, 0.21, 0.42], id="kv blocks"),
    ],
)
def test_the_third_simultaneous_request_waits_for_what_binds(
        limits: dict[str, float], ttft: list[float]) -> None:
    p = make_profile(**limits)
    eng = run_fixed(p, [0.0, 0.0, 0.0], [1000] * 3, [11] * 3)
    assert eng.ttft.tolist() == pytest.approx(ttft)


def test_kv_blocks_bind_admission_and_preemption_recomputes_the_last_admitted() -> None:
    # 10 blocks of 16 tokens = 160 tokens. A (prompt 64 = 4 blocks) and B (prompt 64)
    # fit; each grows a block every 16 tokens: after 16 decode tokens each they need the
    # 9th and 10th block, and at the next boundary one more: B (last admitted) is
    # preempted, A goes on.
    p = make_profile(num_gpu_blocks=10)
    ref = reference(p, [0.0, 0.0], [64, 64], [60, 60])
    eng = run_fixed(p, [0.0, 0.0], [64, 64], [60, 60])
    assert ref.preemptions >= 1
    assert eng.preemptions == ref.preemptions
    assert eng.ttft.tolist() == pytest.approx(ref.ttft)
    assert eng.e2e.tolist() == pytest.approx(ref.e2e)
    # A never lost its place: it finishes first.
    assert eng.e2e[0] < eng.e2e[1]


def test_waiting_grows_before_ttft_breaks_under_a_prefill_bound_overload() -> None:
    """Long prompts at 1.5x the prefill capacity: requests wait in the queue (not in the
    batch), long before the p99 TTFT passes a 2 s SLO."""
    p = load_profile("llama3-8b-h100")
    # Prompt 4,000, output 20: one replica serves 1 / (4,000 x 5e-5 + 19 x step/b) ~
    # 4.8 req/s; send 7 req/s.
    rng = np.random.default_rng(5)
    n = 700
    arr = np.cumsum(rng.exponential(1 / 7.0, n))
    eng = RequestEngine(p, arr, np.full(n, 4000), np.full(n, 20), initial_replicas=1)
    first_waiting_t = None
    for t in np.arange(1.0, 100.0, 1.0):
        eng.advance(float(t))
        s = eng.sample(float(t))
        if s.waiting >= 2 and first_waiting_t is None:
            first_waiting_t = float(t)
        assert s.running <= p.max_num_seqs
    eng.finish()
    assert first_waiting_t is not None
    # TTFT of requests arriving up to the first time waiting was seen is still fine.
    early = eng.ttft[arr < first_waiting_t]
    assert np.quantile(early, 0.99) < 2.0
    # ... and the overload does break it later.
    assert np.quantile(eng.ttft[np.isfinite(eng.ttft)], 0.99) > 2.0


def test_first_tokens_flatten_at_capacity_while_arrivals_keep_rising() -> None:
    p = load_profile("llama3-8b-h100")
    n = 3000
    rng = np.random.default_rng(2)
    arr = np.sort(rng.uniform(0.0, 100.0, n))  # 30 req/s, ~2.5x one replica's capacity
    eng = RequestEngine(p, arr, np.full(n, 1000), np.full(n, 200), initial_replicas=1)
    samples = []
    for t in (50.0, 100.0):
        eng.advance(t)
        samples.append(eng.sample(t))
    a = samples[1].requests_total - samples[0].requests_total
    f = samples[1].first_tokens_total - samples[0].first_tokens_total
    mu = p.max_throughput_rps(1000, 200)  # 12.5 req/s
    assert a / 50.0 > 25.0
    # The first-token rate cannot exceed the prefill capacity: 1 / (1,000 x 5e-5) = 20/s,
    # and in steady state it is the service rate ~ mu.
    assert f / 50.0 < 1.3 * mu
    assert f / 50.0 > 0.7 * mu
    assert samples[1].waiting > 1000
    assert samples[1].first_tokens_total == samples[1].ttft_buckets[-1]


# --- the fast engine equals the reference -------------------------------------------------
def _check_against_reference(p: ReplicaProfile, arr: list[float], pt: list[int],
                             ot: list[int]) -> int:
    ref = reference(p, arr, pt, ot)
    eng = run_fixed(p, arr, pt, ot)
    assert eng.preemptions == ref.preemptions
    assert np.allclose(eng.ttft, ref.ttft, rtol=0, atol=1e-7)
    assert np.allclose(eng.e2e, ref.e2e, rtol=0, atol=1e-7)
    return ref.preemptions


@pytest.mark.parametrize(
    ("kw", "preempts"),
    [
        pytest.param({}, False, id="roomy"),
        pytest.param({"num_gpu_blocks": 40}, True, id="tight cache, preemptions"),
        pytest.param({"max_num_seqs": 3, "max_num_batched_tokens": 64}, False,
                     id="small budget"),
        pytest.param({"block_size": 1, "num_gpu_blocks": 500}, True,
                     id="block of one token, preemptions"),
    ],
)
def test_fast_engine_matches_the_step_reference_on_random_workloads(
        kw: dict[str, float], preempts: bool) -> None:
    p = make_profile(step_per_decode_seq_s=0.002, **kw)
    rng = np.random.default_rng(7)
    total = 0
    for _ in range(5):
        n = 30
        arr = np.round(np.sort(rng.uniform(0, 2.0, n)), 4).tolist()
        pt = rng.integers(1, 300, n).tolist()
        ot = rng.integers(1, 80, n).tolist()
        total += _check_against_reference(p, arr, pt, ot)
    assert (total > 0) == preempts


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.integers(8, 80),
    bs=st.sampled_from([1, 4, 16]),
    seqs=st.integers(1, 8),
    extra_budget=st.integers(0, 200),
    reqs=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 200), st.integers(1, 60)),
                  min_size=1, max_size=25),
)
# Found by hypothesis: B (1-token prompt) is preempted after 2 tokens when A needs its
# 49th block; B's recompute of 3 tokens with a budget of 2 ends in a 1-token chunk, a
# prefill chunk (0.0101 s), not a decode (0.011 s): B ends at 1.0588 s, not 1.0597 s.
@example(blocks=49, bs=4, seqs=2, extra_budget=0,
         reqs=[(0.0, 184, 10), (1.0, 1, 3)])
@example(blocks=49, bs=4, seqs=2, extra_budget=0,
         reqs=[(0.0, 184, 10), (1.0, 1, 3), (1.0, 2, 1)])
# Ties: both arrivals at 0.5 s are at the boundary 0.06 + 40 x 0.011 s (float
# 0.49999999999999994), where the engine cut A's decode run; it ran that step before
# routing the second one, the reference admits both (first tokens at 0.5112 s).
@example(blocks=18, bs=16, seqs=3, extra_budget=47,
         reqs=[(0.0, 200, 42), (0.5, 1, 1), (0.5, 1, 1)])
# The reference's boundary 0.011 + 6 x 0.011 sums to 0.07699999999999999 < 0.077: it
# admitted B one step later than the engine.
@example(blocks=8, bs=4, seqs=2, extra_budget=8, reqs=[(0.0, 10, 8), (0.077, 10, 1)])
def test_invariants_and_agreement_with_the_reference(
        blocks: int, bs: int, seqs: int, extra_budget: int,
        reqs: list[tuple[float, int, int]]) -> None:
    p = make_profile(num_gpu_blocks=blocks, block_size=bs, max_num_seqs=seqs,
                     max_num_batched_tokens=seqs + extra_budget, step_per_decode_seq_s=0.001)
    reqs.sort()
    arr = [round(a, 3) for a, _, _ in reqs]
    pt = [x for _, x, _ in reqs]
    ot = [o for _, _, o in reqs]
    ref = reference(p, arr, pt, ot)
    # Conservation: every arrival finished (nothing is lost or duplicated).
    assert all(math.isfinite(x) for x in ref.e2e)
    for s in ref.steps:
        assert s["tokens"] <= p.max_num_batched_tokens
        assert s["running"] <= p.max_num_seqs
        assert s["blocks"] <= p.num_gpu_blocks
    eng = run_fixed(p, arr, pt, ot)
    assert eng.preemptions == ref.preemptions
    assert np.allclose(eng.ttft, ref.ttft, rtol=0, atol=1e-7)
    assert np.allclose(eng.e2e, ref.e2e, rtol=0, atol=1e-7)
    assert np.all(eng.ttft <= eng.e2e + 1e-12)


@settings(max_examples=30, deadline=None)
@given(
    replicas=st.integers(1, 3),
    blocks=st.integers(20, 60),
    reqs=st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(1, 150), st.integers(1, 50)),
                  min_size=1, max_size=40),
    probes=st.lists(st.floats(0.0, 4.0), min_size=1, max_size=6),
)
def test_fleet_samples_conserve_requests_and_respect_the_limits(
        replicas: int, blocks: int, reqs: list[tuple[float, int, int]],
        probes: list[float]) -> None:
    p = make_profile(num_gpu_blocks=blocks, max_num_seqs=4, max_num_batched_tokens=64,
                     step_per_decode_seq_s=0.001)
    reqs.sort()
    arr = [a for a, _, _ in reqs]
    eng = RequestEngine(p, arr, [x for _, x, _ in reqs], [o for _, _, o in reqs],
                        initial_replicas=replicas)
    last_first = last_pre = 0.0
    for t in sorted(probes):
        eng.advance(t)
        s = eng.sample(t)
        eng.finish()
        finished = int(np.isfinite(eng.e2e).sum())
        # Every arrival has finished or is still in the system (waiting or running).
        assert s.requests_total == finished + s.waiting + s.running
        assert s.running <= replicas * p.max_num_seqs
        assert 0.0 <= s.kv_usage <= 1.0
        assert s.first_tokens_total >= last_first and s.preemptions_total >= last_pre
        last_first, last_pre = s.first_tokens_total, s.preemptions_total
    eng.advance(math.inf)
    eng.finish()
    assert np.isfinite(eng.e2e).all()


# --- fleet ---------------------------------------------------------------------------------
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
    # Ready at 100 s, one prefill step 0.01 + 1,000 x 1e-4 = 0.11 s: TTFT = 90.11 s.
    assert eng.ttft[0] == pytest.approx(90.11)


@pytest.mark.parametrize(
    "blocks",
    [
        pytest.param(100_000, id="roomy cache"),
        # 500 + 80 tokens = 37 blocks per request at the end: 70 blocks hold one with
        # room to grow, two only for a while -> preemptions while draining.
        pytest.param(70, id="tight cache with preemptions"),
    ],
)
def test_scale_down_drains_in_flight_requests_and_loses_none(blocks: int) -> None:
    p = make_profile(max_num_seqs=4, num_gpu_blocks=blocks)
    rng = np.random.default_rng(1)
    n = 400
    arr = np.sort(rng.uniform(0, 20, n))
    eng = RequestEngine(p, arr, np.full(n, 500), np.full(n, 80), initial_replicas=3)
    eng.advance(10.0)
    eng.set_target(1, 10.0)
    eng.advance(math.inf)
    eng.finish()
    assert (eng.preemptions > 0) == (blocks < 1000)
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
    p = make_profile(max_num_batched_tokens=1000)
    eng = RequestEngine(p, np.zeros(10), np.full(10, 1000), np.full(10, 50),
                        initial_replicas=2)
    eng.advance(0.0)
    s = eng.sample(0.0)
    # Each replica's first step takes one 1,000-token prompt (the whole budget); the
    # other four on each replica wait.
    assert (s.running, s.waiting) == (2, 8)
    eng.advance(math.inf)
    eng.finish()
    # Both replicas see the same five requests: the same TTFTs, pairwise; the first
    # prompt's step alone takes 0.01 + 1,000 x 1e-4 = 0.11 s.
    ttft = sorted(eng.ttft.tolist())
    assert ttft[0::2] == pytest.approx(ttft[1::2])
    assert ttft[0] == pytest.approx(0.11)


# --- the fluid engine approximates the same scheduler ---------------------------------
P8 = load_profile("llama3-8b-h100")


def _poisson(rate: float, duration: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(0.0, duration, rng.poisson(rate * duration)))


def _both(rate: float, prompt: int, output: int, replicas: int, slo: float = 2.0,
          duration: float = 600.0) -> tuple[RequestEngine, FluidEngine]:
    arr = _poisson(rate, duration, seed=11)
    n = len(arr)
    req = RequestEngine(P8, arr, np.full(n, prompt), np.full(n, output),
                        initial_replicas=replicas)
    req.advance(duration)
    flu = FluidEngine(P8, np.full(int(duration), rate), prompt_tokens=prompt,
                      output_tokens=output, slo_ttft_s=slo, initial_replicas=replicas)
    flu.advance(duration)
    return req, flu


@pytest.mark.parametrize(
    ("prompt", "output", "load", "expect"),
    [
        # Mostly decode, seq-bound batch (256): mu = 12.49 req/s.
        pytest.param(1000, 200, 0.5, "meet", id="decode-heavy half load"),
        pytest.param(1000, 200, 1.4, "collapse", id="decode-heavy 1.4x"),
        # Prefill-bound: 4,000-token prompts, 20 output tokens; the budget binds the batch
        # (8,192 x 19 / 4,019 = 38): mu = 1 / (0.2 + 19 x 0.01256 / 38) = 4.85 req/s.
        pytest.param(4000, 20, 0.5, "meet", id="prefill-bound half load"),
        pytest.param(4000, 20, 1.4, "collapse", id="prefill-bound 1.4x"),
        # KV-bound: 6,000 + 600 tokens; 396,256 / 6,308 = 62 sequences fit.
        pytest.param(6000, 600, 0.5, "meet", id="kv-bound half load"),
        pytest.param(6000, 600, 1.4, "collapse", id="kv-bound 1.4x"),
    ],
)
def test_fluid_and_request_engines_agree_where_the_budget_kv_or_seqs_bind(
        prompt: int, output: int, load: float, expect: str) -> None:
    mu = P8.max_throughput_rps(prompt, output)
    req, flu = _both(load * 2 * mu, prompt, output, replicas=2)
    s_req, s_flu = req.sample(600.0), flu.sample(600.0)
    req.finish()
    arrived = req.arrivals < 600.0
    att_req = float(np.mean(req.ttft[arrived] <= 2.0))
    att_flu = float(np.dot(flu.arrivals, flu.met) / flu.arrivals.sum())
    if expect == "meet":
        assert att_req > 0.99 and att_flu > 0.99
        # Light load: nearly nothing queued in either.
        assert s_req.waiting < 0.05 * s_req.requests_total
        assert s_flu.waiting < 0.05 * s_flu.requests_total
    else:
        assert att_req < 0.2 and att_flu < 0.2
        # Served (first tokens) within 15% of each other: the same capacity.
        assert s_flu.first_tokens_total == pytest.approx(s_req.first_tokens_total, rel=0.15)
        # Both queue the excess as waiting, not as running.
        assert s_req.waiting > 0.2 * s_req.requests_total
        assert s_flu.waiting == pytest.approx(s_req.waiting, rel=0.25)
        assert s_req.running <= 2 * P8.max_num_seqs and s_flu.running <= 2 * P8.max_num_seqs
    # Stated tolerance: attainment within 0.05 in every shared case.
    assert abs(att_req - att_flu) < 0.05


def test_fluid_first_tokens_flatten_at_capacity_while_arrivals_keep_rising() -> None:
    mu = P8.max_throughput_rps(1000, 200)
    # 60 s at half capacity, then 60 s at 3x: arrivals triple, first tokens cap at mu.
    rates = np.concatenate((np.full(60, 0.5 * mu), np.full(60, 3.0 * mu)))
    flu = FluidEngine(P8, rates, prompt_tokens=1000, output_tokens=200, slo_ttft_s=2.0,
                      initial_replicas=1)
    flu.advance(60.0)
    a = flu.sample(60.0)
    flu.advance(120.0)
    b = flu.sample(120.0)
    assert a.first_tokens_total == pytest.approx(60 * 0.5 * mu)
    assert b.requests_total - a.requests_total == pytest.approx(60 * 3.0 * mu)
    assert b.first_tokens_total - a.first_tokens_total == pytest.approx(60 * mu)
    # The excess waits: 60 x (3 - 1) x mu.
    assert b.waiting >= 60 * 2.0 * mu


def test_fluid_waiting_rises_before_ttft_breaks_under_a_prefill_bound_ramp() -> None:
    mu = P8.max_throughput_rps(4000, 20)  # 4.85 req/s
    rates = np.linspace(0.2 * mu, 1.5 * mu, 600)
    flu = FluidEngine(P8, rates, prompt_tokens=4000, output_tokens=20, slo_ttft_s=2.0,
                      initial_replicas=1)
    first_wait = None
    for t in range(1, 601):
        flu.advance(float(t))
        if first_wait is None and flu.sample(float(t)).waiting >= 1.0:
            first_wait = t
    assert first_wait is not None
    first_miss = int(np.argmax(flu.met < 0.99))
    assert flu.met[first_miss] < 0.99
    assert first_wait < first_miss


def test_fluid_capacity_follows_per_time_token_means() -> None:
    # The same 6 req/s; prompts of 1,000 tokens for 300 s, then 4,000 (mu 4.85 < 6).
    rates = np.full(600, 6.0)
    prompts = np.concatenate((np.full(300, 1000.0), np.full(300, 4000.0)))
    flu = FluidEngine(P8, rates, prompt_tokens=prompts, output_tokens=20.0,
                      slo_ttft_s=2.0, initial_replicas=1)
    flu.advance(300.0)
    assert flu.backlog() == 0.0
    flu.advance(600.0)
    # The excess 6 - 4.85 = 1.15 req/s piles up over the second 300 s.
    mu2 = P8.max_throughput_rps(4000, 20)
    assert flu.backlog() == pytest.approx(300 * (6.0 - mu2), rel=1e-6)


def test_token_means_per_tick_uses_per_time_means_and_falls_back_on_nan() -> None:
    # Two 50-s windows: 500/80 tokens, then unknown (NaN: the trace's token_mix).
    tw = TokenWindows(resolution_s=50.0, mean_prompt=np.array([500.0, np.nan]),
                      mean_output=np.array([80.0, np.nan]))
    tr = Trace(name="m", duration_s=100.0, rates_rps=np.ones(100), resolution_s=1.0,
               token_mix=TokenMix(mean_prompt_tokens=2000.0, mean_output_tokens=50.0),
               token_windows=tw)
    p, o = token_means_per_tick(tr, 100)
    assert isinstance(p, np.ndarray) and isinstance(o, np.ndarray)
    assert p.tolist() == [500.0] * 50 + [2000.0] * 50
    assert o.tolist() == [80.0] * 50 + [50.0] * 50
    plain = Trace(name="p", duration_s=10.0, rates_rps=np.ones(10), resolution_s=1.0,
                  token_mix=TokenMix(mean_prompt_tokens=700.0, mean_output_tokens=90.0))
    assert token_means_per_tick(plain, 10) == (700.0, 90.0)


def test_fluid_takes_a_ttft_objective_per_tick() -> None:
    # Idle-ish 1 req/s of 4,000-token prompts: TTFT ~ 0.008 + 0.2 = 0.208 s plus a small
    # M/D/1 wait. An objective of 0.1 s misses it, 2 s meets it.
    slo = np.concatenate((np.full(30, 0.1), np.full(30, 2.0)))
    flu = FluidEngine(P8, np.full(60, 1.0), prompt_tokens=4000, output_tokens=20,
                      slo_ttft_s=slo, initial_replicas=1)
    for t in range(1, 61):  # short stretches: the tick-by-tick path
        flu.advance(float(t))
    assert flu.met[:30].tolist() == [0.0] * 30 and flu.met[30:].tolist() == [1.0] * 30
    whole = FluidEngine(P8, np.full(60, 1.0), prompt_tokens=4000, output_tokens=20,
                        slo_ttft_s=slo, initial_replicas=1)
    whole.advance(60.0)  # one stretch: the vectorised path
    assert whole.met.tolist() == flu.met.tolist()
