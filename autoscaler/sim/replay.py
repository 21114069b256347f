"""Replay a trace against one autoscaler spec: the simulator's entry point.

The loop is the live controller's loop with the cluster replaced by an engine:

* every ``scrape_interval_s`` the fake Prometheus scrapes the engine (unless an outage or a
  collection gap of the trace hides it);
* every ``spec.sync_period_s`` the snapshot is built from Prometheus queries only and a
  decide function is called (by default the very same ``autoscaler.core.decide`` the live
  controller uses; the ``hindsight`` baseline gets the replay-only one with foresight); its
  ``State`` is kept for the next step. Every decision then goes through the core's
  ``guard`` exactly as the live loop's: a decision with ``valid=False`` holds at the
  current count, and after ``spec.fallback.failure_threshold`` consecutive invalid ones
  the count is raised to ``spec.fallback.replicas`` if it is below (never lowered);
* ``faults`` (``autoscaler.sim.observe``: scrape gaps, silent pods, Prometheus restarts,
  counter resets) are injected into the fake Prometheus, as a live loop would meet them;
* a new desired count reaches the engine ``actuation_delay_s`` later (API server, the
  Deployment controller, the scheduler); new replicas then pay the profile's cold start.
  With a GPU quota, replicas beyond it stay pending: they neither serve nor cost.

At equal times the order is: actuation, scrape, decision (a decision at t=60 s sees the
scrape taken at t=60 s).

Start: every policy starts with the same ready fleet, by default what the hindsight
baseline would ask for at t=0 (the peak true rate over its first look-ahead window divided
by the capacity at the SLO, within [minReplicas, maxReplicas]): a service that has been
running before the trace starts is already sized for it, and no policy is charged for a
start-up transient it did not cause. The ``static`` policy starts at its own fixed count
instead, because a fixed deployment has no transient at all.

The module is split as set-up (``set_up``: validation, engine choice, initial fleet), loop
(``run_loop``) and summary (``summarize``); ``replay`` chains the three.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoscaler.core import decide as core_decide
from autoscaler.core.policies.common import replicas_for_rate
from autoscaler.core.safety import guard
from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.core.types import Decision, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.sim import bound as bnd
from autoscaler.sim.fleet import Engine, gpu_seconds, provisioned_stats
from autoscaler.sim.fluid_engine import FluidEngine, token_means_per_tick
from autoscaler.sim.hindsight import Foresight, decide_with
from autoscaler.sim.observe import FakePrometheus, Fault
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.sim.request_engine import RequestEngine
from autoscaler.sim.result import ReplayResult, ReplaySummary, Timeline
from autoscaler.sim.scoring import Scored, attainment, hourly, per_bin, weighted_quantile
from autoscaler.traces.model import REQUEST_ENGINE_BYTES_PER_REQUEST, FloatArray, IntArray, Trace

DecideFn = Callable[[Snapshot, State, Spec, float], tuple[Decision, State]]

REQUEST_ENGINE_MAX_REQUESTS = 2_000_000
"""``engine="auto"`` simulates request-level traces up to this size request by request."""
MEMORY_HEADROOM = 0.8
"""The request engine is refused when its estimate exceeds this share of available memory."""
MAX_TIMELINE_POINTS = 5000


def _available_bytes() -> float | None:
    """MemAvailable from /proc/meminfo (Linux), else None (no check)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        return None
    return None


def check_memory(requests: float, available: float | None = None) -> None:
    """Refuse the request engine up front when it would not fit in memory (one line)."""
    avail = _available_bytes() if available is None else available
    need = requests * REQUEST_ENGINE_BYTES_PER_REQUEST
    if avail is not None and need > MEMORY_HEADROOM * avail:
        raise SpecError(
            "--engine", "request",
            f"an engine that fits in memory: {requests:,.0f} requests need about "
            f"{need / 1e9:.1f} GB at {REQUEST_ENGINE_BYTES_PER_REQUEST} B each, "
            f"{avail / 1e9:.1f} GB is available; use --engine fluid (or auto), or replay a "
            f"shorter window")


def _outside_gaps(times: FloatArray, gaps: Sequence[tuple[float, float]]) -> FloatArray:
    keep = np.ones(len(times), dtype=bool)
    for g0, g1 in gaps:
        keep &= ~((times >= g0) & (times < g1))
    return np.asarray(keep, dtype=np.float64)


