"""``autoscaler replay`` and ``autoscaler profiles``.

Options arrive as one frozen ``ReplayCommand``: a new flag is one ``add_argument`` in
``add_parser``, one field, and one line in ``from_args``.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from autoscaler.cli import common as c
from autoscaler.core import defaults as d
from autoscaler.errors import AutoscalerError, SpecError

if TYPE_CHECKING:
    from autoscaler.core.spec import Capacity, PolicyKind, Spec
    from autoscaler.replaying import ReplayOptions
    from autoscaler.sim.observe import Fault
    from autoscaler.sim.profiles import ReplicaProfile
    from autoscaler.traces.model import Trace

DEFAULT_POLICIES = "hpa,hpa-queue,hpa-kv,keda,kpa,wva,predictive,hindsight,static"
"""``oracle``, the old name of ``hindsight``, is still accepted."""
DEFAULT_PROFILE = "llama3-8b-h100"
ENGINES = ("auto", "request", "fluid")

TIME_SCALE = c.Range(low=1e-3, high=1e3)
RATE_SCALE = c.Range(low=0, low_open=True, high=1e3)
SLO_TTFT = c.Range(low=0, low_open=True, high=3600, unit="seconds")
"""The spec's own range of ``slo.ttftSeconds``."""
COLD_START = c.Range(low=0, high=3600, unit="seconds")
"""The spec's own range of ``coldStartSeconds`` (0 is allowed: a warm pool)."""
REPLICAS = c.Range(low=0, high=d.MAX_REPLICAS_LIMIT)
# The loop's timings (kwok's hunk: the live-vs-replay closed loop sets them).
SCRAPE_INTERVAL = c.Range(low=0, low_open=True, high=3600, unit="seconds")
RATE_WINDOW = c.Range(low=0, low_open=True, high=86400, unit="seconds")
ACTUATION_DELAY = c.Range(low=0, high=3600, unit="seconds")
HPA_SYNC = c.Range(low=0, low_open=True, high=3600, unit="seconds")
HPA_OFFSET = c.Range(low=0, high=3600, unit="seconds")
STATIC_WINDOW = c.Range(low=1, high=86400, unit="seconds")
HPA_TOLERANCE = c.Range(low=0, high=1, high_open=True)

