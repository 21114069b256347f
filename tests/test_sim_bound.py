"""The proven GPU-hour bound, per-hour attainment, churn, gaps, the GPU quota, the memory
refusal and the length-aware TTFT objective."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.config import parse_spec
from autoscaler.core.spec import SLO, Capacity, PolicyKind, Spec, ttft_objective
from autoscaler.core.types import Decision, Reason, Signal, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.replaying import ReplayOptions, compare, comparison_json
from autoscaler.sim.bound import Items, _windowed, gpu_hours_lower_bound
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import check_memory, replay
from autoscaler.traces import default_workload, load_trace
from autoscaler.traces.model import Trace

P8 = load_profile("llama3-8b-h100")
TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"


def requests(arrivals: list[float], prompt: int = 1000, output: int = 200,
             duration: float = 3600.0, gaps: tuple[tuple[float, float], ...] = ()) -> Trace:
    arr = np.asarray(arrivals, dtype=np.float64)
    n = len(arr)
    return Trace(name="t", duration_s=duration, arrivals_s=arr,
                 prompt_tokens=np.full(n, prompt, dtype=np.int64),
                 output_tokens=np.full(n, output, dtype=np.int64), gaps=gaps)


def poisson(rate: float, duration: float, seed: int = 0, **kw: object) -> Trace:
    rng = np.random.default_rng(seed)
    arr = np.sort(rng.uniform(0, duration, rng.poisson(rate * duration)))
    return requests(arr.tolist(), duration=duration, **kw)  # type: ignore[arg-type]


def static(n: int, **kw: object) -> Spec:
    return Spec(max_replicas=max(n, 1), capacity=Capacity(10.0, 100.0),
                policy=PolicyKind.STATIC, static_replicas=n, **kw)  # type: ignore[arg-type]


# --- the bound on hand-made items ------------------------------------------------------

def _burst_items(n: int) -> Items:
    # n requests at t = 10 s, 0.1 replica-seconds each (2,000 tokens at 20,000 tokens/s),
    # objective 2 s.
    return Items(arrival_s=np.full(n, 10.0), count=np.ones(n), work_s=np.full(n, 0.1),
                 deadline_s=np.full(n, 2.0), impossible=np.zeros(n))


@pytest.mark.parametrize(
    ("attainment", "expected_replica_s"),
    [
        # 15-s windows: [0, 15) holds the burst: max(1 x 15, 1,000 x 0.1 = 100) = 100; the
        # other three windows of 60 s are at the floor: 45. Total 145 replica-seconds.
        pytest.param(1.0, 145.0, id="all met: the burst's work plus the floor elsewhere"),
        # 10% may miss: drop 100 requests of 0.1 s = 10 replica-seconds -> 135.
        pytest.param(0.9, 135.0, id="10% misses save their work"),
        # Everything may miss: the floor alone, 1 x 60 s.
        pytest.param(0.0, 60.0, id="no attainment: the floor"),
    ],
)
def test_bound_of_a_burst_matches_the_hand_arithmetic(attainment: float,
                                                      expected_replica_s: float) -> None:
    b = gpu_hours_lower_bound(_burst_items(1000), duration_s=60.0, floor_replicas=1.0,
                              gpus_per_replica=2, attainment=attainment)
    assert b == pytest.approx(expected_replica_s * 2 / 3600)


def test_requests_that_straddle_every_window_edge_are_not_counted() -> None:
    # A request at 14 s with a 2-s objective straddles the 15-s edge, the 60-s window's end
    # (duration 16 s: one window [0, 16)) holds it: max(16, 1,000 x 0.1) = 100.
    items = dataclasses.replace(_burst_items(1000), arrival_s=np.full(1000, 14.0))
    b = gpu_hours_lower_bound(items, duration_s=16.0, floor_replicas=0.0, gpus_per_replica=1,
                              attainment=1.0)
    assert b == pytest.approx(100.0 / 3600)


def test_impossible_requests_are_spent_first_and_save_nothing() -> None:
    # 10 requests whose prefill (3 s) exceeds the 2-s objective miss under any policy; at
    # attainment 1000/1010 exactly those miss and the burst still needs 100 replica-s.
    items = _burst_items(1000)
    bad = Items(arrival_s=np.full(10, 30.0), count=np.ones(10), work_s=np.full(10, 3.0),
                deadline_s=np.full(10, 2.0), impossible=np.ones(10))
    both = Items(*(np.concatenate((getattr(items, f.name), getattr(bad, f.name)))
                   for f in dataclasses.fields(Items)))
    b = gpu_hours_lower_bound(both, duration_s=60.0, floor_replicas=1.0, gpus_per_replica=1,
                              attainment=1000 / 1010)
    assert b == pytest.approx(145.0 / 3600)


# --- no policy beats the bound ---------------------------------------------------------

def _window(trace: Trace, start_s: float, duration_s: float) -> Trace:
    """[start, start + duration) of a trace, re-based to 0."""
    if trace.arrivals_s is not None:
        a = trace.arrivals_s
        keep = (a >= start_s) & (a < start_s + duration_s)
        return dataclasses.replace(
            trace, duration_s=duration_s, arrivals_s=a[keep] - start_s,
            prompt_tokens=None if trace.prompt_tokens is None else trace.prompt_tokens[keep],
            output_tokens=None if trace.output_tokens is None else trace.output_tokens[keep])
    assert trace.rates_rps is not None and trace.resolution_s is not None
    i0 = int(start_s // trace.resolution_s)
    n = math.ceil(duration_s / trace.resolution_s)
    return dataclasses.replace(trace, duration_s=duration_s,
                               rates_rps=trace.rates_rps[i0:i0 + n], gaps=())


PUBLIC = [
    pytest.param("synthetic", 3600.0, 1800.0, 1.0, id="embedded synthetic, 30 min"),
    pytest.param("AzureLLMInferenceTrace_conv.csv", 0.0, 1200.0, 3.0, id="azure conv x3, 20 min"),
    pytest.param("AzureLLMInferenceTrace_code.csv", 600.0, 1200.0, 5.0,
                 id="azure code x5, 20 min"),
    pytest.param("nasa_http_1995/workload.tbz2", 86400.0 * 2, 3 * 3600.0, 20.0,
                 id="nasa x20, 3 h"),
    pytest.param("servegen_language_m-small", 0.0, 3 * 3600.0, 1.0, id="servegen, 3 h"),
]


@pytest.mark.parametrize(("path", "start", "duration", "scale"), PUBLIC)
def test_no_policy_uses_fewer_gpu_hours_than_the_bound_on_public_traces(
        path: str, start: float, duration: float, scale: float) -> None:
    src = TRACES / path
    if path != "synthetic" and not src.exists():
        pytest.skip(f"{src} not present")
    full = default_workload(seed=0) if path == "synthetic" else load_trace(src)
    trace = _window(full, start, duration)
    if scale != 1.0:
        from autoscaler.traces import scale_trace
        trace = scale_trace(trace, rate=scale)
    # Every registered policy, not only compare()'s default list (hpa-running is not in it).
    comp = compare(trace, P8, policies=tuple(PolicyKind), options=ReplayOptions(slo_ttft_s=2.0))
    for kind, result in comp.results.items():
        s = result.summary
        assert s.gpu_hours >= s.bound_gpu_hours * (1 - 1e-9), kind
        assert s.bound_gpu_hours > 0
    # Static fleets from far too small to ample: the bound holds at every attainment.
    peak = max(r.summary.max_replicas for r in comp.results.values())
    for n in sorted({1, max(1, peak // 3), max(1, peak // 2), peak}):
        s = replay(trace, static(n), P8).summary
        assert s.gpu_hours >= s.bound_gpu_hours * (1 - 1e-9), n


# --- per-hour attainment, churn ---------------------------------------------------------

def test_worst_hour_and_hours_meeting_the_target_show_the_bad_hour() -> None:
    # Hour 1: 2 req/s on one replica (~12 req/s capacity): all met. Hour 2: 40 req/s on
    # one replica: overload, most miss. Whole-trace attainment hides which hour broke.
    rng = np.random.default_rng(1)
    a1 = np.sort(rng.uniform(0, 3600, 7200))
    a2 = np.sort(rng.uniform(3600, 7200, 144000))
    trace = requests(np.concatenate((a1, a2)).tolist(), duration=7200.0)
    s = replay(trace, static(1), P8, engine="fluid").summary
    assert s.hours_scored == 2
    assert s.hours_meeting_target == pytest.approx(0.5)
    assert s.worst_hour_attainment < 0.5


def rate_following(snapshot: Snapshot, state: State, spec: Spec,
                   now: float) -> tuple[Decision, State]:
    """A fake policy: hold without fresh data, else ceil(rate / capacity)."""
    rate = snapshot.get(Signal.REQUEST_RATE, now, spec.max_metric_age_s)
    if rate is None:
        return Decision(snapshot.current_replicas, Reason.METRICS_MISSING, "no data",
                        valid=False), state
    n = max(spec.min_replicas, min(spec.max_replicas,
                                   math.ceil(rate / spec.capacity.requests_per_second)))
    return Decision(n, Reason.DESIRED_WITHIN_RANGE, "follow"), state


def step_to_three(snapshot: Snapshot, state: State, spec: Spec,
                  now: float) -> tuple[Decision, State]:
    """A fake policy: 1 replica before t = 600 s, 3 from then on."""
    return Decision(1 if now < 600 else 3, Reason.DESIRED_WITHIN_RANGE, "step"), state


def test_replica_starts_and_cold_start_gpu_hours_match_the_hand_count() -> None:
    # The fake steps from 1 to 3 replicas at 600 s: two starts. No jitter: each start
    # costs exactly 90 s of one GPU, 2 x 90 / 3,600 GPU-h in cold starts.
    prof = dataclasses.replace(P8, cold_start_jitter_s=0.0)
    both = poisson(5.0, 1800.0)
    spec = Spec(max_replicas=10, capacity=Capacity(10.0, 100.0), policy=PolicyKind.STATIC)
    s = replay(both, spec, prof, initial_replicas=1, decide=step_to_three).summary
    assert s.replica_starts == 2
    assert s.replica_starts_per_day == pytest.approx(2 / (1800 / 86400))
    assert s.cold_start_gpu_hours == pytest.approx(2 * 90.0 / 3600)


# --- gaps, quota, memory --------------------------------------------------------------

def test_a_collection_gap_has_no_arrivals_no_score_and_the_policy_holds() -> None:
    # 20 req/s everywhere in the file, but [1800, 9000) is a collection gap: its arrivals
    # are dropped, hour [3600, 7200) lies wholly inside it and is not scored (hours 0 and 2
    # are), and the fake (which would scale to 1 on zero traffic) sees no samples and holds
    # what it had before.
    base = poisson(20.0, 10800.0)
    assert base.arrivals_s is not None
    trace = dataclasses.replace(base, gaps=((1800.0, 9000.0),))
    spec = Spec(max_replicas=10, capacity=Capacity(10.0, 100.0), policy=PolicyKind.STATIC)
    res = replay(trace, spec, P8, initial_replicas=2, decide=rate_following)
    in_gap = (base.arrivals_s >= 1800) & (base.arrivals_s < 9000)
    assert res.summary.requests == pytest.approx(float((~in_gap).sum()))
    assert res.summary.hours_scored == 2
    tl = res.timeline
    # Past Prometheus' 5-minute lookback nothing is returned at all: the fake holds.
    during = (tl.t_s >= 1800 + 360) & (tl.t_s < 9000 - 60)
    held = tl.desired_replicas[during]
    assert held[0] >= 1 and np.all(held == held[0])
    assert res.reasons.get("MetricsMissing", 0) > 0
    assert np.all(np.isnan(tl.arrival_rps[during]))


def test_a_gpu_quota_keeps_replicas_beyond_it_pending_and_free() -> None:
    # A static fleet of 4 under a quota of 2: 2 run, 2 stay pending for the whole hour.
    trace = poisson(2.0, 3600.0)
    s = replay(trace, static(4), P8, gpu_quota=2).summary
    assert s.gpu_hours == pytest.approx(2.0)  # 2 replicas x 1 GPU x 1 h
    assert s.max_replicas == 2
    assert s.max_pending == 0  # the initial fleet is placed at the quota, not actuated
    with pytest.raises(SpecError, match="gpu-quota"):
        replay(trace, static(4), P8, gpu_quota=-1)


def test_the_quota_holds_a_scale_up_pending() -> None:
    trace = poisson(30.0, 1200.0)
    spec = Spec(max_replicas=10, capacity=Capacity(10.0, 100.0), policy=PolicyKind.STATIC)
    res = replay(trace, spec, P8, initial_replicas=1, decide=rate_following, gpu_quota=2)
    s = res.summary
    assert s.max_replicas == 2
    # wants ceil(~30 / 10) = 3 or more, 2 allowed: the rest is pending
    wanted = int(res.timeline.desired_replicas.max())
    assert wanted >= 3
    assert s.max_pending == wanted - 2


def test_the_request_engine_is_refused_when_it_would_not_fit_in_memory() -> None:
    # 2e9 requests x 700 B = 1.4 TB against 8 GB available.
    with pytest.raises(SpecError) as err:
        check_memory(2e9, available=8e9)
    msg = str(err.value)
    assert "2,000,000,000 requests" in msg and "--engine fluid" in msg
    check_memory(1000.0, available=8e9)  # 0.7 MB fits


# --- the length-aware TTFT objective -----------------------------------------------------

@pytest.mark.parametrize(
    ("base", "per_token", "prompt", "expected"),
    [pytest.param(2.0, 0.0, 10_000, 2.0, id="flat"),
     pytest.param(2.0, 0.0002, 10_000, 4.0, id="2 s + 10,000 x 0.0002 s = 4 s"),
     pytest.param(2.0, 0.0002, 500, 2.1, id="2 s + 500 x 0.0002 s = 2.1 s")],
)
def test_ttft_objective_grows_with_the_prompt(base: float, per_token: float, prompt: int,
                                              expected: float) -> None:
    slo = SLO(ttft_seconds=base, ttft_seconds_per_prompt_token=per_token)
    assert ttft_objective(slo, prompt) == pytest.approx(expected)


def test_a_long_prompt_misses_a_flat_objective_and_meets_a_length_aware_one() -> None:
    # 8,000-token prompts prefill in 8,000 / 20,000 = 0.4 s on an idle replica: a flat 0.3 s
    # objective is never met; 0.3 s + 8,000 x 0.0001 s = 1.1 s always is at 0.2 req/s.
    trace = poisson(0.2, 1800.0, prompt=8000)
    flat = replay(trace, static(1, slo=SLO(ttft_seconds=0.3)), P8).summary
    aware = replay(trace, static(1, slo=SLO(ttft_seconds=0.3,
                                           ttft_seconds_per_prompt_token=0.0001)), P8).summary
    assert flat.slo_attainment == 0.0
    assert aware.slo_attainment == 1.0


def test_the_spec_file_takes_the_per_token_objective_and_checks_its_range() -> None:
    text = ("policy: static\nmaxReplicas: 3\ncapacity: {requestsPerSecond: 5, concurrency: 50}\n"
            "slo: {ttftSeconds: 2, ttftSecondsPerPromptToken: %s}\n")
    assert parse_spec(text % "0.0002").slo.ttft_seconds_per_prompt_token == 0.0002
    with pytest.raises(SpecError, match="ttftSecondsPerPromptToken"):
        parse_spec(text % "0.5")


# --- JSON ---------------------------------------------------------------------------------

def test_the_json_is_strict_and_carries_the_bound_and_trace_figures() -> None:
    # One replica at 3x its capacity: many requests never get a first token within the
    # replay, so TTFT p99 is infinite and must be null.
    trace = poisson(36.0, 600.0)
    comp = compare(trace, P8, [PolicyKind.STATIC],
                   ReplayOptions(max_replicas=1))
    doc = comparison_json(comp)
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    r = back["results"][0]
    assert r["ttft_p99_s"] is None and "notes" in back
    assert back["bound"]["gpu_hours"] is not None and "prefill" in back["bound"]["definition"]
    assert back["trace"]["collection_gaps"] == 0
    assert 0.8 < back["trace"]["interarrival_cv"] < 1.2  # Poisson: 1
    for key in ("replica_starts", "replica_starts_per_day", "cold_start_gpu_hours",
                "worst_hour_attainment", "hours_meeting_target", "bound_gpu_hours"):
        assert key in r


def test_compare_refuses_the_request_engine_before_calibrating() -> None:
    # 14 days at ~860 req/s = 1.04e9 requests: ~730 GB at 700 B each, on no machine here.
    trace = Trace(name="big", duration_s=14 * 86400.0,
                  rates_rps=np.full(14 * 144, 860.0), resolution_s=600.0)
    with pytest.raises(SpecError, match="requests need about"):
        compare(trace, P8, [PolicyKind.STATIC], ReplayOptions(engine="request"))


def test_the_objective_reads_a_whole_spec_as_the_controller_passes_it() -> None:
    spec = static(1, slo=SLO(ttft_seconds=1.0, ttft_seconds_per_prompt_token=0.001))
    assert ttft_objective(spec, 3000) == pytest.approx(4.0)  # 1 s + 3,000 x 0.001 s


def _slow_windowed(arr: list[float], cnt: list[float], work: list[float], dl: list[float],
                   duration: float, floor: float, length: float, droppable: float) -> float:
    """The partition bound spelled out with loops: windows [k L, (k+1) L), contained items'
    work per window, then drops taken one unit at a time from the window item with the
    largest work whose window still has excess."""
    edges = [0.0]
    while edges[-1] + length < duration:
        edges.append(edges[-1] + length)
    edges.append(duration)
    wins = []
    for lo, hi in itertools.pairwise(edges):
        items = [[w, c] for a, c, w, d in zip(arr, cnt, work, dl, strict=True)
                 if lo <= a < hi and a + d <= hi + 1e-9 and c > 0]
        wins.append((hi - lo, items))
    total = 0.0
    excess = []
    for width, items in wins:
        w_sum = sum(w * c for w, c in items)
        total += max(floor * width, w_sum)
        excess.append(max(0.0, w_sum - floor * width))
    left = droppable
    while left > 1e-12:
        best = None  # (work, window, item) with the largest work and excess left
        for j, (_, items) in enumerate(wins):
            if excess[j] <= 1e-12:
                continue
            for it in items:
                if it[1] > 1e-12 and (best is None or it[0] > best[0]):
                    best = (it[0], j, it)
        if best is None:
            break
        w, j, it = best
        units = min(left, it[1], excess[j] / w)
        saved = units * w
        total -= saved
        excess[j] -= saved
        it[1] -= units
        left -= units
    return max(floor * duration, total)


@given(
    items=st.lists(st.tuples(st.floats(0, 59.9), st.integers(1, 3), st.sampled_from(
        [0.05, 0.1, 0.4, 1.0]), st.sampled_from([1.0, 2.0, 5.0])), min_size=1, max_size=40),
    floor=st.sampled_from([0.0, 0.5, 1.0]), length=st.sampled_from([7.0, 15.0, 60.0]),
    droppable=st.sampled_from([0.0, 1.0, 2.5, 10.0]))
@settings(max_examples=150, deadline=None)
def test_the_windowed_bound_matches_a_slow_reference(
        items: list[tuple[float, int, float, float]], floor: float, length: float,
        droppable: float) -> None:
    arr, cnt, work, dl = (list(x) for x in zip(*items, strict=True))
    it = Items(arrival_s=np.asarray(arr), count=np.asarray(cnt, dtype=np.float64),
               work_s=np.asarray(work), deadline_s=np.asarray(dl),
               impossible=np.zeros(len(arr)))
    fast = _windowed(it, it.count, 60.0, floor, length, 0.0, droppable)
    slow = _slow_windowed(arr, [float(c) for c in cnt], work, dl, 60.0, floor, length,
                          droppable)
    assert fast == pytest.approx(slow, abs=1e-9)


# --- the request engine's prefill work, with the step base over a full budget -----------

def test_request_items_charge_each_prefill_token_its_share_of_a_full_steps_base() -> None:
    from autoscaler.sim.bound import request_items
    # llama3-8b-h100: 50 us per prefill token and an 8-ms step base carrying at most 8,192
    # tokens: 1,000 tokens cost 1,000 x (0.00005 + 0.008 / 8,192) = 0.0509765625 replica-s.
    # 20,000 tokens need ceil(20,000 / 8,192) = 3 steps: 3 x 0.008 + 20,000 x 0.00005 =
    # 1.024 s on an idle replica, above a 1.0-s objective: impossible; 8,000 tokens need
    # 0.008 + 0.4 = 0.408 s: possible.
    it = request_items(np.asarray([0.0, 1.0, 2.0]), np.asarray([1000.0, 20000.0, 8000.0]),
                       np.asarray([1.0, 1.0, 1.0]), 20_000.0, step_base_s=0.008,
                       max_num_batched_tokens=8192)
    assert it.work_s[0] == pytest.approx(0.0509765625)
    assert it.impossible.tolist() == [0.0, 1.0, 0.0]


def test_the_idle_ttft_the_bound_calls_impossible_is_the_request_engines_own() -> None:
    # One 20,000-token request alone on one replica: its first token after 3 steps of
    # 8 ms plus 20,000 x 50 us = 1.024 s, exactly the bound's idle TTFT.
    from autoscaler.sim.request_engine import RequestEngine
    eng = RequestEngine(P8, np.asarray([0.0]), np.asarray([20_000]), np.asarray([5]),
                        initial_replicas=1)
    eng.advance(10.0)
    eng.finish()
    assert eng.ttft[0] == pytest.approx(3 * 0.008 + 20_000 * 0.00005)


def test_the_step_base_tightens_the_request_bound_by_its_share() -> None:
    # 1,000 requests of 2,000 tokens at t = 10 s, 2-s objective, 60 s, floor 0: the bound
    # is their work, 1,000 x 2,000 x (0.00005 + 0.008 / 8,192) = 101.953125 replica-s,
    # against 100 with the bare prefill cost.
    from autoscaler.sim.bound import request_items
    args = (np.full(1000, 10.0), np.full(1000, 2000.0), np.full(1000, 2.0), 20_000.0)
    bare = gpu_hours_lower_bound(request_items(*args), duration_s=60.0, floor_replicas=0.0,
                                 gpus_per_replica=1, attainment=1.0)
    tight = gpu_hours_lower_bound(
        request_items(*args, step_base_s=0.008, max_num_batched_tokens=8192),
        duration_s=60.0, floor_replicas=0.0, gpus_per_replica=1, attainment=1.0)
    assert bare == pytest.approx(100.0 / 3600)
    assert tight == pytest.approx(101.953125 / 3600)
