"""Compare policies on one trace: build each policy's spec from the replica profile, replay,
collect the results. The CLI, the report and the benchmarks all go through here.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from autoscaler.core import defaults
from autoscaler.core.spec import (
    Capacity,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    Spec,
    default_behavior,
)
from autoscaler.core.types import Decision, Signal, Snapshot
from autoscaler.errors import SpecError
from autoscaler.sim import bound
from autoscaler.sim.calibrate import MAX_SAMPLES as CALIBRATION_SAMPLES
from autoscaler.sim.calibrate import capacity_at_slo
from autoscaler.sim.observe import Fault
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.sim.replay import DecideFn, check_memory, default_decide, replay
from autoscaler.sim.result import ReplayResult
from autoscaler.traces.model import Trace
from autoscaler.traces.stats import collection_gap_count, interarrival_cv

DEFAULT_POLICIES: tuple[PolicyKind, ...] = (
    PolicyKind.HPA, PolicyKind.HPA_QUEUE, PolicyKind.HPA_KV, PolicyKind.KEDA, PolicyKind.KPA,
    PolicyKind.WVA, PolicyKind.PREDICTIVE, PolicyKind.HINDSIGHT, PolicyKind.STATIC)
BASELINES: tuple[PolicyKind, ...] = (
    PolicyKind.HPA, PolicyKind.HPA_QUEUE, PolicyKind.HPA_KV, PolicyKind.KEDA, PolicyKind.KPA,
    PolicyKind.WVA)
"""The autoscalers users run, each at its documented default target."""

HPA_DEFAULT_UTILIZATION = 0.7
"""The replay's default HPA: an External ``request_rate`` metric with an AverageValue target of
70% of one replica's rate at the SLO (the usual "target 70%" a team starts from).

Why request rate and not in-flight requests: in-flight requests per replica grow steeply
(convexly) with load, because a bigger batch also makes every decode step slower. With the
8B profile one replica holds ~149 requests in flight at its SLO rate but only ~3 at a fifth of
it, so an HPA on concurrency sees an over-provisioned fleet as almost idle, scales it down to
one replica, overloads it, and flaps (measured: 130 scale events in 4 h on the demo workload).
Request rate is linear in load, which is the HPA's best case; comparing against it is fair."""

REPLAY_KPA_METRIC = "rps"
"""The replay's KPA uses Knative's ``rps`` metric, not the spec default
(``defaults.KPA_METRIC``, Knative's own default ``concurrency``): in-flight requests grow
convexly with load on an LLM replica (see ``HPA_DEFAULT_UTILIZATION``), and a KPA on
concurrency with the capacity-derived target flaps between one replica and panic (measured
on the demo workload: 288 scale events in 4 h and 65% attainment). The KPA also runs at
Knative's own 2-s tick (``defaults.KPA_TICK_S``) on metrics it scrapes from its
queue-proxies, not from Prometheus, so the comparison is fair to it."""


DAY_S = 86_400.0
SHORT_TRACE_PEAK_FACTOR = 4.0
"""A trace shorter than a day has not shown the day's busiest minute, so the default
``maxReplicas`` leaves room for 4x its own: the hourly peak-to-trough swing of the shared
diurnal traces (``../shared/traces/SOURCES.md``: NASA July 1995, 19 to 76 requests/min by
hour, 4x; ServeGen language, 47k to 100k/min, 2.1x, its busiest window 3.3x the median).
Without it a one-hour trace needing 3 replicas capped the fleet, and the spec tune emits
from it, at 8."""


def default_max_replicas(trace: Trace, capacity: Capacity) -> int:
    """``maxReplicas`` when none is given: twice the replicas the busiest minute needs, plus
    2, with the busiest minute taken x ``SHORT_TRACE_PEAK_FACTOR`` for a trace shorter
    than a day. Worked, 1 replica = 10 req/s, busiest minute 25 req/s: a week-long trace
    2 x 3 + 2 = 8; a one-hour trace 2 x ceil(4 x 2.5) + 2 = 22."""
    needs = peak_rate(trace) / capacity.requests_per_second
    if trace.duration_s < DAY_S:
        needs *= SHORT_TRACE_PEAK_FACTOR
    return 2 * max(1, math.ceil(needs - 1e-9)) + 2


