"""Replay a trace against one autoscaler spec: the simulator's entry point.

The loop is the live controller's loop with the cluster replaced by an engine:

* every ``scrape_interval_s`` the fake Prometheus scrapes the engine (unless an outage
  hides it);
* every ``spec.sync_period_s`` the snapshot is built from Prometheus queries only and the
  very same ``autoscaler.core.decide`` the live controller uses is called; its ``State`` is
  kept for the next step. A decision with ``valid=False`` changes nothing;
* a new desired count reaches the engine ``actuation_delay_s`` later (API server, the
  Deployment controller, the scheduler); new replicas then pay the profile's cold start.

At equal times the order is: actuation, scrape, decision (a decision at t=60 s sees the
scrape taken at t=60 s).

Start: every policy starts with the same ready fleet, by default what the oracle would
ask for at t=0 (the peak true rate over its first look-ahead window divided by the
capacity at the SLO, within [minReplicas, maxReplicas]): a service that has been running
before the trace starts is already sized for it, and no policy is charged for a start-up
transient it did not cause. The ``static`` policy starts at its own fixed count instead,
because a fixed deployment has no transient at all.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from autoscaler.core import decide
from autoscaler.core.policies.common import replicas_for_rate
from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.core.types import Decision, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.sim.fleet import Engine, gpu_seconds, provisioned_stats
from autoscaler.sim.fluid_engine import FluidEngine, token_means_per_tick
from autoscaler.sim.observe import FakePrometheus
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.sim.request_engine import RequestEngine
from autoscaler.sim.result import ReplayResult, ReplaySummary, Timeline
from autoscaler.traces.model import FloatArray, IntArray, Trace

REQUEST_ENGINE_MAX_REQUESTS = 2_000_000
"""``engine="auto"`` simulates request-level traces up to this size request by request."""
ORACLE_RESOLUTION_S = 1.0
"""Bin width of the true future rates handed to the oracle (seconds).