def _poisson_requests(trace: Trace, seed: int) -> tuple[FloatArray, IntArray, IntArray]:
    """Request-level arrivals for a rate-level trace: a Poisson process whose rate is
    piecewise constant per source bin; every request has the mean token counts."""
    assert trace.rates_rps is not None and trace.resolution_s is not None
    rng = np.random.default_rng(seed)
    res = trace.resolution_s
    counts = rng.poisson(trace.rates_rps * res)
    starts = np.repeat(np.arange(len(counts)) * res, counts)
    arr = np.sort(starts + rng.uniform(0.0, res, size=len(starts)))
    arr = arr[arr < trace.duration_s]
    n = len(arr)
    mix = trace.token_mix
    return (arr, np.full(n, round(mix.mean_prompt_tokens), dtype=np.int64),
            np.full(n, round(mix.mean_output_tokens), dtype=np.int64))


def lead_time_s(spec: Spec, profile: ReplicaProfile, actuation_delay_s: float) -> float:
    """Longest time from a decision until the replicas asked at the next one can serve."""
    return (profile.cold_start_s + profile.cold_start_jitter_s + spec.sync_period_s
            + actuation_delay_s)


def initial_fleet(trace: Trace, spec: Spec, profile: ReplicaProfile,
                  actuation_delay_s: float) -> int:
    """The documented default start: see the module docstring."""
    if spec.policy == PolicyKind.STATIC:
        return spec.static_replicas if spec.static_replicas is not None else spec.max_replicas
    peak = max(Foresight.of(trace, lead_time_s(spec, profile, actuation_delay_s),
                            profile).rates(0.0))
    n = replicas_for_rate(peak, spec.capacity.requests_per_second)
    return min(spec.max_replicas, max(spec.min_replicas, n))


# --- set-up ---------------------------------------------------------------------------

@dataclass
class Setup:
    """Everything the loop and the summary need, validated."""

    engine: Engine
    request: RequestEngine | None
    fluid: FluidEngine | None
    start: int
    """Desired replicas at t=0 (what the policy believes it runs)."""
    duration_s: float
    gpu_quota: int | None
    prompts: FloatArray | None = None
    """Prompt tokens per request (request engine)."""
    fluid_objective_s: float | FloatArray = math.nan
    """TTFT objective of each tick's mean prompt (fluid engine), seconds."""
    fluid_prefill_s: float | FloatArray = math.nan
    """Prefill work of each tick's mean prompt (fluid engine), seconds."""


def _validate(engine: str, scrape_interval_s: float, rate_window_s: float,
              actuation_delay_s: float, gpu_quota: int | None) -> None:
    if engine not in ("auto", "request", "fluid"):
        raise SpecError("engine", engine, "auto, request or fluid")
    for name, v in (("scrapeIntervalSeconds", scrape_interval_s),
                    ("rateWindowSeconds", rate_window_s)):
        if not (isinstance(v, int | float) and 0 < v <= 86400):
            raise SpecError(name, v, "> 0 and <= 86400")
    if not 0 <= actuation_delay_s <= 3600:
        raise SpecError("actuationDelaySeconds", actuation_delay_s, ">= 0 and <= 3600")
    if gpu_quota is not None and not (isinstance(gpu_quota, int) and gpu_quota >= 0):
        raise SpecError("--gpu-quota", gpu_quota, "an integer >= 0 (replicas)")


def _request_arrays(trace: Trace, seed: int) -> tuple[FloatArray, IntArray, IntArray]:
    if trace.is_request_level:
        assert trace.arrivals_s is not None
        arr = trace.arrivals_s
        pt = (trace.prompt_tokens if trace.prompt_tokens is not None
              else np.full(len(arr), round(trace.token_mix.mean_prompt_tokens)))
        ot = (trace.output_tokens if trace.output_tokens is not None
              else np.full(len(arr), round(trace.token_mix.mean_output_tokens)))
    else:
        arr, pt, ot = _poisson_requests(trace, seed)
    if trace.gaps:  # no arrivals inside a collection gap
        keep = _outside_gaps(arr, trace.gaps) > 0
        arr, pt, ot = arr[keep], pt[keep], ot[keep]
    return arr, np.asarray(pt, dtype=np.int64), np.asarray(ot, dtype=np.int64)