DECISION_RECORD_BYTES = 650
"""Mean size of one decision-log line (measured: 645 bytes for the HPA on the synthetic
workload; it varies with the metrics a policy reads and the length of its message)."""
DECISIONS_WARN_BYTES = 100e6
"""Above this expected size ``--decisions`` warns first (the NASA trace wrote 1.96 GB)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay a trace through simulated fleets, one per policy",
                       description="Replay a request trace through a simulated inference "
                       "fleet under each policy and compare SLO attainment and GPU-hours.")
    c.add_trace_arguments(p)
    c.add_window_arguments(p)
    p.add_argument("--policies", default=DEFAULT_POLICIES,
                   help=f"comma-separated: {DEFAULT_POLICIES}")
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help="replica profile: a built-in name or a YAML file")
    p.add_argument("--slo-ttft", type=c.number(SLO_TTFT), default=d.SLO_TTFT_S,
                   help=f"time-to-first-token SLO, seconds (default {d.SLO_TTFT_S:g}; "
                   f"allowed: {SLO_TTFT.describe()})")
    p.add_argument("--cold-start", type=c.number(COLD_START),
                   help="replica cold start, seconds (default: the profile's; 0 = a warm "
                   "pool)")
    p.add_argument("--slo-ttft-per-prompt-token", type=c.number(c.Range(low=0.0, high=0.01)),
                   default=0.0, metavar="S",
                   help="extra TTFT objective per prompt token, seconds (0..0.01; default 0: "
                   "a flat objective)")
    p.add_argument("--gpu-quota", type=c.whole(c.Range(low=1)), metavar="REPLICAS",
                   help="at most this many replicas run at once; the rest stay pending and "
                   "cost nothing (default: unlimited)")
    p.add_argument("--engine", choices=ENGINES, default="auto")
    p.add_argument("--seed", type=c.whole(c.SEED), default=0)
    p.add_argument("--min-replicas", type=c.whole(REPLICAS), default=1)
    p.add_argument("--max-replicas", type=c.whole(c.Range(low=1, high=d.MAX_REPLICAS_LIMIT)))
    p.add_argument("--static-window", type=c.number(STATIC_WINDOW), metavar="S",
                   help="size the static fleet for the busiest window of S seconds, "
                   "wherever it starts (default: the busiest clock-aligned minute); use "
                   "several scrape intervals, e.g. 300, to compare a replay from "
                   f"Prometheus with one from a finer trace ({STATIC_WINDOW.describe()})")
    p.add_argument("--rate-scale", type=c.number(RATE_SCALE), default=1.0,
                   help=f"multiply the trace's request rate ({RATE_SCALE.describe()})")
    p.add_argument("--time-scale", type=c.number(TIME_SCALE), default=1.0,
                   help=f"stretch the trace's time axis ({TIME_SCALE.describe()}, and the "
                   "stretched trace within the traces' span limit)")
    p.add_argument("--spec", action="append", default=[], metavar="FILE",
                   help="an autoscaler spec YAML (or InferenceAutoscaler) replacing the "
                   "built-in spec of its policy (repeatable)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND:TIME[:END]",
                   help="inject an observation fault every policy meets (repeatable): "
                        "scrape-gap:START:END, pod-silent:START:END, restart:T, "
                        "counter-reset:T (times since the trace's start, units s m h d)")
    p.add_argument("--json", metavar="FILE|-", help="write results as JSON ('-' = stdout)")
    p.add_argument("--report", metavar="DIR", help="write an HTML report with plots")
    p.add_argument("--decisions", metavar="FILE",
                   help="write every decision (what was seen, what was chosen, why) as JSON "
                   "lines; see the --decisions-* options to limit it")
    p.add_argument("--decisions-policies", metavar="LIST",
                   help="log only these policies (comma-separated; default: all replayed)")
    p.add_argument("--decisions-window", metavar="START:END",
                   help="log only decisions with START <= t_s < END, seconds since the "
                   "trace's start (units s, m, h, d allowed; either side may be empty), "
                   "e.g. 2h:3h")
    p.add_argument("--decisions-changes-only", action="store_true",
                   help="log a decision only when its replicas, reason or validity differ "
                   "from the policy's previous one")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (terminal) or progress lines (pipe)")
    from autoscaler.fleetdata.options import add_prometheus_arguments

    # --prometheus replays the target's own history; --start then is an absolute time.
    add_prometheus_arguments(p, required=False, with_start=False)
    add_loop_arguments(p)


def add_loop_arguments(p: Any) -> None:
    """The loop's timings and a stock HPA after the decision, for replaying a live setup
    as it runs (tests/e2e/test_closed_loop_e2e.py replays its compressed cluster so)."""
    g = p.add_argument_group("loop timings (default: the replay's own)")
    g.add_argument("--scrape-interval", type=c.number(SCRAPE_INTERVAL), metavar="S",
                   help="seconds between scrapes (default: 15, or the sync period if "
                   f"shorter; allowed: {SCRAPE_INTERVAL.describe()})")
    g.add_argument("--rate-window", type=c.number(RATE_WINDOW), metavar="S",
                   help="the rate() window, seconds, at least twice the scrape interval "
                   f"(default 60; allowed: {RATE_WINDOW.describe()})")
    g.add_argument("--actuation-delay", type=c.number(ACTUATION_DELAY), metavar="S",
                   help="seconds from a decision to its pods starting (default 2; allowed: "
                   f"{ACTUATION_DELAY.describe()})")
    g.add_argument("--initial-replicas", type=c.whole(REPLICAS), metavar="N",
                   help="replicas at the start, at most maxReplicas (default: sized for "
                   "the trace's first minutes)")
    g.add_argument("--via-hpa", type=c.number(HPA_SYNC), metavar="S",
                   help="Metrics mode: a stock HPA reads the decided count (AverageValue "
                   "1) every S seconds, a whole multiple of the sync period, and writes the "
                   f"scale (allowed: {HPA_SYNC.describe()})")
    g.add_argument("--via-hpa-offset", type=c.number(HPA_OFFSET), default=0.0, metavar="S",
                   help="time of the HPA's first sync after the trace starts, below "
                   "--via-hpa (default 0)")
    g.add_argument("--via-hpa-tolerance", type=c.number(HPA_TOLERANCE),
                   default=d.HPA_TOLERANCE, metavar="R",
                   help=f"the HPA's tolerance (default {d.HPA_TOLERANCE:g}; allowed: "
                   f"{HPA_TOLERANCE.describe()})")


def loop_options(args: argparse.Namespace) -> dict[str, Any]:
    """``ReplayOptions`` fields of ``add_loop_arguments`` (the rate window is checked
    against the scrape interval per policy, in ``autoscaler.replaying``)."""
    out: dict[str, Any] = {"scrape_interval_s": args.scrape_interval,
                           "rate_window_s": args.rate_window,
                           "actuation_delay_s": args.actuation_delay,
                           "initial_replicas": args.initial_replicas}
    if args.via_hpa is not None:
        from autoscaler.twin.stock_hpa import HpaStage, StockHpa

        if args.via_hpa_offset >= args.via_hpa:
            raise SpecError("--via-hpa-offset", args.via_hpa_offset,
                            f">= 0 and < --via-hpa ({args.via_hpa:g})")
        hpa = StockHpa(sync_period_s=args.via_hpa, offset_s=args.via_hpa_offset,
                       tolerance=args.via_hpa_tolerance)

        out["decide_stage"] = HpaStage(hpa, option="--via-hpa")
    return out


def check_loop(options: ReplayOptions, specs: dict[PolicyKind, Spec],
               policies: tuple[PolicyKind, ...]) -> None:
    """The loop flags against each replayed policy's spec, before the header: a bad one is
    the only line printed (exit 2)."""
    from autoscaler.replaying import check_loop_options
    from autoscaler.twin.stock_hpa import HpaStage

    for kind in policies:
        check_loop_options(specs[kind], options)
        if isinstance(options.decide_stage, HpaStage):
            options.decide_stage.check(specs[kind])


@dataclass(frozen=True)
class DecisionFilter:
    """Which decisions ``--decisions`` writes."""

    policies: tuple[PolicyKind, ...]
    start_s: float = 0.0
    end_s: float = math.inf
    changes_only: bool = False

    @classmethod
    def parse(cls, policies: str | None, window: str | None, changes_only: bool,
              replayed: tuple[PolicyKind, ...]) -> DecisionFilter:
        chosen = replayed
        if policies is not None:
            chosen = c.policy_list("--decisions-policies", policies, replayed)
        start, end = 0.0, math.inf
        if window is not None:
            allowed = ("START:END in seconds since the trace's start (units s, m, h, d), "
                       "START < END, e.g. 2h:3h or :30m")
            head, sep, tail = window.partition(":")
            if not sep:
                raise SpecError("--decisions-window", window, allowed)
            start = c.seconds("--decisions-window", head, allowed) if head.strip() else 0.0
            end = c.seconds("--decisions-window", tail, allowed) if tail.strip() else math.inf
            if not start < end:
                raise SpecError("--decisions-window", window, allowed)
        return cls(chosen, start, end, changes_only)

    def covered_s(self, duration_s: float) -> float:
        """Seconds of a ``duration_s`` replay inside the window."""
        return max(0.0, min(self.end_s, duration_s) - min(self.start_s, duration_s))


@dataclass(frozen=True)
class ReplayCommand:
    """Every ``replay`` option, parsed and checked."""

    trace: str | None
    trace_format: str | None
    policies: tuple[PolicyKind, ...]
    profile: str
    slo_ttft_s: float
    slo_ttft_s_per_prompt_token: float
    gpu_quota: int | None
    cold_start_s: float | None
    engine: str
    seed: int
    min_replicas: int
    max_replicas: int | None
    static_window_s: float | None
    rate_scale: float
    time_scale: float
    start: str | None
    duration: str | None
    specs: tuple[str, ...]
    json_out: str | None
    report: str | None
    decisions: str | None
    decision_filter: DecisionFilter
    progress: bool
    faults: tuple[Fault, ...] = ()
    fleet_args: argparse.Namespace | None = None
    """The parsed arguments when ``--prometheus`` is given (the history to replay)."""
    loop: dict[str, Any] = field(default_factory=dict)
    """``loop_options``: the loop's timings and the ``--via-hpa`` stage."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReplayCommand:
        policies = c.policy_list("--policies", args.policies)
        if args.max_replicas is not None and args.min_replicas > args.max_replicas:
            raise SpecError("--min-replicas", args.min_replicas,
                            f"<= --max-replicas ({args.max_replicas})")
        return cls(
            trace=args.trace, trace_format=args.trace_format, policies=policies,
            profile=args.profile, slo_ttft_s=args.slo_ttft,
            slo_ttft_s_per_prompt_token=args.slo_ttft_per_prompt_token,
            gpu_quota=args.gpu_quota, cold_start_s=args.cold_start,
            engine=args.engine, seed=args.seed, min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            static_window_s=getattr(args, "static_window", None), rate_scale=args.rate_scale,
            time_scale=args.time_scale, start=args.start, duration=args.duration,
            specs=tuple(args.spec), json_out=args.json, report=args.report,
            decisions=args.decisions,
            decision_filter=DecisionFilter.parse(args.decisions_policies,
                                                 args.decisions_window,
                                                 args.decisions_changes_only, policies),
            progress=not args.no_progress,
            faults=tuple(parse_fault(f) for f in getattr(args, "fault", None) or ()),
            fleet_args=args if getattr(args, "prometheus", None) else None,
            loop=loop_options(args) if hasattr(args, "via_hpa") else {})

    def replay_options(self, overrides: dict[PolicyKind, Spec]) -> ReplayOptions:
        from autoscaler.replaying import ReplayOptions

        # Progress is ours (one bar or line stream over every policy), not the engine's.
        return ReplayOptions(
            slo_ttft_s=self.slo_ttft_s,
            slo_ttft_s_per_prompt_token=self.slo_ttft_s_per_prompt_token,
            gpu_quota=self.gpu_quota, cold_start_s=self.cold_start_s, engine=self.engine,
            seed=self.seed, min_replicas=self.min_replicas, max_replicas=self.max_replicas,
            static_window_s=self.static_window_s, progress=False, faults=self.faults,
            overrides=overrides,
            **self.loop)

    def check_outputs(self) -> None:
        """Refuse unwritable outputs before a long run, not after it."""
        if self.json_out and self.json_out != "-":
            c.writable_path("--json", self.json_out)
        if self.decisions:
            c.writable_path("--decisions", self.decisions)
        if self.report:
            c.writable_path("--report", self.report)


