"""How a replay starts, and how a part of it is scored.

1. The pods present at the replay's first scrape served before the trace began: their
   counters are not counted from zero, so the first rate window is ``not_yet_valid`` (as
   after a Prometheus restart) and no policy reads a ramp from 0 that is not in the trace.
2. ``replay(score_from_s=T)`` scores only [T, end) of a whole-trace replay, and ``tune``
   scores its held-out part that way (a continuation, not a restart). A slow reference
   recomputes every figure from the engine's records and per-request outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.core.types import Decision, Signal, Snapshot
from autoscaler.errors import SpecError
from autoscaler.observation.judge import Status
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim import bound as bnd
from autoscaler.sim.fleet import EngineSample
from autoscaler.sim.observe import FakePrometheus
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.sim.replay import default_decide, replay, run_loop, set_up
from autoscaler.traces import Trace, default_workload
from autoscaler.tuning import TuneSettings, finish, outcome_json, prepare, sweep

PROFILE = load_profile("llama3-8b-h100")
WINDOW_S = 60.0
"""The replay's default rate window; its default scrape interval is 15 s."""


def _flat(rate: float, minutes: int = 15) -> Trace:
    return Trace(f"flat {rate:g}/s", minutes * 60.0, rates_rps=np.full(minutes, rate),
                 resolution_s=60.0)


# --- 1. The first window ------------------------------------------------------------------

def _sample(t: float, served: float, ready: int) -> EngineSample:
    return EngineSample(t=t, requests_total=served, prompt_tokens_total=0.0,
                        generation_tokens_total=0.0, ttft_buckets=(0.0,) * 23, ttft_sum=0.0,
                        waiting=0.0, running=0.0, kv_usage=0.0, gpu_busy_seconds_total=0.0,
                        ready_replicas=ready, first_tokens_total=served)


@pytest.mark.parametrize(("at", "status", "value"), [
    # Samples at 15, 30 s: the window (-30, 30] starts 45 s before the first sample, more than
    # 1.1 spacings (16.5 s), and the counter was not zero there: not covered.
    pytest.param(30.0, Status.NOT_YET_VALID, None, id="30 s: window not covered, not valid"),
    pytest.param(45.0, Status.NOT_YET_VALID, None, id="45 s: window not covered, not valid"),
    # At 60 s the first sample (15 s) is 15 s after the window's start, within 16.5 s:
    # rate() extrapolates to it, 6 req/s x 45 s x 60/45 / 60 s = 6.0 (a count from zero
    # would stop the extrapolation at the zero point: 270 / 60 = 4.5).
    pytest.param(60.0, Status.OK, 6.0, id="60 s: covered, the true 6.0 (was 4.5)"),
    pytest.param(75.0, Status.OK, 6.0, id="75 s: covered, 6.0"),
])
def test_pods_present_at_the_first_scrape_were_serving_before_the_trace(
        at: float, status: Status, value: float | None) -> None:
    prom = FakePrometheus(preset="vllm", rate_window_s=WINDOW_S)
    for t in np.arange(15.0, at + 1, 15.0):
        prom.scrape(_sample(float(t), 6.0 * float(t), 2))
    reading = prom.observe(at).judged(2)[Signal.REQUEST_RATE]
    assert reading.status is status
    if value is not None:
        assert reading.value == pytest.approx(value)


def test_a_pod_started_after_the_first_scrape_still_counts_from_zero() -> None:
    # One pod from the start at 6 req/s; a second ready at 60 s (first scraped at 60 s, half
    # an interval counted). At 75 s the new pod's series starts 45 s into the window, but its
    # counter started from zero just before its first sample: covered, not held.
    prom = FakePrometheus(preset="vllm", rate_window_s=WINDOW_S)
    served = 0.0
    for t in (15.0, 30.0, 45.0, 60.0, 75.0, 90.0, 105.0, 120.0, 135.0):
        ready = 1 if t < 60.0 else 2
        served += 15.0 * 6.0 * ready
        prom.scrape(_sample(t, served, ready))
        if t >= 75.0:
            assert prom.observe(t).judged(2)[Signal.REQUEST_RATE].status is Status.OK, t


@dataclass(frozen=True)
class StartCase:
    policy: PolicyKind
    rate: float


_START_CASES = [pytest.param(StartCase(p, r), id=f"{p.value} at {r:g} req-s")
                for r in (6.0, 30.0) for p in PolicyKind]