def set_up(trace: Trace, spec: Spec, profile: ReplicaProfile, *, engine: str = "auto",
           seed: int = 0, initial_replicas: int | None = None, scrape_interval_s: float = 15.0,
           rate_window_s: float = 60.0, actuation_delay_s: float = 2.0,
           gpu_quota: int | None = None) -> Setup:
    """Validate the options, choose and build the engine, and place the initial fleet."""
    _validate(engine, scrape_interval_s, rate_window_s, actuation_delay_s, gpu_quota)
    if engine == "auto":
        engine = ("request" if trace.is_request_level
                  and trace.request_count <= REQUEST_ENGINE_MAX_REQUESTS else "fluid")
    start = (initial_fleet(trace, spec, profile, actuation_delay_s)
             if initial_replicas is None else initial_replicas)
    if not 0 <= start <= spec.max_replicas:
        raise SpecError("initialReplicas", start, f">= 0 and <= maxReplicas "
                        f"({spec.max_replicas})")
    running = start if gpu_quota is None else min(start, gpu_quota)
    duration = float(trace.duration_s)
    if engine == "request":
        check_memory(trace.request_count)
        arr, pt, ot = _request_arrays(trace, seed)
        req = RequestEngine(profile, arr, pt, ot, initial_replicas=running, seed=seed)
        return Setup(req, req, None, start, duration, gpu_quota,
                     prompts=pt.astype(np.float64))
    rates = trace.binned_rates(1.0)
    if trace.gaps:
        rates = rates * _outside_gaps(np.arange(len(rates), dtype=np.float64), trace.gaps)
    p_mean, o_mean = token_means_per_tick(trace, len(rates))
    # ttft_objective for every tick's mean prompt at once (the same arithmetic, vectorised)
    objective = (spec.slo.ttft_seconds
                 + spec.slo.ttft_seconds_per_prompt_token * np.maximum(0.0, p_mean))
    fl = FluidEngine(profile, rates, prompt_tokens=p_mean, output_tokens=o_mean,
                     slo_ttft_s=objective, initial_replicas=running, seed=seed)
    return Setup(fl, None, fl, start, duration, gpu_quota, fluid_objective_s=objective,
                 fluid_prefill_s=np.asarray(p_mean, dtype=np.float64)
                 * profile.step_per_prefill_token_s)


# --- loop -----------------------------------------------------------------------------

@dataclass
class LoopOutcome:
    scale_events: int = 0
    scale_times: list[float] = field(default_factory=list)
    """When each scale event was actuated (seconds since the trace start)."""
    decisions: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    points: list[tuple[float, int, int, int, float]] = field(default_factory=list)
    """(t, desired, ready, provisioned, queue) at every scrape."""
    max_pending: int = 0
    """Most replicas held pending by the GPU quota at once."""


def run_loop(setup: Setup, spec: Spec, decide: DecideFn, *, scrape_interval_s: float,
             rate_window_s: float, actuation_delay_s: float,
             metrics_outage: Sequence[tuple[float, float]] = (),
             faults: Sequence[Fault] = (), preset: str = "vllm",
             on_decision: Callable[[float, Snapshot, Decision], None] | None = None,
             progress: bool = False) -> LoopOutcome:
    """The event loop: actuation, scrape, decision, in that order at equal times."""
    eng, duration, quota = setup.engine, setup.duration_s, setup.gpu_quota
    prom = FakePrometheus(preset=preset, rate_window_s=rate_window_s,
                          outages=metrics_outage, faults=faults)
    out = LoopOutcome()
    state = State()
    failures = 0
    """Consecutive invalid decisions (the live loop's ``Memory.failures``)."""
    desired = actuated = setup.start
    pending: deque[tuple[float, int]] = deque()
    t_scrape, t_dec = scrape_interval_s, spec.sync_period_s
    bar = _progress_bar(duration, spec, progress)
    while True:
        t = min(t_scrape, t_dec, pending[0][0] if pending else math.inf)
        if t > duration:
            break
        eng.advance(t)
        while pending and pending[0][0] <= t:
            _, n = pending.popleft()
            running = n if quota is None else min(n, quota)
            out.max_pending = max(out.max_pending, n - running)
            eng.set_target(running, t)
            if n != actuated:
                out.scale_events += 1
                out.scale_times.append(t)
                actuated = n
        if t_scrape <= t:
            sample = eng.sample(t)
            prom.scrape(sample)
            out.points.append((t, desired, eng.ready_count(), eng.provisioned_count(),
                               sample.waiting))
            t_scrape += scrape_interval_s
        if t_dec <= t:
            ready = eng.ready_count()
            # The judged snapshot, lower bounds included (as the live loop builds it).
            snap = prom.snapshot(t, desired, ready)
            decision, state = decide(snap, state, spec, t)
            if on_decision is not None:
                on_decision(t, snap, decision)
            # The live loop's safety rules (``_after_decide``): hold on invalid data, and
            # raise to the fallback after N invalid cycles; never lower.
            guarded = guard(decision, current=desired, failures=failures,
                            fallback=spec.fallback, max_replicas=spec.max_replicas)
            failures = guarded.failures
            out.decisions += 1
            key = str(guarded.reason)
            out.reasons[key] = out.reasons.get(key, 0) + 1
            if guarded.replicas != desired:
                desired = guarded.replicas
                pending.append((t + actuation_delay_s, desired))
            t_dec += spec.sync_period_s
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    eng.advance(duration)
    return out