@dataclass(frozen=True)
class ReplayOptions:
    """Knobs shared by every policy in one comparison (units in the names)."""

    slo_ttft_s: float = 2.0
    slo_ttft_s_per_prompt_token: float = 0.0
    """Extra TTFT objective per prompt token (seconds/token); see ``SLO``."""
    gpu_quota: int | None = None
    """At most this many replicas run at once (GPUs in the pool / GPUs per replica); None =
    unlimited."""
    cold_start_s: float | None = None
    """None = the profile's cold start."""
    engine: str = "auto"
    seed: int = 0
    min_replicas: int = 1
    max_replicas: int | None = None
    """None = ``default_max_replicas``: twice the replicas the trace's busiest minute needs
    at the SLO capacity, plus 2 (that minute x4 for a trace shorter than a day)."""
    progress: bool = False
    faults: tuple[Fault, ...] = ()
    """Observation faults every policy meets (``autoscaler.sim.observe``), e.g. a
    ``PrometheusRestart(at=3600.0)``."""
    overrides: dict[PolicyKind, Spec] = field(default_factory=dict)
    """A full spec for a policy replaces the one built here (``--spec FILE``)."""
    # The loop's timings (``autoscaler replay --scrape-interval/--rate-window/
    # --actuation-delay/--initial-replicas``), for replaying a live setup as it runs, e.g.
    # the time-compressed closed loop of tests/e2e/test_closed_loop_e2e.py.
    scrape_interval_s: float | None = None
    """Seconds between scrapes; None = the smaller of 15 s and the policy's sync period."""
    rate_window_s: float | None = None
    """The ``rate()`` window, seconds; None = the replay's default (60 s)."""
    actuation_delay_s: float | None = None
    """Seconds from a decision to its new pods starting; None = the replay's default."""
    initial_replicas: int | None = None
    """Replicas at the start; None = sized for the trace's first minutes."""
    decide_stage: Callable[[DecideFn], DecideFn] | None = None
    """Wraps each policy's decision function, e.g. ``autoscaler.twin.stock_hpa``'s HPA
    between the decision and the scale (``--via-hpa``)."""
    static_window_s: float | None = None
    """The static fleet is sized for the busiest window of this many seconds, wherever it
    starts (``busiest_rate``); None = the busiest clock-aligned minute (``peak_rate``).
    Comparing replays of one workload sampled two ways (a trace file against its
    reconstruction from 60-s scrapes) needs a window of several samples: see
    ``busiest_rate``."""


@dataclass(frozen=True)
class Comparison:
    trace: Trace
    profile: ReplicaProfile
    capacity: Capacity
    options: ReplayOptions
    specs: dict[PolicyKind, Spec]
    results: dict[PolicyKind, ReplayResult]


def peak_rate(trace: Trace, window_s: float = 60.0) -> float:
    """Highest mean arrival rate over any ``window_s`` bin (requests/s)."""
    res = max(window_s, trace.resolution_s or 0.0)
    rates = trace.binned_rates(res)
    return float(np.max(rates)) if len(rates) else 0.0