FAULT_FORMS = ("scrape-gap:START:END, pod-silent:START:END, restart:T or counter-reset:T "
               "(times in s, m, h or d since the trace's start, START < END)")


def parse_fault(text: str) -> Fault:
    """``"restart:2h"`` -> ``PrometheusRestart(7200.0)``; anything else a ``SpecError``."""
    from autoscaler.sim.observe import CounterReset, PodSilent, PrometheusRestart, ScrapeGap

    kind, _, rest = text.strip().partition(":")
    parts = rest.split(":") if rest else []
    times = [c.seconds("--fault", p, FAULT_FORMS) for p in parts]
    kind = kind.strip().lower()
    if kind in ("scrape-gap", "pod-silent") and len(times) == 2 and times[0] < times[1]:
        return (ScrapeGap(times[0], times[1]) if kind == "scrape-gap"
                else PodSilent(times[0], times[1]))
    if kind == "restart" and len(times) == 1:
        return PrometheusRestart(times[0])
    if kind == "counter-reset" and len(times) == 1:
        return CounterReset(times[0])
    raise SpecError("--fault", text, FAULT_FORMS)


def run(args: argparse.Namespace) -> int:
    return run_replay(ReplayCommand.from_args(args))


def header(trace: Trace, profile: ReplicaProfile, capacity: Capacity, cmd: ReplayCommand,
           specs: dict[PolicyKind, Spec]) -> str:
    cold = specs[cmd.policies[0]].cold_start_s
    slope = cmd.slo_ttft_s_per_prompt_token
    per_token = f" + {slope:g} s/prompt token" if slope > 0.0 else ""
    return (f"replay: trace {trace.name}: {trace.request_count:,.0f} requests over "
            f"{trace.duration_s / 3600:.2f} h; profile {profile.name} (cold start {cold:g} s); "
            f"SLO TTFT <= {cmd.slo_ttft_s:g} s{per_token}; one replica holds "
            f"{capacity.requests_per_second:.3g} req/s at the SLO; policies "
            f"{', '.join(k.value for k in cmd.policies)}")