One second, so that the oracle sees bursts: with 15-s means the Azure code trace x5 (one-second
spikes of ~300 req/s) kept the oracle's SLO attainment at 77%, and the oracle must be the
bound every policy is measured against (see ``replicas_for_window``)."""

MAX_TIMELINE_POINTS = 5000


def _cumulative(trace: Trace) -> Callable[[FloatArray], FloatArray]:
    """C(t): true arrivals in [0, t), for any array of times."""
    if trace.arrivals_s is not None:
        arr = trace.arrivals_s

        def cum_req(t: FloatArray) -> FloatArray:
            return np.asarray(np.searchsorted(arr, t, side="left"), dtype=np.float64)

        return cum_req
    assert trace.rates_rps is not None and trace.resolution_s is not None
    edges = np.arange(len(trace.rates_rps) + 1) * trace.resolution_s
    cum = np.concatenate(([0.0], np.cumsum(trace.rates_rps * trace.resolution_s)))

    def cum_rate(t: FloatArray) -> FloatArray:
        return np.interp(t, edges, cum)

    return cum_rate


def _future_rates(cum: Callable[[FloatArray], FloatArray], now: float, horizon_s: float,
                  res: float) -> tuple[float, ...]:
    n = max(1, math.ceil(horizon_s / res - 1e-9))
    c = cum(now + np.arange(n + 1, dtype=np.float64) * res)
    return tuple((np.diff(c) / res).tolist())


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


def _weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    total = float(weights.sum())
    if total <= 0:
        return math.nan
    order = np.argsort(values, kind="stable")
    cw = np.cumsum(weights[order])
    i = int(np.searchsorted(cw, q * total, side="left"))
    return float(values[order][min(i, len(values) - 1)])


def initial_fleet(trace: Trace, spec: Spec, profile: ReplicaProfile,
                  actuation_delay_s: float) -> int:
    """The documented default start: see the module docstring."""
    if spec.policy == PolicyKind.STATIC:
        return spec.static_replicas if spec.static_replicas is not None else spec.max_replicas
    horizon = (profile.cold_start_s + profile.cold_start_jitter_s + spec.sync_period_s
               + actuation_delay_s)
    peak = max(_future_rates(_cumulative(trace), 0.0, horizon, ORACLE_RESOLUTION_S))
    n = replicas_for_rate(peak, spec.capacity.requests_per_second)
    return min(spec.max_replicas, max(spec.min_replicas, n))


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
) -> ReplayResult:
    """Replay ``trace`` with ``spec``'s policy on replicas of ``profile``.

    ``engine``: ``request`` (every request simulated), ``fluid`` (1 s ticks of rates) or
    ``auto`` (request for request-level traces up to 2,000,000 requests, else fluid).
    ``metrics_outage``: [start, end) windows in which no scrape is stored.
    ``on_decision``: called with (now, snapshot, decision) after every decision, e.g. to
    keep a decision log that explains each step.
    """
    if engine not in ("auto", "request", "fluid"):
        raise SpecError("engine", engine, "auto, request or fluid")
    for name, v in (("scrapeIntervalSeconds", scrape_interval_s),
                    ("rateWindowSeconds", rate_window_s)):
        if not (isinstance(v, int | float) and 0 < v <= 86400):
            raise SpecError(name, v, "> 0 and <= 86400")
    if not 0 <= actuation_delay_s <= 3600:
        raise SpecError("actuationDelaySeconds", actuation_delay_s, ">= 0 and <= 3600")
    if engine == "auto":
        engine = ("request" if trace.is_request_level
                  and trace.request_count <= REQUEST_ENGINE_MAX_REQUESTS else "fluid")
    start = (initial_fleet(trace, spec, profile, actuation_delay_s)
             if initial_replicas is None else initial_replicas)
    if not 0 <= start <= spec.max_replicas:
        raise SpecError("initialReplicas", start, f">= 0 and <= maxReplicas "
                        f"({spec.max_replicas})")
    duration = float(trace.duration_s)
    slo = spec.slo.ttft_seconds

    eng: Engine
    req_eng: RequestEngine | None = None
    fl_eng: FluidEngine | None = None
    if engine == "request":
        if trace.is_request_level:
            assert trace.arrivals_s is not None
            arr = trace.arrivals_s
            pt = (trace.prompt_tokens if trace.prompt_tokens is not None
                  else np.full(len(arr), round(trace.token_mix.mean_prompt_tokens)))
            ot = (trace.output_tokens if trace.output_tokens is not None
                  else np.full(len(arr), round(trace.token_mix.mean_output_tokens)))
        else:
            arr, pt, ot = _poisson_requests(trace, seed)
        req_eng = RequestEngine(profile, arr, pt, ot, initial_replicas=start, seed=seed)
        eng = req_eng
    else:
        rates = trace.binned_rates(1.0)
        p_mean, o_mean = token_means_per_tick(trace, len(rates))
        fl_eng = FluidEngine(profile, rates, prompt_tokens=p_mean,
                             output_tokens=o_mean, slo_ttft_s=slo, initial_replicas=start,
                             seed=seed)
        eng = fl_eng

    prom = FakePrometheus(rate_window_s=rate_window_s, outages=metrics_outage)
    cum = _cumulative(trace)
    oracle = spec.policy == PolicyKind.ORACLE
    horizon = (profile.cold_start_s + profile.cold_start_jitter_s + spec.sync_period_s
               + actuation_delay_s)
    state = State()
    desired = actuated = start
    scale_events = decisions = 0
    reasons: dict[str, int] = {}
    pending: deque[tuple[float, int]] = deque()
    t_scrape, t_dec = scrape_interval_s, spec.sync_period_s
    pts: list[tuple[float, int, int, int, float]] = []  # t, desired, ready, provisioned, queue

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(duration // spec.sync_period_s), file=sys.stderr,
                   desc=f"replay {spec.policy}", unit="decision")
    while True:
        t = min(t_scrape, t_dec, pending[0][0] if pending else math.inf)
        if t > duration:
            break
        eng.advance(t)
        while pending and pending[0][0] <= t:
            _, n = pending.popleft()
            eng.set_target(n, t)
            if n != actuated:
                scale_events += 1
                actuated = n
        if t_scrape <= t:
            sample = eng.sample(t)
            prom.scrape(sample)
            pts.append((t, desired, eng.ready_count(), eng.provisioned_count(), sample.waiting))
            t_scrape += scrape_interval_s
        if t_dec <= t:
            snap = Snapshot(
                current_replicas=desired, ready_replicas=eng.ready_count(),
                metrics=prom.query(t),
                future_rates=_future_rates(cum, t, horizon, ORACLE_RESOLUTION_S)
                if oracle else None,
                future_resolution_s=ORACLE_RESOLUTION_S,
            )
            decision, state = decide(snap, state, spec, t)
            if on_decision is not None:
                on_decision(t, snap, decision)
            decisions += 1
            reasons[str(decision.reason)] = reasons.get(str(decision.reason), 0) + 1
            if decision.valid and decision.replicas != desired:
                desired = decision.replicas
                pending.append((t + actuation_delay_s, desired))
            t_dec += spec.sync_period_s
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

    eng.advance(duration)
    records = eng.records()
    gpu_s = gpu_seconds(records, duration, profile.gpus_per_replica)
    mean_rep, max_rep = provisioned_stats(records, duration)

    bin_s = 60.0
    if duration / bin_s > MAX_TIMELINE_POINTS:
        bin_s = 60.0 * math.ceil(duration / MAX_TIMELINE_POINTS / 60.0)
    nb = max(1, math.ceil(duration / bin_s - 1e-9))
    if req_eng is not None:
        # Give the last arrivals the SLO's time to get their first token; GPU time is
        # already counted up to the trace end.
        req_eng.advance(duration + slo)
        req_eng.finish()
        arr_all = req_eng.arrivals
        ttft = req_eng.ttft
        ok = ttft <= slo
        n_req = float(len(ttft))
        attain = float(ok.mean()) if len(ttft) else 1.0
        qs = (np.quantile(ttft, [0.5, 0.95, 0.99], method="inverted_cdf").tolist()
              if len(ttft) else [math.nan] * 3)
        b = np.minimum((arr_all // bin_s).astype(np.int64), nb - 1)
        cnt = np.bincount(b, minlength=nb).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            bin_att = np.bincount(b, weights=ok.astype(np.float64), minlength=nb) / cnt
        bin_p95 = np.full(nb, math.nan)
        order = np.lexsort((ttft, b))
        starts = np.concatenate(([0], np.cumsum(cnt)[:-1])).astype(np.int64)
        has = cnt > 0
        pos = starts[has] + np.ceil(0.95 * cnt[has]).astype(np.int64) - 1
        bin_p95[has] = ttft[order][pos]
    else:
        assert fl_eng is not None
        w = fl_eng.arrivals
        n_req = float(w.sum())
        attain = float(np.dot(w, fl_eng.met) / n_req) if n_req > 0 else 1.0
        qs = [_weighted_quantile(fl_eng.ttft, w, q) for q in (0.5, 0.95, 0.99)]
        per = round(bin_s / fl_eng.tick_s)
        pad = nb * per - len(w)
        wp = np.concatenate((w, np.zeros(max(0, pad))))[: nb * per].reshape(nb, per)
        tp = np.concatenate((fl_eng.ttft, np.full(max(0, pad), math.inf)))[
            : nb * per].reshape(nb, per)
        mp = np.concatenate((fl_eng.met, np.zeros(max(0, pad))))[: nb * per].reshape(nb, per)
        tot = wp.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            bin_att = (wp * mp).sum(axis=1) / tot
        order = np.argsort(tp, axis=1, kind="stable")
        cw = np.cumsum(np.take_along_axis(wp, order, axis=1), axis=1)
        idx = np.minimum((cw < 0.95 * tot[:, None]).sum(axis=1), per - 1)
        bin_p95 = np.take_along_axis(np.take_along_axis(tp, order, axis=1), idx[:, None],
                                     axis=1)[:, 0]
        bin_p95[tot <= 0] = math.nan
        bin_att[tot <= 0] = math.nan

    # A row at t = -inf holds the start values for bins before the first scrape.
    arrays = np.vstack(([[-math.inf, start, start, start, 0.0]],
                        np.asarray(pts, dtype=np.float64).reshape(-1, 5)))
    ends = np.minimum((np.arange(nb) + 1) * bin_s, duration)
    k = np.searchsorted(arrays[:, 0], ends + 1e-9, side="right") - 1

    def col(j: int) -> FloatArray:
        return np.asarray(arrays[k, j], dtype=np.float64)

    timeline = Timeline(
        t_s=np.arange(nb, dtype=np.float64) * bin_s, arrival_rps=trace.binned_rates(bin_s)[:nb],
        desired_replicas=col(1), ready_replicas=col(2), provisioned_replicas=col(3),
        ttft_p95_s=np.asarray(bin_p95, dtype=np.float64), queue_depth=col(4),
        attainment=np.asarray(bin_att, dtype=np.float64),
    )
    gpu_hours = gpu_s / 3600.0
    summary = ReplaySummary(
        policy=str(PolicyKind(spec.policy).value), slo_attainment=attain, gpu_hours=gpu_hours,
        ttft_p50_s=float(qs[0]), ttft_p95_s=float(qs[1]), ttft_p99_s=float(qs[2]),
        scale_events=scale_events, mean_replicas=mean_rep, max_replicas=max_rep,
        requests=n_req, engine=engine,
        gpu_cost=None if profile.gpu_hour_cost is None else gpu_hours * profile.gpu_hour_cost,
        initial_replicas=start,
    )
    return ReplayResult(summary=summary, timeline=timeline, reasons=reasons,
                        decisions=decisions)