def busiest_rate(trace: Trace, window_s: float) -> float:
    """Highest mean arrival rate over any window of ``window_s`` seconds, wherever it
    starts (requests/s): the busiest stretch of the cumulative arrival curve, not of fixed
    bins. A window longer than the trace is the trace's mean.

    Why not the busiest minute for a comparison across samplings: a reconstruction from
    60-s scrapes knows only the requests between scrapes, so its busiest minute depends on
    where the scrapes fall. Measured on the fleet proof's seed-0 day (one noisy minute of
    100.2 req/s, followed by one of 74.3): 100.2 on the grid, 96.8 / 90.3 / 87.3 req/s
    with scrapes 8 / 23 / 30 s off it, 9 or 8 replicas of 12.1 req/s; a whole replica, 11%
    of a static fleet's GPU-hours, from the phase alone. Over a window of W, phase moves
    the mean only through the two partial scrape intervals at its ends, at most
    (scrape / 4W) x the rate step there each: for 300 s and 60-s scrapes, 1/20 of it at
    each end, 1/10 in all, where a single minute can move by half of it (the same day:
    80.0 to 81.7 req/s over six phases, 7 replicas at every one).

    Rate-level traces are piecewise constant, so the maximum of C(t + W) - C(t) sits where
    t or t + W is a bin edge; request-level traces are counted from each arrival on.
    """
    if window_s <= 0:
        raise ValueError("window_s > 0")
    if window_s >= trace.duration_s:
        return trace.request_count / trace.duration_s if trace.duration_s > 0 else 0.0
    if trace.arrivals_s is not None:
        a = np.asarray(trace.arrivals_s, dtype=np.float64)  # sorted (the Trace contract)
        if a.size == 0:
            return 0.0
        inside = np.searchsorted(a, a + window_s, side="left") - np.arange(a.size)
        return float(inside.max()) / window_s
    assert trace.rates_rps is not None and trace.resolution_s is not None
    res = trace.resolution_s
    edges = np.arange(trace.rates_rps.size + 1) * res
    cum = np.concatenate(([0.0], np.cumsum(trace.rates_rps * res)))
    end = min(float(edges[-1]), trace.duration_s)
    starts = np.concatenate((edges, edges - window_s))
    starts = starts[(starts >= 0) & (starts + window_s <= end + 1e-9)]
    if starts.size == 0:
        return float(np.interp(end, edges, cum)) / end if end > 0 else 0.0
    got = np.interp(starts + window_s, edges, cum) - np.interp(starts, edges, cum)
    return float(got.max()) / window_s


def default_specs(
    trace: Trace, profile: ReplicaProfile, capacity: Capacity, options: ReplayOptions
) -> dict[PolicyKind, Spec]:
    """The spec each policy runs with unless overridden."""
    cold = options.cold_start_s if options.cold_start_s is not None else profile.cold_start_s
    static_peak = (peak_rate(trace) if options.static_window_s is None
                   else busiest_rate(trace, options.static_window_s))
    peak_needs = max(1, math.ceil(static_peak / capacity.requests_per_second))
    max_r = options.max_replicas or default_max_replicas(trace, capacity)
    if options.min_replicas > max_r:
        raise SpecError("--min-replicas", options.min_replicas, f"<= max replicas ({max_r})")
    base = Spec(max_replicas=max_r, min_replicas=options.min_replicas, capacity=capacity,
                policy=PolicyKind.STATIC, cold_start_s=cold,
                static_replicas=min(max_r, max(options.min_replicas, peak_needs)))
    base = replace(base, slo=replace(
        base.slo, ttft_seconds=options.slo_ttft_s,
        ttft_seconds_per_prompt_token=options.slo_ttft_s_per_prompt_token))
    hpa_target = round(capacity.requests_per_second * HPA_DEFAULT_UTILIZATION, 3)
    specs = {
        PolicyKind.HPA: replace(base, policy=PolicyKind.HPA, metrics=(
            MetricTarget(Signal.REQUEST_RATE.value, MetricTargetType.AVERAGE_VALUE, hpa_target),)),
        PolicyKind.KPA: replace(base, policy=PolicyKind.KPA, sync_period_s=defaults.KPA_TICK_S,
                                kpa=replace(base.kpa, metric=REPLAY_KPA_METRIC)),
        # The same default behaviour a live spec without ``behavior`` gets (one place:
        # ``core.spec.default_behavior``; the policy holds releases on its own forecast).
        PolicyKind.PREDICTIVE: replace(base, policy=PolicyKind.PREDICTIVE,
                                       behavior=default_behavior(PolicyKind.PREDICTIVE)),
        PolicyKind.HINDSIGHT: replace(base, policy=PolicyKind.HINDSIGHT),
        PolicyKind.STATIC: base,
        # Baselines at their documented targets (see autoscaler.core.defaults for sources).
        PolicyKind.HPA_QUEUE: replace(base, policy=PolicyKind.HPA_QUEUE, metrics=(
            MetricTarget(Signal.QUEUE_DEPTH.value, MetricTargetType.AVERAGE_VALUE,
                         defaults.HPA_QUEUE_TARGET),)),
        # KV usage is already a mean over replicas, so the per-pod average target is a
        # Value target on the mean: ceil(ready x mean / 0.8), what AverageValue over per-pod
        # series gives.
        PolicyKind.HPA_KV: replace(base, policy=PolicyKind.HPA_KV, metrics=(
            MetricTarget(Signal.KV_CACHE_USAGE.value, MetricTargetType.VALUE,
                         defaults.HPA_KV_TARGET),)),
        PolicyKind.HPA_RUNNING: replace(base, policy=PolicyKind.HPA_RUNNING, metrics=(
            MetricTarget(Signal.RUNNING.value, MetricTargetType.AVERAGE_VALUE,
                         defaults.HPA_RUNNING_TARGET),)),
        PolicyKind.KEDA: replace(base, policy=PolicyKind.KEDA, metrics=(
            MetricTarget(Signal.QUEUE_DEPTH.value, MetricTargetType.AVERAGE_VALUE,
                         defaults.HPA_QUEUE_TARGET),)),
        PolicyKind.WVA: replace(base, policy=PolicyKind.WVA),
    }
    for kind, spec in options.overrides.items():
        specs[kind] = spec
    return specs


