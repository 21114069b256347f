"""The ``autoscaler`` command line.

Every expected failure (bad option, bad trace, bad spec) ends as one line on stderr naming
what is wrong and where, with exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autoscaler.core.spec import PolicyKind
from autoscaler.errors import AutoscalerError, SpecError

EXIT_USAGE = 2


def _positive_float(name: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{name}: {text!r} must be a finite number > 0")
        return value
    return parse


def _policies(text: str) -> list[PolicyKind]:
    out: list[PolicyKind] = []
    allowed = ", ".join(k.value for k in PolicyKind)
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        try:
            out.append(PolicyKind(name))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--policies: unknown policy {name!r}; allowed: {allowed}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"--policies: empty; allowed: {allowed}")
    return out


def _add_replay(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay a trace through simulated fleets, one per policy",
                       description="Replay a request trace through a simulated inference "
                       "fleet under each policy and compare SLO attainment and GPU-hours.")
    p.add_argument("--trace", help="trace file or folder (default: the embedded synthetic "
                   "workload)")
    p.add_argument("--trace-format", choices=["azure", "mooncake", "counts", "servegen", "csv"],
                   help="skip auto-detection")
    p.add_argument("--policies", type=_policies,
                   default=_policies("hpa,kpa,predictive,oracle,static"),
                   help="comma-separated: hpa,kpa,predictive,oracle,static")
    p.add_argument("--profile", default="llama3-8b-h100",
                   help="replica profile: a built-in name or a YAML file")
    p.add_argument("--slo-ttft", type=_positive_float("--slo-ttft"), default=2.0,
                   help="time-to-first-token SLO, seconds (default 2)")
    p.add_argument("--slo-ttft-per-prompt-token", type=float, default=0.0, metavar="S",
                   help="extra TTFT objective per prompt token, seconds (0..0.01; default 0: "
                   "a flat objective)")
    p.add_argument("--gpu-quota", type=int, metavar="REPLICAS",
                   help="at most this many replicas run at once; the rest stay pending and "
                   "cost nothing (default: unlimited)")
    p.add_argument("--cold-start", type=_positive_float("--cold-start"),
                   help="replica cold start, seconds (default: the profile's)")
    p.add_argument("--engine", choices=["auto", "request", "fluid"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int)
    p.add_argument("--rate-scale", type=_positive_float("--rate-scale"), default=1.0,
                   help="multiply the trace's request rate")
    p.add_argument("--time-scale", type=_positive_float("--time-scale"), default=1.0,
                   help="stretch the trace's time axis")
    p.add_argument("--spec", action="append", default=[], metavar="FILE",
                   help="an autoscaler spec YAML replacing the built-in one of its policy "
                   "(repeatable)")
    p.add_argument("--json", metavar="FILE|-", help="write results as JSON ('-' = stdout)")
    p.add_argument("--report", metavar="DIR", help="write an HTML report with plots")
    p.add_argument("--decisions", metavar="FILE",
                   help="write every decision (what was seen, what was chosen, why) as JSON "
                   "lines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_replay(args: argparse.Namespace) -> int:
    from autoscaler.config import load_spec
    from autoscaler.replaying import (
        ReplayOptions,
        compare,
        comparison_json,
        decision_record,
        format_table,
    )
    from autoscaler.sim.profiles import load_profile
    from autoscaler.traces import default_workload, load_trace, scale_trace

    trace = (load_trace(args.trace, format=args.trace_format) if args.trace
             else default_workload(seed=args.seed))
    if args.rate_scale != 1.0 or args.time_scale != 1.0:
        trace = scale_trace(trace, rate=args.rate_scale, time=args.time_scale)
    profile = load_profile(args.profile)
    overrides = {}
    for path in args.spec:
        spec = load_spec(path)
        overrides[spec.policy] = spec
    if args.min_replicas < 0:
        raise SpecError("--min-replicas", args.min_replicas, ">= 0")
    if args.max_replicas is not None and args.max_replicas < 1:
        raise SpecError("--max-replicas", args.max_replicas, ">= 1")
    if not 0.0 <= args.slo_ttft_per_prompt_token <= 0.01:
        raise SpecError("--slo-ttft-per-prompt-token", args.slo_ttft_per_prompt_token,
                        ">= 0 and <= 0.01 (seconds per prompt token)")
    if args.gpu_quota is not None and args.gpu_quota < 1:
        raise SpecError("--gpu-quota", args.gpu_quota, ">= 1 (replicas)")
    options = ReplayOptions(
        slo_ttft_s=args.slo_ttft, slo_ttft_s_per_prompt_token=args.slo_ttft_per_prompt_token,
        gpu_quota=args.gpu_quota, cold_start_s=args.cold_start, engine=args.engine,
        seed=args.seed, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        progress=not args.no_progress and sys.stderr.isatty(), overrides=overrides)
    log = None
    if args.decisions:
        try:
            log = open(args.decisions, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise AutoscalerError(f"--decisions {args.decisions}: cannot write: "
                                  f"{exc.strerror or exc}") from exc

    def write_decision(kind: PolicyKind, t: float, snap: Any, d: Any) -> None:
        assert log is not None
        log.write(json.dumps(decision_record(kind, t, snap, d)) + "\n")

    try:
        comparison = compare(trace, profile, args.policies, options,
                             on_decision=write_decision if log is not None else None)
    finally:
        if log is not None:
            log.close()
    doc = comparison_json(comparison)
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    print(format_table(doc), file=out)
    if args.json:
        text = json.dumps(doc, indent=2, allow_nan=False)
        if to_stdout:
            print(text)
        else:
            try:
                Path(args.json).write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                raise AutoscalerError(f"--json {args.json}: cannot write: "
                                      f"{exc.strerror or exc}") from exc
    if args.report:
        from autoscaler.report import write_report

        index = write_report(comparison, Path(args.report))
        print(f"report: {index}", file=out)
    return 0


def _add_profiles(sub: Any) -> None:
    sub.add_parser("profiles", help="list the built-in replica profiles")


def _run_profiles(args: argparse.Namespace) -> int:
    from autoscaler.sim.profiles import builtin_profiles, load_profile

    for name in builtin_profiles():
        p = load_profile(name)
        print(f"{name}: {p.gpus_per_replica} GPU(s), cold start {p.cold_start_s:g} s")
    return 0


def _add_validate(sub: Any) -> None:
    p = sub.add_parser("validate", help="check an autoscaler spec YAML")
    p.add_argument("spec", metavar="FILE")


def _run_validate(args: argparse.Namespace) -> int:
    import yaml

    from autoscaler.config import load_spec
    from autoscaler.controller.resource import KIND, parse_autoscaler

    spec = load_spec(args.spec) if not _is_custom_resource(args.spec, KIND) else None
    if spec is None:  # a whole InferenceAutoscaler: validate it as the controller will
        with open(args.spec, encoding="utf-8") as fh:
            obj = yaml.safe_load(fh)
        try:
            spec = parse_autoscaler(obj).spec
        except SpecError as exc:
            raise SpecError(exc.field, exc.value, exc.allowed, source=args.spec) from exc
    print(f"{args.spec}: valid {spec.policy.value} spec, replicas {spec.min_replicas}.."
          f"{spec.max_replicas}")
    return 0


def _is_custom_resource(path: str, kind: str) -> bool:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return False  # load_spec reports it with file and line
    return isinstance(doc, dict) and doc.get("kind") == kind


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoscaler", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_replay(sub)
    _add_profiles(sub)
    _add_validate(sub)
    for add, _ in _sub_clis().values():
        add(sub)
    return parser


SubCli = tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]


def _sub_clis() -> dict[str, SubCli]:
    """Command -> (add its parser, run it), for the commands that live in their own module
    (imported here, lazily, so ``autoscaler replay`` does not load Prometheus or optuna)."""
    from autoscaler.controller.main import add_controller_parser, run_controller
    from autoscaler.forecast_cli import add_forecast_parser, run_forecast
    from autoscaler.metrics_cli import add_metrics_parser, run_metrics

    clis: dict[str, SubCli] = {"forecast": (add_forecast_parser, run_forecast),
                               "metrics": (add_metrics_parser, run_metrics),
                               "controller": (add_controller_parser, run_controller)}
    from autoscaler.tune_cli import add_tune_parser, run_tune
    from autoscaler.twin_cli import add_twin_parser, run_twin

    clis["twin"] = (add_twin_parser, run_twin)
    clis["tune"] = (add_tune_parser, run_tune)
    return clis


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    runners = {"replay": _run_replay, "profiles": _run_profiles, "validate": _run_validate}
    try:
        if args.command in runners:
            return runners[args.command](args)
        return _sub_clis()[args.command][1](args)
    except AutoscalerError as exc:
        print(f"autoscaler {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
