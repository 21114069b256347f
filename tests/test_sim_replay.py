"""The replay loop and both engines: agreement, accounting, outages, oracle, calibration."""

from __future__ import annotations

import time

import numpy as np
import pytest

from autoscaler.core.spec import Capacity, PolicyKind, Spec
from autoscaler.core.types import Decision, Reason, Signal, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.sim.calibrate import capacity_at_slo
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import replay
from autoscaler.traces.model import Trace

P8 = load_profile("llama3-8b-h100")
PROMPT, OUTPUT = 1000, 200
# Hand-derived capacity of one 8B replica at full batch (256) for 1,000/200 tokens:
# 1 / (1000/20000 + 199 x (0.008 + 0.00012 x 256) / 256) = 1 / 0.080098 = 12.485 req/s.
MU = 1.0 / (PROMPT / 20_000 + 199 * (0.008 + 0.00012 * 256) / 256)


def poisson_trace(rates: list[tuple[float, float]], seed: int = 0) -> Trace:
    """Piecewise-constant Poisson arrivals: [(duration_s, rate_rps), ...]."""
    rng = np.random.default_rng(seed)
    parts, t0 = [], 0.0
    for dur, rate in rates:
        n = rng.poisson(rate * dur)
        parts.append(t0 + np.sort(rng.uniform(0, dur, n)))
        t0 += dur
    arr = np.concatenate(parts)
    n = len(arr)
    return Trace(name="poisson", duration_s=t0, arrivals_s=arr,
                 prompt_tokens=np.full(n, PROMPT, dtype=np.int64),
                 output_tokens=np.full(n, OUTPUT, dtype=np.int64))


def static_spec(n: int, **kw: object) -> Spec:
    return Spec(max_replicas=max(n, 1), capacity=Capacity(MU * 0.8, 100.0),
                policy=PolicyKind.STATIC, static_replicas=n, **kw)  # type: ignore[arg-type]


def test_profile_capacity_matches_the_hand_derivation() -> None:
    assert P8.max_throughput_rps(PROMPT, OUTPUT) == pytest.approx(MU)
    assert abs(MU - 12.485) < 1e-3


@pytest.mark.parametrize(
    ("load", "check"),
    [
        pytest.param([(1800.0, 0.5 * 2 * MU)], "both_meet", id="steady half load"),
        pytest.param([(900.0, 1.5 * 2 * MU)], "both_collapse", id="steady 1.5x overload"),
        pytest.param([(900.0, 0.5 * 2 * MU), (900.0, 1.2 * 2 * MU)], "close",
                     id="step from 0.5x to 1.2x"),
    ],
)
def test_request_and_fluid_engines_agree_on_shared_cases(
        load: list[tuple[float, float]], check: str) -> None:
    trace = poisson_trace(load)
    spec = static_spec(2)
    req = replay(trace, spec, P8, engine="request").summary
    flu = replay(trace, spec, P8, engine="fluid").summary
    assert (req.engine, flu.engine) == ("request", "fluid")
    # Same fleet, same accounting: 2 replicas x duration.
    assert req.gpu_hours == pytest.approx(flu.gpu_hours)
    assert req.gpu_hours == pytest.approx(2 * trace.duration_s / 3600)
    assert req.requests == pytest.approx(flu.requests)
    if check == "both_meet":
        assert req.slo_attainment > 0.99 and flu.slo_attainment > 0.99
    elif check == "both_collapse":
        assert req.slo_attainment < 0.1 and flu.slo_attainment < 0.1
    # Stated tolerance: attainment within 0.05 in every shared case.
    assert abs(req.slo_attainment - flu.slo_attainment) < 0.05