def compare(
    trace: Trace,
    profile: ReplicaProfile,
    policies: Sequence[PolicyKind] = DEFAULT_POLICIES,
    options: ReplayOptions | None = None,
    *,
    on_result: Callable[[PolicyKind, ReplayResult], None] | None = None,
    on_decision: Callable[[PolicyKind, float, Snapshot, Decision], None] | None = None,
) -> Comparison:
    """Replay ``trace`` under each policy with the same profile, seed and start.

    ``on_decision`` sees every decision of every policy (for a decision log)."""
    options = options or ReplayOptions()
    if options.engine == "request":  # refuse before the calibration, not after it
        check_memory(trace.request_count)
    capacity = capacity_for(trace, profile, options.slo_ttft_s,
                            options.slo_ttft_s_per_prompt_token)
    specs = default_specs(trace, profile, capacity, options)
    results: dict[PolicyKind, ReplayResult] = {}
    for kind in policies:
        sync = specs[kind].sync_period_s
        hook = None
        if on_decision is not None:
            def hook(t: float, snap: Snapshot, d: Decision, kind: PolicyKind = kind) -> None:
                on_decision(kind, t, snap, d)
        result = replay(trace, specs[kind], profile, engine=options.engine, seed=options.seed,
                        scrape_interval_s=min(15.0, sync) if options.scrape_interval_s is None
                        else options.scrape_interval_s, progress=options.progress,
                        on_decision=hook, gpu_quota=options.gpu_quota,
                        faults=options.faults, **_loop_options(trace, specs[kind], profile,
                                                                options))
        results[kind] = result
        if on_result is not None:
            on_result(kind, result)
    return Comparison(trace, profile, capacity, options, specs, results)


def check_loop_options(spec: Spec, options: ReplayOptions) -> None:
    """The loop's timings against one policy's spec (``SpecError`` naming the flag): the
    CLI calls it before its header, ``compare`` again per policy."""
    if options.rate_window_s is not None:
        scrape = (min(15.0, spec.sync_period_s) if options.scrape_interval_s is None
                  else options.scrape_interval_s)
        if options.rate_window_s < 2 * scrape:
            # A window of one scrape interval holds one sample half the time: no rate.
            raise SpecError("--rate-window", options.rate_window_s,
                            f">= twice the scrape interval ({2 * scrape:g} s)")
    if options.initial_replicas is not None and options.initial_replicas > spec.max_replicas:
        raise SpecError("--initial-replicas", options.initial_replicas,
                        f"<= maxReplicas of the {spec.policy} spec ({spec.max_replicas})")


def _loop_options(trace: Trace, spec: Spec, profile: ReplicaProfile,
                  options: ReplayOptions) -> dict[str, Any]:
    """``replay``'s keyword arguments for the options that are set (the rest keep its
    defaults)."""
    check_loop_options(spec, options)
    kw: dict[str, Any] = {}
    if options.rate_window_s is not None:
        kw["rate_window_s"] = options.rate_window_s
    if options.actuation_delay_s is not None:
        kw["actuation_delay_s"] = options.actuation_delay_s
    if options.initial_replicas is not None:
        kw["initial_replicas"] = options.initial_replicas
    if options.decide_stage is not None:
        delay = kw.get("actuation_delay_s",
                       inspect.signature(replay).parameters["actuation_delay_s"].default)
        kw["decide"] = options.decide_stage(default_decide(trace, spec, profile, delay))
    return kw


