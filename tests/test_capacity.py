"""Capacity learned from the fleet (``autoscaler.core.capacity``) and, in replay, the
predictive policy that plans on it: wrong priors converge, a prompt-mix shift is followed."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import capacity as cap
from autoscaler.core.spec import Capacity, PolicyKind
from autoscaler.core.types import Decision, Snapshot
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import replay
from autoscaler.sim.result import ReplayResult
from autoscaler.traces.model import FloatArray, Trace

SLO = 2.0


def obs(*, ready: int = 4, prompt: float | None = 6000.0, gen: float | None = 800.0,
        req: float | None = 4.0, ttft: float | None = 0.3, queue: float | None = 0.0,
        kv: float | None = 0.2) -> cap.FleetObservation:
    return cap.FleetObservation(ready_replicas=ready, current_replicas=ready,
                                served=(prompt, gen, req), ttft_s=ttft, queue=queue, kv_usage=kv)


def settled(est: cap.LearnedCapacity, o: cap.FleetObservation, t0: float = 0.0
            ) -> tuple[cap.LearnedCapacity, float]:
    """Feed the same fleet for 75 s (a rate window plus one step) so it counts as settled."""
    t = t0
    for t in (t0, t0 + 15.0, t0 + 30.0, t0 + 45.0, t0 + 60.0):
        est = step(est, o, t)
    return est, t


def step(est: cap.LearnedCapacity, o: cap.FleetObservation, t: float) -> cap.LearnedCapacity:
    return cap.update(est, o, slo_ttft_s=SLO, now=t, prior_rps=1.0,
                      tokens_per_request=(1500.0, 200.0))


# Prior 1 req/s of 1,500-token prompts and 200 generated tokens: 1,500 and 200 per replica.
PRIOR = cap.start(1.0, (1500.0, 200.0))


def test_the_prior_is_scaled_into_token_units_by_the_mix() -> None:
    assert PRIOR.capacity == (1500.0, 200.0, 1.0)


def test_an_overload_lowers_the_binding_unit_only_by_the_worked_number() -> None:
    # 4 ready serving 6,000 prompt tok/s (1,500 each = 1.0 of the estimate, the highest
    # ratio), 400 generated tok/s (100 each = 0.5 of 200) and 2 req/s (0.5 each = 0.5):
    # only prompt tokens bind. TTFT 2.6 s > 2 s: 1,500 + 0.3 x (0.9 x 1,500 - 1,500) = 1,455.
    o = obs(prompt=6000.0, gen=400.0, req=2.0, ttft=2.6)
    est, t = settled(PRIOR, o)
    # Settled at t = 60 (one step after the 60-s window): one overloaded reading is a blip
    # and teaches nothing; the second in a row (t = 75) is the one step counted.
    assert est.capacity == (1500.0, 200.0, 1.0)
    assert est.measurements == 0
    est = step(est, o, t + 15.0)
    assert est.capacity[0] == pytest.approx(1500.0 + 0.3 * (0.9 * 1500.0 - 1500.0))
    assert est.capacity[1:] == (200.0, 1.0)
    assert est.measurements == 1


def test_an_overload_broken_by_a_good_reading_teaches_nothing() -> None:
    over = obs(prompt=6000.0, gen=400.0, req=2.0, ttft=2.6)
    est, t = settled(PRIOR, over)
    est = step(est, obs(prompt=6000.0, gen=400.0, req=2.0, ttft=1.5), t + 15.0)
    est = step(est, over, t + 30.0)
    assert est.capacity[0] == 1500.0
    assert est.measurements == 1  # the loaded reading (1.5 s >= half the SLO) only


def test_an_overload_never_raises_an_estimate() -> None:
    # Serving 3,000 prompt tokens per replica while missing the SLO: 0.9 x 3,000 = 2,700 is
    # above the 1,500 estimate, so it teaches nothing upward.
    est, _ = settled(PRIOR, obs(prompt=12000.0, gen=800.0, req=8.0, ttft=5.0))
    assert est.capacity[0] <= 1500.0


def test_a_fleet_that_just_changed_teaches_nothing() -> None:
    # The ready count changes every step: the 60-s rate still mixes the old fleet in.
    est = PRIOR
    for i, ready in enumerate((2, 3, 4, 5, 6, 7)):
        est = step(est, obs(ready=ready, prompt=30000.0, ttft=9.0), 15.0 * i)
    assert est.capacity == PRIOR.capacity and est.measurements == 0


def test_slack_probes_up_but_never_past_the_tested_envelope() -> None:
    # Every replica carries 1,200 prompt tok/s (0.8 of the estimate) with TTFT 0.3 s: slack.
    # Probing at 5 %/min is capped at 1.5 x the highest load seen meeting the SLO: 1,800.
    est, t = settled(PRIOR, obs(prompt=4800.0, gen=400.0, req=3.2))
    for k in range(1, 200):
        est = step(est, obs(prompt=4800.0, gen=400.0, req=3.2), t + 15.0 * k)
    assert est.capacity[0] == pytest.approx(1.5 * 1200.0)
    assert est.probes > 0


def test_probes_stop_at_the_load_that_last_overloaded() -> None:
    # Two overloaded readings at 1,500 prompt tok/s per replica (TTFT 2.6 s): the second
    # moves the estimate to 1,500 + 0.3 x (1,350 - 1,500) = 1,455 and remembers 1,500.
    over = obs(prompt=6000.0, gen=400.0, req=2.0, ttft=2.6)
    est, t = settled(PRIOR, over)
    est = step(est, over, t + 15.0)
    assert est.capacity[0] == pytest.approx(1455.0)
    # 50 minutes of slack at 1,200 per replica: the envelope's 1.5 x 1,200 = 1,800 would
    # allow more, but probes stop at the 1,500 that overloaded.
    slack = obs(prompt=4800.0, gen=400.0, req=3.2)
    t += 15.0
    for k in range(1, 200):
        est = step(est, slack, t + 15.0 * k)
    assert est.probes > 0
    assert est.capacity[0] == pytest.approx(1500.0)
    # A replica carrying 1,600 within the SLO: the estimate takes what was carried (the
    # breach itself is forgotten only past 1,500 / 0.9, see the test below).
    t += 15.0 * 200
    est, t = settled(est, obs(prompt=6400.0, gen=400.0, req=3.2), t)
    assert est.capacity[0] >= 1600.0


@pytest.mark.parametrize(("carried", "forgotten"), [
    # The overload's own tail: a saturated fleet's rate() still reads the 1,500 it pushed
    # while the TTFT window is back under the SLO.
    pytest.param(1500.0, False, id="the load that overloaded: kept"),
    pytest.param(1600.0, False, id="1.07x the breach, within its noise: kept"),
    # The overload aimed at 0.9 x 1,500; only a load past 1,500 / 0.9 = 1,667 contradicts it.
    pytest.param(1700.0, True, id="past breach / 0.9: forgotten"),
])
def test_a_breach_is_forgotten_only_by_a_clearly_higher_load(carried: float,
                                                             forgotten: bool) -> None:
    over = obs(prompt=6000.0, gen=400.0, req=2.0, ttft=2.6)
    est, t = settled(PRIOR, over)
    est = step(est, over, t + 15.0)
    assert est.breach[0] == pytest.approx(1500.0)
    est, _ = settled(est, obs(prompt=4.0 * carried, gen=400.0, req=3.2), t + 30.0)
    assert math.isnan(est.breach[0]) == forgotten


def test_slack_on_a_lightly_loaded_fleet_does_not_probe() -> None:
    # 300 prompt tok/s per replica is 0.2 of the estimate: idle replicas say nothing.
    est, t = settled(PRIOR, obs(prompt=1200.0, gen=100.0, req=0.8))
    for k in range(1, 40):
        est = step(est, obs(prompt=1200.0, gen=100.0, req=0.8), t + 15.0 * k)
    assert est.capacity == PRIOR.capacity


def test_a_replica_meeting_the_slo_above_the_estimate_raises_it_to_what_it_carried() -> None:
    # 2,000 prompt tok/s per replica with TTFT 1.2 s (loaded, SLO met): capacity >= 2,000.
    est, _ = settled(PRIOR, obs(prompt=8000.0, gen=400.0, req=4.0, ttft=1.2))
    assert est.capacity[0] == pytest.approx(2000.0)


def test_requests_equivalent_takes_the_tightest_unit() -> None:
    # 12,000 prompt tok/s at 1,500 per request = 8 req/s; 1,200 generated at 200 = 6 req/s;
    # requests estimate 7.8: min(8, 6, 7.8) = 6.
    est = cap.LearnedCapacity(capacity=(12000.0, 1200.0, 7.8), prior=(12000.0, 1200.0, 7.8),
                              measured=(True, True, True))
    assert cap.requests_equivalent(est, (1500.0, 200.0)) == pytest.approx(6.0)


def test_replicas_needed_is_the_max_over_units() -> None:
    # 9,000 prompt tok/s at 2,000 x 0.85 = 1,700 per replica: ceil(5.29) = 6; 1,000 generated
    # at 400 x 0.85 = 340: ceil(2.94) = 3; 5 req/s at 2 x 0.85 = 1.7: ceil(2.94) = 3.
    est = cap.LearnedCapacity(capacity=(2000.0, 400.0, 2.0), prior=(2000.0, 400.0, 2.0),
                              measured=(True, True, True))
    assert cap.replicas_needed(est, (9000.0, 1000.0, 5.0), 0.85) == (6, 0)
    assert cap.replicas_needed(est, (None, 3000.0, 5.0), 0.85) == (9, 1)  # ceil(8.82)


def test_a_token_unit_without_evidence_does_not_plan() -> None:
    # The same estimates, but the prompt unit is still the prior scaled by the mix: only
    # generated tokens (3) and requests (3) plan.
    est = cap.LearnedCapacity(capacity=(2000.0, 400.0, 2.0), prior=(2000.0, 400.0, 2.0),
                              measured=(False, True, True))
    assert cap.replicas_needed(est, (9000.0, 1000.0, 5.0), 0.85)[0] == 3


@given(st.lists(st.tuples(st.integers(1, 20), st.floats(0.0, 1e5), st.floats(0.0, 30.0),
                          st.floats(0.0, 50.0), st.floats(0.0, 1.0)), min_size=1, max_size=60))
@settings(max_examples=80, deadline=None)
def test_the_estimate_stays_finite_and_within_eight_times_the_prior(
        steps: list[tuple[int, float, float, float, float]]) -> None:
    est = PRIOR
    for i, (ready, prompt, ttft, queue, kv) in enumerate(steps):
        est = step(est, obs(ready=ready, prompt=prompt, gen=prompt / 7.5, req=prompt / 1500.0,
                            ttft=ttft, queue=queue, kv=kv), 15.0 * i)
        for c, p in zip(est.capacity, est.prior, strict=True):
            assert math.isfinite(c) and p / 8.0 - 1e-9 <= c <= p * 8.0 + 1e-9
        assert 0.0 <= est.relative_sd <= 1.0


@given(st.lists(st.tuples(st.integers(1, 8), st.floats(0.0, 1.1109), st.floats(0.0, 1.99)),
                min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_no_load_below_breach_over_0_9_meeting_the_slo_forgets_the_breach(
        steps: list[tuple[int, float, float]]) -> None:
    # An overload at 1,500 prompt tok/s per replica; then any sequence of fleets meeting the
    # SLO at up to 1.1109 x 1,500 (< 1,500 / 0.9 = 1,666.7) per replica keeps it remembered,
    # and no probe takes the prompt estimate above it or above what a replica carried.
    over = obs(prompt=6000.0, gen=400.0, req=2.0, ttft=2.6)
    est, t = settled(PRIOR, over)
    est = step(est, over, t + 15.0)
    t += 30.0
    carried = 1500.0
    for ready, ratio, ttft in steps:
        carried = max(carried, 1500.0 * ratio)
        o = obs(ready=ready, prompt=1500.0 * ratio * ready, gen=100.0 * ready,
                req=0.8 * ready, ttft=ttft)
        est, t = settled(est, o, t + 15.0)
        assert est.breach[0] == pytest.approx(1500.0)
        assert est.capacity[0] <= carried + 1e-6


# --- In replay: the predictive policy on a fleet of the 8B profile ----------------------------

PROFILE = load_profile("llama3-8b-h100")


def _trace(seed: int, duration_s: float, rate: Callable[[FloatArray], FloatArray],
           prompt_median: Callable[[FloatArray], FloatArray], output_median: float) -> Trace:
    """Poisson arrivals at ``rate(t)`` req/s; lognormal lengths (sigma 0.5) around medians."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, duration_s, 1.0)
    counts = rng.poisson(rate(t))
    arr = np.sort(np.repeat(t, counts) + rng.uniform(0.0, 1.0, int(counts.sum())))
    n = len(arr)
    p = np.clip(np.round(prompt_median(arr) * rng.lognormal(0.0, 0.5, n)), 16, 8192)
    o = np.clip(np.round(output_median * rng.lognormal(0.0, 0.5, n)), 4, 2048)
    return Trace(name="capacity-test", duration_s=duration_s, arrivals_s=arr,
                 prompt_tokens=p.astype(np.int64), output_tokens=o.astype(np.int64))