def test_gpu_hours_of_a_static_70b_fleet_match_the_hand_arithmetic() -> None:
    p70 = load_profile("llama3-70b-4xh100")
    trace = poisson_trace([(1800.0, 1.0)])
    res = replay(trace, static_spec(3), p70)
    # 3 replicas x 4 GPUs x 1,800 s / 3,600 = 6 GPU-hours.
    assert res.summary.gpu_hours == pytest.approx(6.0)
    assert res.summary.gpu_cost == pytest.approx(6.0 * 2.5)
    assert res.summary.mean_replicas == pytest.approx(3.0)
    assert res.summary.max_replicas == 3
    assert res.summary.scale_events == 0
    assert res.decisions == 120 and res.reasons == {"Fixed": 120}


def test_timeline_has_one_point_per_minute_and_nan_where_nothing_arrived() -> None:
    trace = poisson_trace([(600.0, 2.0), (300.0, 0.0), (300.0, 2.0)])
    tl = replay(trace, static_spec(1), P8).timeline
    assert len(tl.t_s) == 20
    assert np.isnan(tl.ttft_p95_s[11]) and np.isnan(tl.attainment[11])
    assert np.all(tl.ready_replicas == 1)
    assert tl.arrival_rps[:10].mean() == pytest.approx(2.0, rel=0.1)


def test_auto_engine_picks_request_for_request_traces_and_fluid_for_rates() -> None:
    req = poisson_trace([(300.0, 1.0)])
    rates = Trace(name="r", duration_s=600.0, rates_rps=np.array([1.0, 2.0]),
                  resolution_s=300.0)
    assert replay(req, static_spec(1), P8).summary.engine == "request"
    assert replay(rates, static_spec(1), P8).summary.engine == "fluid"
    assert replay(rates, static_spec(1), P8, engine="request").summary.engine == "request"
    with pytest.raises(SpecError, match="engine"):
        replay(req, static_spec(1), P8, engine="warp")


def rate_following_policy(snapshot: Snapshot, state: State, spec: Spec,
                          now: float) -> tuple[Decision, State]:
    """A fake policy with the core's contract: hold without fresh data, else follow."""
    rate = snapshot.get(Signal.REQUEST_RATE, now, spec.max_metric_age_s)
    if rate is None:
        return Decision(snapshot.current_replicas, Reason.METRICS_MISSING, "no data",
                        valid=False), state
    n = max(spec.min_replicas, min(spec.max_replicas,
                                   int(np.ceil(rate / spec.capacity.requests_per_second))))
    return Decision(n, Reason.DESIRED_WITHIN_RANGE, "follow"), state


@pytest.mark.parametrize("outage", [pytest.param(True, id="outage"),
                                    pytest.param(False, id="no outage")])
def test_no_scale_down_happens_while_metrics_are_missing(outage: bool) -> None:
    trace = poisson_trace([(600.0, 30.0), (1200.0, 1.0)])
    spec = Spec(max_replicas=10, capacity=Capacity(10.0, 100.0), policy=PolicyKind.STATIC)
    res = replay(trace, spec, P8, initial_replicas=3, decide=rate_following_policy,
                 metrics_outage=[(500.0, 1500.0)] if outage else ())
    tl = res.timeline
    during = (tl.t_s >= 660) & (tl.t_s < 1440)
    before = tl.desired_replicas[8]  # at 540 s: the last decision on data, ~30 req/s
    assert before >= 3
    if outage:
        assert np.all(tl.desired_replicas[during] == before)
        assert res.reasons.get("MetricsMissing", 0) > 0
        # After the outage two fresh scrapes (1515, 1530) bring the rate back: down.
        assert tl.desired_replicas[-1] == 1
    else:
        assert np.all(tl.desired_replicas[during] == 1)