@pytest.mark.parametrize("case", _START_CASES)
def test_no_policy_reads_a_ramp_from_zero_in_the_first_window(case: StartCase) -> None:
    """On a flat trace, no decision before the first window is covered sees a request rate;
    the first one after reads the true rate; and no policy's count in the first window rises
    above what it asks for once the rate is known (the old cold start read 1.5 / 3.0 / 4.5
    req/s at 30 / 45 / 60 s of a flat 6, and predictive started a second replica at 45 s)."""
    trace = _flat(case.rate)
    specs = default_specs(trace, PROFILE, capacity_for(trace, PROFILE, 2.0), ReplayOptions())
    seen: list[tuple[float, float | None, int]] = []

    def log(t: float, snap: Snapshot, d: Decision) -> None:
        mv = snap.metrics.get(Signal.REQUEST_RATE)
        seen.append((t, None if mv is None else mv.value, d.replicas))

    replay(trace, specs[case.policy], PROFILE, engine="fluid", on_decision=log)
    early = [(t, v) for t, v, _ in seen if t < WINDOW_S and v is not None]
    assert early == [], "a request rate read before its window was covered"
    first = next((t, v) for t, v, _ in seen if v is not None)
    assert first[0] == pytest.approx(WINDOW_S)
    assert first[1] == pytest.approx(case.rate, rel=0.05)
    start_max = max(n for t, _, n in seen if t <= WINDOW_S)
    settled_max = max(n for t, _, n in seen if t >= 300.0)
    assert start_max <= settled_max


# --- 2. Scoring a part -------------------------------------------------------------------

def _reference(trace: Trace, spec: Spec, profile: ReplicaProfile, t0: float,
               engine: str, scrape_interval_s: float = 15.0) -> dict[str, float]:
    """Every figure of the part [t0, end), by plain loops over the same replay's records and
    per-request outcomes (the loop is driven through its public pieces)."""
    setup = set_up(trace, spec, profile, engine=engine)
    loop = run_loop(setup, spec, default_decide(trace, spec, profile, 2.0),
                    scrape_interval_s=scrape_interval_s, rate_window_s=WINDOW_S,
                    actuation_delay_s=2.0, metrics_outage=trace.gaps)
    end = trace.duration_s
    gpu_s = 0.0
    starts = 0
    for r in setup.engine.records():
        stop = end if r.ended_at is None else min(r.ended_at, end)
        lo = max(r.requested_at, t0)
        if stop > lo:
            gpu_s += stop - lo
        if r.requested_at > 0.0 and r.requested_at >= t0:
            starts += 1
    if setup.request is not None:
        req = setup.request
        assert setup.prompts is not None
        objective = (spec.slo.ttft_seconds
                     + spec.slo.ttft_seconds_per_prompt_token * setup.prompts)
        req.advance(end + float(objective.max(initial=0.0)))
        req.finish()
        arrivals, prompts, met, n = [], [], 0.0, 0.0
        for a, p, ttft, obj in zip(req.arrivals, setup.prompts, req.ttft, objective,
                                   strict=True):
            if a >= t0:
                arrivals.append(a - t0)
                prompts.append(p)
                n += 1
                met += 1.0 if ttft <= obj else 0.0
        att = met / n if n else 1.0
        items = bnd.request_items(np.array(arrivals), np.array(prompts),
                                  np.array([o for a, o in zip(req.arrivals, objective,
                                                              strict=True) if a >= t0]),
                                  profile.prefill_tokens_per_s, step_base_s=profile.step_base_s,
                                  max_num_batched_tokens=profile.max_num_batched_tokens)
    else:
        fl = setup.fluid
        assert fl is not None
        ticks = [i for i in range(len(fl.arrivals)) if i * fl.tick_s >= t0]
        n = sum(float(fl.arrivals[i]) for i in ticks)
        met = sum(float(fl.arrivals[i] * fl.met[i]) for i in ticks)
        att = met / n if n else 1.0
        mu = np.broadcast_to(np.asarray(getattr(fl, "_mu", fl.capacity_rps)),
                             (len(fl.arrivals),))
        pre = np.broadcast_to(np.asarray(setup.fluid_prefill_s), (len(fl.arrivals),))
        obj = np.broadcast_to(np.asarray(setup.fluid_objective_s), (len(fl.arrivals),))
        whole = bnd.fluid_items(fl.arrivals, fl.tick_s, mu, pre, obj)
        keep = np.array([i * fl.tick_s >= t0 for i in range(len(fl.arrivals))])
        items = bnd.Items(whole.arrival_s[keep] - t0, whole.count[keep], whole.work_s[keep],
                          whole.deadline_s[keep], whole.impossible[keep])
    floor = bnd.floor_of(spec.min_replicas, setup.start, None)
    bound = bnd.gpu_hours_lower_bound(items, duration_s=end - t0, floor_replicas=floor,
                                      gpus_per_replica=profile.gpus_per_replica,
                                      attainment=att, cold_start_s=profile.cold_start_s)
    return {"gpu_hours": gpu_s * profile.gpus_per_replica / 3600.0, "attainment": att,
            "requests": n, "replica_starts": starts, "bound_gpu_hours": bound,
            "mean_replicas": gpu_s / (end - t0),
            "scale_events": sum(1 for t in loop.scale_times if t >= t0)}