# Three hours, 24 +- 8 req/s over a 90-minute cycle, 1,000-token prompts, 150 generated.
STEADY = _trace(1, 3 * 3600.0, lambda t: 24.0 + 8.0 * np.sin(2 * np.pi * t / 5400.0),
                lambda a: np.full(a.shape, 1000.0), 150.0)


@functools.lru_cache(maxsize=4)
def _run(prior_factor: float) -> tuple[ReplayResult, tuple[tuple[float, float], ...], float]:
    truth = capacity_for(STEADY, PROFILE, SLO)
    spec = default_specs(STEADY, PROFILE, truth, ReplayOptions())[PolicyKind.PREDICTIVE]
    spec = replace(spec, capacity=Capacity(truth.requests_per_second * prior_factor,
                                           truth.concurrency * prior_factor))
    log: list[tuple[float, float]] = []

    def keep(t: float, _s: Snapshot, d: Decision) -> None:
        if d.capacity_rps is not None:
            log.append((t, d.capacity_rps))

    return replay(STEADY, spec, PROFILE, on_decision=keep), tuple(log), truth.requests_per_second


def _converged_at(log: tuple[tuple[float, float], ...], low: float, high: float,
                  window_s: float = 600.0) -> float:
    """Start of the first 10-minute window from which every window's median estimate stays
    within [low, high] (a median, so one step's backoff after a probe is not a miss)."""
    windows: dict[int, list[float]] = {}
    for t, c in log:
        windows.setdefault(int(t // window_s), []).append(c)
    last_out = -1
    for k in sorted(windows):
        if not low <= float(np.median(windows[k])) <= high:
            last_out = k
    return (last_out + 1) * window_s


def _attainment_after(result: ReplayResult, t0: float) -> float:
    tl = result.timeline
    keep = (tl.t_s >= t0) & np.isfinite(tl.attainment)
    w = tl.arrival_rps[keep]
    return float(np.dot(w, tl.attainment[keep]) / w.sum())


@pytest.mark.parametrize(("factor", "within_s", "high"), [
    # Converged = every later 10-minute median at least 0.7x the simulated replica's truth
    # (``capacity_for``: 11.45 req/s here) and, from a 2x prior, at most 1.3x it. Measured:
    # 0.5x climbs past 0.7x truth at 90-100 min, then 100 %; 2x is within 10 min (its
    # first overloads), settles at 12.9 req/s (1.13x), then 100 %.
    # A too-low prior meets no overload, so nothing tells it where to stop: its probes keep
    # testing loads that meet the SLO, and it ends the 3 hours at 17.3 req/s (1.51x the
    # truth, still at 100 %: the truth is the load at which this replica's p99 reaches the
    # SLO under the steady mix, and the planned 85 % of 17.3 = 14.7 req/s still met it in
    # the sine's traffic). Only its lower side is asserted.
    pytest.param(0.5, 110 * 60.0, math.inf, id="prior 0.5x converges within 110 min"),
    pytest.param(2.0, 10 * 60.0, 1.3, id="prior 2x converges within 10 min"),
])
def test_a_wrong_prior_converges_and_then_meets_the_slo(factor: float, within_s: float,
                                                         high: float) -> None:
    # A too-high prior is corrected by the first confirmed overload (fast), and the load
    # that overloaded then caps its probes; a too-low one only by probing, each probe
    # testing at most 1.5x the load seen meeting the SLO, so it climbs as the cycle offers
    # higher loads (slow).
    result, log, truth = _run(factor)
    t_conv = _converged_at(log, 0.7 * truth, high * truth)
    assert t_conv <= within_s
    assert _attainment_after(result, t_conv) >= 0.99


def test_when_the_prompt_mix_shifts_the_estimate_follows() -> None:
    # Two hours of 600-token prompts, then two hours of 2,400-token prompts at the same
    # request rate: a replica's capacity in requests/s falls about threefold.
    half = 2 * 3600.0
    trace = _trace(2, 2 * half, lambda t: 14.0 + 4.0 * np.sin(2 * np.pi * t / 3600.0),
                   lambda a: np.where(a < half, 600.0, 2400.0), 150.0)

    def part(lo: float, hi: float) -> Trace:
        assert trace.arrivals_s is not None and trace.prompt_tokens is not None
        assert trace.output_tokens is not None
        m = (trace.arrivals_s >= lo) & (trace.arrivals_s < hi)
        return dataclasses.replace(trace, arrivals_s=trace.arrivals_s[m] - lo,
                                   prompt_tokens=trace.prompt_tokens[m],
                                   output_tokens=trace.output_tokens[m], duration_s=hi - lo)

    first = capacity_for(part(0.0, half), PROFILE, SLO).requests_per_second
    second = capacity_for(part(half, 2 * half), PROFILE, SLO).requests_per_second
    assert second < 0.5 * first  # the scenario is what it says
    spec = default_specs(trace, PROFILE, capacity_for(part(0.0, half), PROFILE, SLO),
                         ReplayOptions())[PolicyKind.PREDICTIVE]
    log: list[tuple[float, float]] = []

    def keep(t: float, _s: Snapshot, d: Decision) -> None:
        if d.capacity_rps is not None:
            log.append((t, d.capacity_rps))

    result = replay(trace, spec, PROFILE, on_decision=keep)
    before = float(np.median([c for t, c in log if half - 3600.0 <= t < half]))
    after = float(np.median([c for t, c in log if t >= 2 * half - 3600.0]))
    assert 0.8 * first <= before <= 1.8 * first
    assert 0.8 * second <= after <= 1.8 * second
    assert after < 0.6 * before
    assert result.summary.slo_attainment >= 0.98


def test_when_prompts_shorten_the_fleet_shrinks_with_the_work() -> None:
    # Two hours of 2,400-token prompts, then two hours of 600-token prompts at the same
    # 14 +- 4 req/s: one replica's capacity in requests/s about triples (measured with
    # ``capacity_for``: 5.6 -> 15.8 req/s), so the peak of 18 req/s then needs
    # ceil(18 / (0.85 x 15.8)) = 2 replicas. A requests/s count learned on the long prompts
    # kept planning 4-5 (last hour: 4.58 replicas on average, the requests/s unit binding
    # in 87 of its 240 decisions; 17.25 GPU-h over the 4 hours); counted as work it follows
    # the prompts down (2.67 on average; 14.65 GPU-h). Both meet the SLO throughout.
    half = 2 * 3600.0
    trace = _trace(3, 2 * half, lambda t: 14.0 + 4.0 * np.sin(2 * np.pi * t / 3600.0),
                   lambda a: np.where(a < half, 2400.0, 600.0), 150.0)
    assert trace.arrivals_s is not None and trace.prompt_tokens is not None
    assert trace.output_tokens is not None
    late = trace.arrivals_s >= half
    second = dataclasses.replace(trace, arrivals_s=trace.arrivals_s[late] - half,
                                 prompt_tokens=trace.prompt_tokens[late],
                                 output_tokens=trace.output_tokens[late], duration_s=half)
    truth = capacity_for(second, PROFILE, SLO).requests_per_second
    assert math.ceil(18.0 / (0.85 * truth)) == 2  # the scenario is what it says
    first = dataclasses.replace(trace, arrivals_s=trace.arrivals_s[~late],
                                prompt_tokens=trace.prompt_tokens[~late],
                                output_tokens=trace.output_tokens[~late], duration_s=half)
    spec = default_specs(trace, PROFILE, capacity_for(first, PROFILE, SLO),
                         ReplayOptions())[PolicyKind.PREDICTIVE]
    planned: list[tuple[float, int]] = []

    def keep(t: float, _s: Snapshot, d: Decision) -> None:
        planned.append((t, d.replicas))

    result = replay(trace, spec, PROFILE, on_decision=keep)
    last_hour = [n for t, n in planned if t >= 2 * half - 3600.0]
    assert float(np.mean(last_hour)) <= 3.0  # at most one above what the peak needs
    assert _attainment_after(result, half) >= 0.99
