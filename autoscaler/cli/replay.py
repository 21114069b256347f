"""``autoscaler replay`` and ``autoscaler profiles``.

Options arrive as one frozen ``ReplayCommand``: a new flag is one ``add_argument`` in
``add_parser``, one field, and one line in ``from_args``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from autoscaler.cli import common as c
from autoscaler.errors import AutoscalerError, SpecError

if TYPE_CHECKING:
    from autoscaler.core.spec import PolicyKind, Spec
    from autoscaler.replaying import ReplayOptions

DEFAULT_POLICIES = "hpa,hpa-queue,hpa-kv,keda,kpa,wva,predictive,oracle,static"
DEFAULT_PROFILE = "llama3-8b-h100"
ENGINES = ("auto", "request", "fluid")


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
    p.add_argument("--slo-ttft", type=c.number(c.POSITIVE), default=2.0,
                   help="time-to-first-token SLO, seconds (default 2)")
    p.add_argument("--cold-start", type=c.number(c.POSITIVE),
                   help="replica cold start, seconds (default: the profile's)")
    p.add_argument("--engine", choices=ENGINES, default="auto")
    p.add_argument("--seed", type=c.whole(c.SEED), default=0)
    p.add_argument("--min-replicas", type=c.whole(c.NON_NEGATIVE_INT), default=1)
    p.add_argument("--max-replicas", type=c.whole(c.Range(low=1)))
    p.add_argument("--rate-scale", type=c.number(c.POSITIVE), default=1.0,
                   help="multiply the trace's request rate")
    p.add_argument("--time-scale", type=c.number(c.POSITIVE), default=1.0,
                   help="stretch the trace's time axis")
    p.add_argument("--spec", action="append", default=[], metavar="FILE",
                   help="an autoscaler spec YAML replacing the built-in one of its policy "
                   "(repeatable)")
    p.add_argument("--json", metavar="FILE|-", help="write results as JSON ('-' = stdout)")
    p.add_argument("--report", metavar="DIR", help="write an HTML report with plots")
    p.add_argument("--decisions", metavar="FILE",
                   help="write every decision (what was seen, what was chosen, why) as JSON "
                   "lines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


@dataclass(frozen=True)
class ReplayCommand:
    """Every ``replay`` option, parsed and checked."""

    trace: str | None
    trace_format: str | None
    policies: tuple[PolicyKind, ...]
    profile: str
    slo_ttft_s: float
    cold_start_s: float | None
    engine: str
    seed: int
    min_replicas: int
    max_replicas: int | None
    rate_scale: float
    time_scale: float
    start: str | None
    duration: str | None
    specs: tuple[str, ...]
    json_out: str | None
    report: str | None
    decisions: str | None
    progress: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReplayCommand:
        return cls(
            trace=args.trace, trace_format=args.trace_format,
            policies=c.policy_list("--policies", args.policies), profile=args.profile,
            slo_ttft_s=args.slo_ttft, cold_start_s=args.cold_start, engine=args.engine,
            seed=args.seed, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
            rate_scale=args.rate_scale, time_scale=args.time_scale, start=args.start,
            duration=args.duration, specs=tuple(args.spec),
            json_out=args.json, report=args.report, decisions=args.decisions,
            progress=not args.no_progress)

    def replay_options(self, overrides: dict[PolicyKind, Spec],
                       stream: IO[str]) -> ReplayOptions:
        from autoscaler.replaying import ReplayOptions

        return ReplayOptions(
            slo_ttft_s=self.slo_ttft_s, cold_start_s=self.cold_start_s, engine=self.engine,
            seed=self.seed, min_replicas=self.min_replicas, max_replicas=self.max_replicas,
            progress=self.progress and stream.isatty(), overrides=overrides)


def run(args: argparse.Namespace) -> int:
    return run_replay(ReplayCommand.from_args(args))


def run_replay(cmd: ReplayCommand) -> int:
    import json

    from autoscaler.config import load_spec
    from autoscaler.replaying import compare, comparison_json, decision_record, format_table

    if cmd.max_replicas is not None and cmd.min_replicas > cmd.max_replicas:
        raise SpecError("--min-replicas", cmd.min_replicas,
                        f"<= --max-replicas ({cmd.max_replicas})")
    trace = c.load_trace_input(cmd.trace, cmd.trace_format, seed=cmd.seed,
                               rate_scale=cmd.rate_scale, time_scale=cmd.time_scale,
                               start=cmd.start, duration=cmd.duration)
    profile = c.load_profile_input(cmd.profile)
    overrides: dict[PolicyKind, Spec] = {}
    for path in cmd.specs:
        spec = load_spec(path)
        overrides[spec.policy] = spec
    options = cmd.replay_options(overrides, sys.stderr)
    log = None
    if cmd.decisions:
        log_path = c.writable_path("--decisions", cmd.decisions)
        try:
            log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise AutoscalerError(f"--decisions {cmd.decisions}: cannot write: "
                                  f"{exc.strerror or exc}") from exc

    def write_decision(kind: PolicyKind, t: float, snap: Any, d: Any) -> None:
        assert log is not None
        log.write(json.dumps(c.finite_json(decision_record(kind, t, snap, d)),
                             allow_nan=False) + "\n")

    try:
        comparison = compare(trace, profile, cmd.policies, options,
                             on_decision=write_decision if log is not None else None)
    finally:
        if log is not None:
            log.close()
    doc = comparison_json(comparison)
    to_stdout = cmd.json_out == "-"
    out = sys.stderr if to_stdout else sys.stdout
    print(format_table(doc), file=out)
    if cmd.json_out:
        c.write_json("--json", cmd.json_out, doc)
    if cmd.report:
        from pathlib import Path

        from autoscaler.report import write_report

        c.writable_path("--report", cmd.report)
        index = write_report(comparison, Path(cmd.report))
        print(f"report: {index}", file=out)
    return 0


def add_profiles_parser(sub: Any) -> None:
    sub.add_parser("profiles", help="list the built-in replica profiles")


def run_profiles(args: argparse.Namespace) -> int:
    from autoscaler.sim.profiles import builtin_profiles, load_profile

    for name in builtin_profiles():
        p = load_profile(name)
        print(f"{name}: {p.gpus_per_replica} GPU(s), cold start {p.cold_start_s:g} s")
    return 0