def _progress_bar(duration: float, spec: Spec, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=int(duration // spec.sync_period_s), file=sys.stderr,
                desc=f"replay {spec.policy}", unit="decision")


# --- summary --------------------------------------------------------------------------

def _scored_requests(setup: Setup, spec: Spec) -> tuple[Scored, bnd.Items]:
    """Per-request outcomes of the request engine, and the bound's items."""
    req = setup.request
    assert req is not None and setup.prompts is not None
    objective = spec.slo.ttft_seconds + spec.slo.ttft_seconds_per_prompt_token * setup.prompts
    # Give the last arrivals their objective's time to get a first token; GPU time is
    # already counted up to the trace end.
    req.advance(setup.duration_s + float(objective.max(initial=0.0)))
    req.finish()
    arr, ttft = req.arrivals, req.ttft
    ok = (ttft <= objective).astype(np.float64)
    scored = Scored(time_s=arr, weight=np.ones(len(arr)), met=ok, ttft_s=ttft)
    prof = req.profile
    items = bnd.request_items(arr, setup.prompts, objective, prof.prefill_tokens_per_s,
                              step_base_s=prof.step_base_s,
                              max_num_batched_tokens=prof.max_num_batched_tokens)
    return scored, items


def _scored_fluid(setup: Setup) -> tuple[Scored, bnd.Items]:
    fl = setup.fluid
    assert fl is not None
    n = len(fl.arrivals)
    scored = Scored(time_s=np.arange(n, dtype=np.float64) * fl.tick_s, weight=fl.arrivals,
                    met=fl.met, ttft_s=fl.ttft)
    # The bound needs each tick's own capacity where the engine's varies with the token mix
    # over time (a mean would overstate the work of a tick with short requests).
    mu = np.asarray(getattr(fl, "_mu", fl.capacity_rps), dtype=np.float64)
    if mu.size not in (1, n):  # unknown layout: the largest capacity keeps it a lower bound
        mu = np.full(n, float(mu.max()))
    items = bnd.fluid_items(fl.arrivals, fl.tick_s, mu, setup.fluid_prefill_s,
                            setup.fluid_objective_s)
    return scored, items


def _timeline(trace: Trace, setup: Setup, loop: LoopOutcome, scored: Scored) -> Timeline:
    duration = setup.duration_s
    bin_s = 60.0
    if duration / bin_s > MAX_TIMELINE_POINTS:
        bin_s = 60.0 * math.ceil(duration / MAX_TIMELINE_POINTS / 60.0)
    nb = max(1, math.ceil(duration / bin_s - 1e-9))
    _, bin_att, bin_p95 = per_bin(scored, bin_s, nb)
    # A row at t = -inf holds the start values for bins before the first scrape.
    s = setup.start
    arrays = np.vstack(([[-math.inf, s, s, s, 0.0]],
                        np.asarray(loop.points, dtype=np.float64).reshape(-1, 5)))
    ends = np.minimum((np.arange(nb) + 1) * bin_s, duration)
    k = np.searchsorted(arrays[:, 0], ends + 1e-9, side="right") - 1

    def col(j: int) -> FloatArray:
        return np.asarray(arrays[k, j], dtype=np.float64)

    rates = trace.binned_rates(bin_s)[:nb]
    if trace.gaps:
        rates = np.where(_outside_gaps(np.arange(nb, dtype=np.float64) * bin_s, trace.gaps) > 0,
                         rates, np.nan)
    return Timeline(
        t_s=np.arange(nb, dtype=np.float64) * bin_s, arrival_rps=rates,
        desired_replicas=col(1), ready_replicas=col(2), provisioned_replicas=col(3),
        ttft_p95_s=np.asarray(bin_p95, dtype=np.float64), queue_depth=col(4),
        attainment=np.asarray(bin_att, dtype=np.float64),
    )


def _part_items(items: bnd.Items, keep: Any, t0: float) -> bnd.Items:
    """The bound's items of the scored part, their arrivals re-based to its start."""
    return bnd.Items(arrival_s=items.arrival_s[keep] - t0, count=items.count[keep],
                     work_s=np.broadcast_to(items.work_s, items.count.shape)[keep],
                     deadline_s=np.broadcast_to(items.deadline_s, items.count.shape)[keep],
                     impossible=items.impossible[keep])


def summarize(trace: Trace, spec: Spec, profile: ReplicaProfile, setup: Setup,
              loop: LoopOutcome, score_from_s: float = 0.0) -> ReplayResult:
    """Per-engine scores, GPU accounting, churn, per-hour attainment and the bound, over the
    scored part [score_from_s, end) (see ``replay``); the timeline covers the whole trace."""
    duration = setup.duration_s
    t0 = min(max(0.0, score_from_s), duration)
    span = duration - t0
    records = setup.engine.records()
    gpus = profile.gpus_per_replica
    gpu_hours = gpu_seconds(records, duration, gpus, t0) / 3600.0
    mean_rep, max_rep = provisioned_stats(records, duration, t0)
    if setup.request is not None:
        whole, items = _scored_requests(setup, spec)
    else:
        whole, items = _scored_fluid(setup)
    scored = whole
    if t0 > 0:
        keep = whole.time_s >= t0
        scored = Scored(time_s=whole.time_s[keep] - t0, weight=whole.weight[keep],
                        met=whole.met[keep], ttft_s=whole.ttft_s[keep])
        items = _part_items(items, items.arrival_s >= t0, t0)
    gaps = tuple((max(0.0, g0 - t0), g1 - t0) for g0, g1 in trace.gaps if g1 > t0)
    att = attainment(scored)
    qs = [weighted_quantile(scored.ttft_s, scored.weight, q) for q in (0.5, 0.95, 0.99)]
    worst, share, hours = hourly(scored, span, spec.slo.target_attainment, gaps)
    # A start is counted in the part it was asked for in; its cold start's GPU time in the
    # part it was spent in (a replica asked for 30 s before the cut and ready 60 s after it
    # adds 60 s to the part's cold-start GPU time, and no start).
    starts = [r for r in records if r.requested_at > 0.0 and r.requested_at >= t0]
    cold_s = sum(max(0.0, min(r.ready_at, duration,
                              math.inf if r.ended_at is None else r.ended_at)
                     - max(r.requested_at, t0))
                 for r in records if r.requested_at > 0.0)
    floor = bnd.floor_of(spec.min_replicas, setup.start, setup.gpu_quota)
    bound = bnd.gpu_hours_lower_bound(items, duration_s=span, floor_replicas=floor,
                                      gpus_per_replica=gpus, attainment=att,
                                      cold_start_s=profile.cold_start_s)
    at_start = setup.start
    for t, desired, *_ in loop.points:
        if t > t0:
            break
        at_start = desired
    summary = ReplaySummary(
        policy=str(PolicyKind(spec.policy).value), slo_attainment=att, gpu_hours=gpu_hours,
        ttft_p50_s=float(qs[0]), ttft_p95_s=float(qs[1]), ttft_p99_s=float(qs[2]),
        scale_events=sum(1 for t in loop.scale_times if t >= t0), mean_replicas=mean_rep,
        max_replicas=max_rep,
        requests=float(scored.weight.sum()), engine=setup.engine.name,
        gpu_cost=None if profile.gpu_hour_cost is None else gpu_hours * profile.gpu_hour_cost,
        initial_replicas=at_start,
        replica_starts=len(starts),
        replica_starts_per_day=len(starts) / (span / 86400.0) if span > 0 else 0.0,
        cold_start_gpu_hours=cold_s * gpus / 3600.0,
        worst_hour_attainment=worst, hours_meeting_target=share, hours_scored=hours,
        bound_gpu_hours=bound, max_pending=loop.max_pending, scored_from_s=t0,
    )
    return ReplayResult(summary=summary, timeline=_timeline(trace, setup, loop, whole),
                        reasons=loop.reasons, decisions=loop.decisions)


def default_decide(trace: Trace, spec: Spec, profile: ReplicaProfile,
                   actuation_delay_s: float) -> DecideFn:
    """The core's decide, or for the ``hindsight`` baseline the one with the trace's
    true future (the only place foresight exists)."""
    if spec.policy == PolicyKind.HINDSIGHT:
        return decide_with(Foresight.of(trace, lead_time_s(spec, profile, actuation_delay_s),
                                        profile))
    return core_decide


def replay(
    trace: Trace,
    spec: Spec,
    profile: ReplicaProfile,
    *,
    engine: str = "auto",
    seed: int = 0,
    initial_replicas: int | None = None,
    scrape_interval_s: float = 15.0,
    rate_window_s: float = 60.0,
    actuation_delay_s: float = 2.0,
    progress: bool = False,
    metrics_outage: Sequence[tuple[float, float]] = (),
    on_decision: Callable[[float, Snapshot, Decision], None] | None = None,
    decide: DecideFn | None = None,
    gpu_quota: int | None = None,
    faults: Sequence[Fault] = (),
    preset: str = "vllm",
    score_from_s: float = 0.0,
) -> ReplayResult:
    """Replay ``trace`` with ``spec``'s policy on replicas of ``profile``.

    ``engine``: ``request`` (every request simulated), ``fluid`` (1 s ticks of rates) or
    ``auto`` (request for request-level traces up to 2,000,000 requests, else fluid).
    ``metrics_outage``: [start, end) windows in which no scrape is stored (the trace's
    collection gaps are added to them).
    ``on_decision``: called with (now, snapshot, decision) after every decision.
    ``decide``: the decision function (default: ``default_decide``), e.g. a fake in tests.
    ``gpu_quota``: at most this many replicas run at once; the rest stay pending, free.
    ``faults``: observation faults injected into the fake Prometheus (``ScrapeGap``,
    ``PodSilent``, ``PrometheusRestart``, ``CounterReset`` from ``autoscaler.sim.observe``).
    ``preset``: the metrics preset the policies' queries follow (which counter the request
    rate reads: first tokens for vLLM, arrivals for TGI).
    ``score_from_s``: score only the part [score_from_s, end): the whole trace is replayed
    (the fleet, the fake Prometheus' history and the policy's state at that time are what
    the part before it left), and attainment, TTFT quantiles, hours, GPU-hours, replicas,
    starts, scale events and the bound count only arrivals, GPU time and events in the
    part. ``tune`` scores its held-out part this way: the tuned policy running on, not a
    restart.
    """
    if not (math.isfinite(score_from_s) and 0 <= score_from_s < trace.duration_s):
        raise SpecError("scoreFromSeconds", score_from_s,
                        f">= 0 and < the trace's duration ({trace.duration_s:g} s)")
    setup = set_up(trace, spec, profile, engine=engine, seed=seed,
                   initial_replicas=initial_replicas, scrape_interval_s=scrape_interval_s,
                   rate_window_s=rate_window_s, actuation_delay_s=actuation_delay_s,
                   gpu_quota=gpu_quota)
    fn = decide if decide is not None else default_decide(trace, spec, profile,
                                                          actuation_delay_s)
    loop = run_loop(setup, spec, fn, scrape_interval_s=scrape_interval_s,
                    rate_window_s=rate_window_s, actuation_delay_s=actuation_delay_s,
                    metrics_outage=(*metrics_outage, *trace.gaps), faults=faults,
                    preset=preset, on_decision=on_decision, progress=progress)
    return summarize(trace, spec, profile, setup, loop, score_from_s)