def test_oracle_meets_the_slo_on_a_step_load() -> None:
    cap = capacity_at_slo(P8, 2.0, (PROMPT, OUTPUT))
    trace = poisson_trace([(900.0, 2.0), (900.0, 40.0)])
    spec = Spec(max_replicas=20, capacity=cap, policy=PolicyKind.ORACLE,
                cold_start_s=P8.cold_start_s + P8.cold_start_jitter_s)
    res = replay(trace, spec, P8)
    s = res.summary
    assert s.initial_replicas == 1
    assert s.max_replicas >= int(np.ceil(40.0 / cap.requests_per_second))
    assert s.slo_attainment >= 0.99
    assert s.scale_events >= 1
    # Ready before the step: the oracle asked early enough for the cold start.
    tl = res.timeline
    assert tl.ready_replicas[15] >= np.ceil(40.0 / cap.requests_per_second)


def test_calibrated_capacity_grows_with_a_looser_slo() -> None:
    rng = np.random.default_rng(3)
    prompts = np.clip(rng.lognormal(np.log(1000), 0.9, 2000), 10, 14000).astype(int)
    outputs = np.clip(rng.lognormal(np.log(150), 0.8, 2000), 1, 1000).astype(int)
    caps = [capacity_at_slo(P8, slo, (prompts, outputs)) for slo in (0.5, 0.8, 1.2, 2.4)]
    rps = [c.requests_per_second for c in caps]
    assert rps == sorted(rps)
    assert rps[0] < rps[-1]
    mu = P8.max_throughput_rps(float(prompts.mean()), float(outputs.mean()))
    assert rps[-1] <= mu + 1e-9
    for c in caps:
        assert c.concurrency > c.requests_per_second * PROMPT / 20_000  # Little: > rate x prefill


def test_calibration_is_fast_cached_and_refuses_an_impossible_slo() -> None:
    t0 = time.perf_counter()
    a = capacity_at_slo(P8, 1.5, (1200, 180))
    assert time.perf_counter() - t0 < 2.0
    t1 = time.perf_counter()
    assert capacity_at_slo(P8, 1.5, (1200, 180)) == a
    assert time.perf_counter() - t1 < 0.01
    with pytest.raises(SpecError, match="ttftSeconds"):
        capacity_at_slo(P8, 0.01, (1000, 100))  # the prefill alone takes 0.05 s


def test_the_memory_check_and_the_trace_size_estimate_use_one_figure() -> None:
    # 1,000,000 requests x 700 B (2 x the 338 B measured, rounded up) = 700 MB; the check
    # allows 80% of what is available: 875 MB fits exactly, 874 MB does not.
    from autoscaler.sim.replay import check_memory

    trace = Trace(name="million", duration_s=1000.0,
                  rates_rps=np.full(1000, 1000.0), resolution_s=1.0)
    assert trace.size_estimate().request_engine_bytes == 1_000_000 * 700
    check_memory(1_000_000, available=875e6)
    with pytest.raises(SpecError, match="700 B each"):
        check_memory(1_000_000, available=874e6)


def test_capacity_is_calibrated_on_the_traces_own_length_distribution() -> None:
    # A rate-level trace whose every request has 67 prompt and 10 output tokens (a point
    # mass), with a token_mix of the same means: the capacity is that of identical requests,
    # not of lognormal lengths around the means (8B profile: 201.6 vs 207.2 req/s).
    from autoscaler.replaying import capacity_for
    from autoscaler.traces.model import TokenDistribution, TokenMix

    profile = load_profile()
    trace = Trace(name="point", duration_s=600.0, rates_rps=np.full(10, 50.0),
                  resolution_s=60.0, token_mix=TokenMix(67.0, 10.0),
                  token_distribution=TokenDistribution(
                      np.array([67]), np.array([1.0]), np.array([10]), np.array([1.0])))
    own = capacity_for(trace, profile, 2.0).requests_per_second
    identical = capacity_at_slo(profile, 2.0, (67, 10)).requests_per_second
    lognormal = capacity_at_slo(profile, 2.0, TokenMix(67.0, 10.0)).requests_per_second
    assert own == pytest.approx(identical, rel=1e-9)
    assert abs(own - lognormal) > 0.01 * lognormal  # the two calibrations do differ here