@dataclass(frozen=True)
class PartCase:
    policy: PolicyKind
    engine: str
    t0: float


_PART_CASES = [
    pytest.param(PartCase(PolicyKind.HPA, "request", 1800.0), id="hpa, request engine, last half"),
    pytest.param(PartCase(PolicyKind.PREDICTIVE, "request", 2700.0),
                 id="predictive, request engine, last quarter"),
    pytest.param(PartCase(PolicyKind.PREDICTIVE, "fluid", 2700.0),
                 id="predictive, fluid engine, last quarter"),
    pytest.param(PartCase(PolicyKind.KPA, "fluid", 1234.5), id="kpa, fluid engine, odd cut"),
    pytest.param(PartCase(PolicyKind.HPA, "fluid", 0.0), id="hpa, fluid engine, whole trace"),
]


@pytest.fixture(scope="module")
def hour() -> tuple[Trace, dict[PolicyKind, Spec]]:
    trace = default_workload(seed=1, duration_s=3600.0)
    specs = default_specs(trace, PROFILE, capacity_for(trace, PROFILE, 2.0), ReplayOptions())
    return trace, specs


@pytest.mark.parametrize("case", _PART_CASES)
def test_a_scored_part_equals_the_slow_reference_over_a_whole_replay(
        case: PartCase, hour: tuple[Trace, dict[PolicyKind, Spec]]) -> None:
    trace, specs = hour
    spec = specs[case.policy]
    got = replay(trace, spec, PROFILE, engine=case.engine, score_from_s=case.t0).summary
    want = _reference(trace, spec, PROFILE, case.t0, case.engine)
    assert got.scored_from_s == case.t0
    for key, value in (("gpu_hours", got.gpu_hours), ("attainment", got.slo_attainment),
                       ("requests", got.requests), ("bound_gpu_hours", got.bound_gpu_hours),
                       ("mean_replicas", got.mean_replicas)):
        assert value == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
    assert got.replica_starts == want["replica_starts"]
    assert got.scale_events == want["scale_events"]


@pytest.mark.parametrize("t0", [
    pytest.param(-1.0, id="before the start"),
    pytest.param(3600.0, id="at the end"),
    pytest.param(math.nan, id="NaN"),
])
def test_a_part_outside_the_trace_names_the_field(
        t0: float, hour: tuple[Trace, dict[PolicyKind, Spec]]) -> None:
    trace, specs = hour
    with pytest.raises(SpecError, match="scoreFromSeconds"):
        replay(trace, specs[PolicyKind.HPA], PROFILE, engine="fluid", score_from_s=t0)


def test_tune_scores_the_held_out_part_as_a_continuation() -> None:
    """The held-out figures are the winner's whole-trace replay restricted to the held-out
    part, not a fresh replay of that part (which restarts with a fleet sized by hindsight,
    an empty Prometheus and a fresh policy state)."""
    trace = default_workload(seed=0, duration_s=2400.0)
    ctx = prepare(trace, PROFILE, TuneSettings(policies=(PolicyKind.PREDICTIVE,), budget=2,
                                               engine="fluid", attainment=0.9))
    out = finish(ctx, sweep(ctx, shards=1), "sweep")
    po = out.policies[PolicyKind.PREDICTIVE.value]
    assert po.spec is not None and po.held_out is not None
    cut = ctx.train.duration_s
    assert cut == pytest.approx(1800.0)  # 40 min, the last quarter held out
    want = _reference(trace, po.spec, PROFILE, cut, "fluid", min(15.0, po.spec.sync_period_s))
    got: Any = po.held_out
    assert got.gpu_hours == pytest.approx(want["gpu_hours"], rel=1e-9)
    assert got.attainment == pytest.approx(want["attainment"], rel=1e-9)
    assert got.bound_gpu_hours == pytest.approx(want["bound_gpu_hours"], rel=1e-9)
    assert got.scale_events == want["scale_events"]
    hs = out.hindsight_held_out
    h_spec = ctx.base[PolicyKind.HINDSIGHT]
    h_want = _reference(trace, h_spec, PROFILE, cut, "fluid", min(15.0, h_spec.sync_period_s))
    assert hs is not None
    assert hs.gpu_hours == pytest.approx(h_want["gpu_hours"], rel=1e-9)
    assert "continuation" in outcome_json(out)["split"]["held_out_scoring"]