def capacity_for(trace: Trace, profile: ReplicaProfile, slo_ttft_s: float,
                 slo_ttft_s_per_prompt_token: float = 0.0) -> Capacity:
    """One replica's capacity at the SLO for the requests this trace actually sends: its own
    token lengths when it has them (a request-level trace's requests, or a rate-level
    trace's pooled empirical distribution, e.g. ServeGen's per-client, per-6-hour lengths,
    drawn through ``Trace.token_sample``), else lognormal lengths around its token mix.
    With a length-aware objective each trial request is judged against its own objective.

    Measured on ServeGen (8B profile, 2 s SLO): its own lengths (mean 67 / 9.7 tokens,
    median 34 / 3) give 211.7 req/s with seed 0 (197.1-211.7 over seeds 0-3: the 2,000
    drawn pairs' means vary by a few tokens), the lognormal around its means 208.6."""
    tokens: Any
    if trace.prompt_tokens is not None and trace.output_tokens is not None:
        tokens = (trace.prompt_tokens, trace.output_tokens)
    elif trace.token_distribution is not None:
        tokens = trace.token_sample(CALIBRATION_SAMPLES, seed=0)
    else:
        tokens = trace.token_mix
    return capacity_at_slo(profile, slo_ttft_s, tokens,
                           slo_per_prompt_token=slo_ttft_s_per_prompt_token)


def decision_record(kind: PolicyKind, t: float, snap: Snapshot, d: Decision) -> dict[str, Any]:
    """One line of the decision log: what the policy saw, what it chose, and why."""
    seen = {str(k): round(v.value, 4) for k, v in snap.metrics.items()}
    return {"policy": kind.value, "t_s": t, "current": snap.current_replicas,
            "ready": snap.ready_replicas, "replicas": d.replicas, "valid": d.valid,
            "reason": d.reason.value, "message": d.message, "recommendation": d.recommendation,
            "forecast_rps": d.forecast_rps, "demand_rps": d.demand_rps,
            "capacity_rps": d.capacity_rps, "capacity_unit": d.capacity_unit,
            "capacity_per_replica": d.capacity_per_replica,
            "capacity_uncertainty": d.capacity_uncertainty, "metrics": seen}


def _num(x: float) -> float | None:
    """A JSON number, or null for inf/NaN (strict JSON has neither)."""
    return float(x) if math.isfinite(x) else None


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """The documented JSON shape (more keys allowed). Strict JSON: a TTFT percentile that is
    infinite (requests never served) is null, with a note."""
    trace = comparison.trace
    results = []
    never_served = False
    target = next(iter(comparison.specs.values())).slo.target_attainment
    for kind, result in comparison.results.items():
        s = result.summary
        never_served |= not all(math.isfinite(x) for x in (s.ttft_p50_s, s.ttft_p95_s,
                                                            s.ttft_p99_s))
        results.append({
            "policy": kind.value,
            "slo_attainment": s.slo_attainment,
            "gpu_hours": s.gpu_hours,
            "bound_gpu_hours": _num(s.bound_gpu_hours),
            "gpu_vs_bound": _num(s.gpu_hours / s.bound_gpu_hours)
            if s.bound_gpu_hours > 0 else None,
            "ttft_p50_s": _num(s.ttft_p50_s),
            "ttft_p95_s": _num(s.ttft_p95_s),
            "ttft_p99_s": _num(s.ttft_p99_s),
            "worst_hour_attainment": _num(s.worst_hour_attainment),
            "hours_meeting_target": _num(s.hours_meeting_target),
            "hours_scored": s.hours_scored,
            "scale_events": s.scale_events,
            "replica_starts": s.replica_starts,
            "replica_starts_per_day": s.replica_starts_per_day,
            "cold_start_gpu_hours": s.cold_start_gpu_hours,
            "mean_replicas": s.mean_replicas,
            "max_replicas": s.max_replicas,
            "max_pending": s.max_pending,
            "engine": s.engine,
            "reasons": dict(result.reasons),
        })
    bounds = [r.summary.bound_gpu_hours for r in comparison.results.values()
              if math.isfinite(r.summary.bound_gpu_hours)]
    doc: dict[str, Any] = {
        "trace": {"name": trace.name, "requests": round(trace.request_count),
                  "duration_s": float(trace.duration_s),
                  "interarrival_cv": interarrival_cv(trace),
                  "collection_gaps": collection_gap_count(trace)},
        "slo": {"ttft_s": comparison.options.slo_ttft_s,
                "ttft_s_per_prompt_token": comparison.options.slo_ttft_s_per_prompt_token,
                "target_attainment": target},
        "profile": comparison.profile.name,
        "capacity": {"requests_per_second": comparison.capacity.requests_per_second,
                     "concurrency": comparison.capacity.concurrency},
        "gpu_quota": comparison.options.gpu_quota,
        "bound": {
            "gpu_hours": min(bounds) if bounds else None,
            "definition": bound.DEFINITION + " Per result at its own attainment: "
            "results[].bound_gpu_hours; this top-level figure is the lowest of them.",
        },
        "hindsight": "the 'hindsight' policy (formerly 'oracle') is a heuristic given the true "
                     "future rates, planning with the capacity at the SLO; it is not a bound "
                     "and other policies may use fewer GPU-hours; the bound is 'bound'",
        "results": results,
    }
    if never_served:
        doc["notes"] = ["a TTFT percentile of null means requests at that percentile never "
                        "received a first token (infinite TTFT)"]
    strict: dict[str, Any] = _strict(doc)
    return strict