def expected_decisions(trace: Trace, specs: dict[PolicyKind, Spec],
                       policies: tuple[PolicyKind, ...], covered_s: float | None = None) -> int:
    """Decisions the replay makes (one per sync period and policy) within ``covered_s``."""
    span = trace.duration_s if covered_s is None else covered_s
    return sum(int(span // specs[k].sync_period_s) for k in policies)


def run_replay(cmd: ReplayCommand, *, stream: IO[str] | None = None) -> int:
    import json

    from autoscaler.replaying import compare, comparison_json, decision_record, format_table

    err = stream or sys.stderr
    cmd.check_outputs()
    overrides: dict[PolicyKind, Spec] = {}
    for path in cmd.specs:  # the small inputs first: a bad spec fails in milliseconds
        spec = c.load_spec_input(path)
        overrides[spec.policy] = spec
    profile = c.load_profile_input(cmd.profile)
    trace = _load_trace(cmd)
    options = cmd.replay_options(overrides)
    capacity, specs = c.derive_specs(trace, profile, options)
    check_loop(options, specs, cmd.policies)
    # What is about to run, before it runs (a 14-day replay takes minutes), with or
    # without progress output: progress is the bar or lines, not this.
    c.note(header(trace, profile, capacity, cmd, specs), stream=err)

    flt = cmd.decision_filter
    log = None
    if cmd.decisions:
        logged = expected_decisions(trace, specs, flt.policies, flt.covered_s(trace.duration_s))
        size = logged * DECISION_RECORD_BYTES
        if size > DECISIONS_WARN_BYTES:
            bound = "up to " if flt.changes_only else "about "
            c.note(f"autoscaler replay: warning: --decisions will write {bound}"
                   f"{size / 1e6:,.0f} MB ({logged:,} decisions); limit it with "
                   "--decisions-policies, --decisions-window or --decisions-changes-only",
                   stream=err)
        try:
            log = open(cmd.decisions, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise AutoscalerError(f"--decisions {cmd.decisions}: cannot write: "
                                  f"{exc.strerror or exc}") from exc

    total = expected_decisions(trace, specs, cmd.policies)
    bar = c.Progress(max(total, 1), "replay", unit="decision", enabled=cmd.progress,
                     stream=err)
    last: dict[PolicyKind, tuple[int, str, bool]] = {}
    wanted = set(flt.policies)

    kept: dict[str, list[dict[str, Any]]] = {}
    kept_last: dict[str, float] = {}

    def on_decision(kind: PolicyKind, t: float, snap: Any, dec: Any) -> None:
        bar.update(1, kind.value)
        if cmd.report and (dec.replicas != snap.current_replicas
                           or t - kept_last.get(kind.value, -math.inf)
                           >= REPORT_DECISION_EVERY_S):
            kept_last[kind.value] = t
            rec = decision_record(kind, t, snap, dec)
            rec.pop("metrics", None)
            kept.setdefault(kind.value, []).append(rec)
        if log is None or kind not in wanted or not flt.start_s <= t < flt.end_s:
            return
        if flt.changes_only:
            key = (dec.replicas, str(dec.reason), bool(dec.valid))
            if last.get(kind) == key:
                return
            last[kind] = key
        log.write(json.dumps(c.finite_json(decision_record(kind, t, snap, dec)),
                             allow_nan=False) + "\n")

    done: list[PolicyKind] = []

    def on_result(kind: PolicyKind, result: Any) -> None:
        done.append(kind)
        if cmd.progress and bar.bar is None:  # a pipe: one line per finished policy
            s = result.summary
            c.note(f"replay: {kind.value} done ({len(done)}/{len(cmd.policies)}): SLO "
                   f"attainment {s.slo_attainment:.2%}, {s.gpu_hours:.2f} GPU-h", stream=err)

    try:
        with bar:
            comparison = compare(trace, profile, cmd.policies, options,
                                 on_result=on_result, on_decision=on_decision)
    finally:
        if log is not None:
            log.close()
    doc = comparison_json(comparison)  # write_json turns non-finite values into null
    to_stdout = cmd.json_out == "-"
    out = sys.stderr if to_stdout else sys.stdout
    print(format_table(doc), file=out)
    if cmd.json_out:
        c.write_json("--json", cmd.json_out, doc)
    if cmd.report:
        from pathlib import Path

        from autoscaler.reporting.replay_report import write_report

        index = write_report(comparison, Path(cmd.report), kept)
        print(f"report: {index}", file=out)
    return 0


REPORT_DECISION_EVERY_S = 300.0
"""Besides every scale event, the report keeps one decision per policy every 5 minutes
(for the forecast line): a 14-day replay at 15-s syncs makes 80,640 decisions per policy."""


def _load_trace(cmd: ReplayCommand) -> Trace:
    """The trace file, the fleet's own history (``--prometheus``), or the synthetic one."""
    if cmd.fleet_args is not None:
        from autoscaler.fleetdata.history import reconstruct
        from autoscaler.fleetdata.options import history_query, prometheus_config, scrape_step
        from autoscaler.metrics.source import PrometheusSource

        if cmd.trace:
            raise SpecError("--trace", cmd.trace, "no trace file with --prometheus (the "
                            "workload comes from Prometheus)")
        q = history_query(cmd.fleet_args)
        src = PrometheusSource(prometheus_config(cmd.fleet_args))
        try:
            q = scrape_step(cmd.fleet_args, q, src)
            rec = reconstruct(src, q)
        finally:
            src.close()
        for n in rec.notes:
            print(f"note: {n}", file=sys.stderr)
        return rec.trace
    # An exported fleet trace is found by content there, and scaled like any count trace.
    return c.load_trace_input(cmd.trace, cmd.trace_format, seed=cmd.seed,
                              rate_scale=cmd.rate_scale, time_scale=cmd.time_scale,
                              start=cmd.start, duration=cmd.duration)


def add_profiles_parser(sub: Any) -> None:
    sub.add_parser("profiles", help="list the built-in replica profiles")


def run_profiles(args: argparse.Namespace) -> int:
    from autoscaler.sim.profiles import builtin_profiles, load_profile

    for name in builtin_profiles():
        p = load_profile(name)
        print(f"{name}: {p.gpus_per_replica} GPU(s), cold start {p.cold_start_s:g} s")
    return 0