def _strict(obj: Any) -> Any:
    """The document with every non-finite float replaced by null (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    return obj


def _cell(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


TABLE_COLUMNS: tuple[tuple[str, int], ...] = (
    ("policy", 11), ("SLO att.", 9), ("worst h", 8), ("h>=tgt", 7), ("GPU-h", 9),
    ("bound", 8), ("/bound", 7), ("TTFT p50", 9), ("p95", 7), ("p99", 8), ("events", 7),
    ("starts/d", 9), ("cold GPU-h", 11), ("mean rep", 9), ("max", 5))
"""Each column's header and its narrowest width; a column widens to its widest cell plus a
space, so five-digit GPU-hours (12,345.67) still leave a space before the next column."""


def format_table(doc: dict[str, Any]) -> str:
    t = doc["trace"]
    slo = doc["slo"]
    per_tok = slo.get("ttft_s_per_prompt_token") or 0.0
    objective = (f"{slo['ttft_s']:g} s + {per_tok:g} s/prompt token" if per_tok
                 else f"{slo['ttft_s']:g} s")
    head = (f"trace {t['name']}: {t['requests']:,} requests over {t['duration_s'] / 3600:.2f} h; "
            f"SLO TTFT <= {objective}; profile {doc['profile']}; one replica "
            f"holds {doc['capacity']['requests_per_second']:.2f} req/s at the SLO")
    rows = [[r["policy"], f"{r['slo_attainment']:.2%}",
             _cell(r["worst_hour_attainment"], ".1%"), _cell(r["hours_meeting_target"], ".0%"),
             f"{r['gpu_hours']:,.2f}", _cell(r["bound_gpu_hours"], ",.2f"),
             _cell(r["gpu_vs_bound"], ".2f"), _cell(r["ttft_p50_s"], ",.2f"),
             _cell(r["ttft_p95_s"], ",.2f"), _cell(r["ttft_p99_s"], ",.2f"),
             f"{r['scale_events']:,d}", f"{r['replica_starts_per_day']:,.1f}",
             f"{r['cold_start_gpu_hours']:,.2f}", f"{r['mean_replicas']:,.2f}",
             f"{r['max_replicas']:,d}"] for r in doc["results"]]
    widths = [max(w, *(len(row[i]) + 1 for row in rows)) if rows else w
              for i, (_, w) in enumerate(TABLE_COLUMNS)]

    def line(cells: list[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        return first + "".join(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True))

    cols = line([h for h, _ in TABLE_COLUMNS])
    lines = [head, cols, "-" * len(cols)]
    lines += [line(row) for row in rows]
    lines.append(f"bound: proven lower bound on GPU-hours at each result's attainment "
                 f"(autoscaler/sim/bound.py); hindsight = a heuristic with foresight, not a bound; "
                 f"worst h / h>=tgt: worst clock hour, share of hours at >= "
                 f"{slo.get('target_attainment', 0.99):.0%}")
    return "\n".join(lines)
