"""``autoscaler tune``: search each policy's parameters on a replayed trace (file I/O, flags
and output live here; the search itself is ``autoscaler.tuning``).

Three forms:

* ``autoscaler tune [--trace PATH] ...``: optuna's TPE with the attainment constraint,
  resumable through ``--storage`` (default: ``tune-journal.log`` in ``--report``); or, with
  ``--sweep``, the deterministic candidate list evaluated as ``--shards`` shards in a local
  process pool;
* ``autoscaler tune shard --index I --shards N --out DIR ...``: one shard of that list (one
  pod of ``deploy/tune-job.yaml``), written to ``DIR/shard-I-of-N.json``;
* ``autoscaler tune merge DIR``: every shard file of DIR summed up into the same output a
  local ``--sweep`` gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscaler.cli import common as c
from autoscaler.errors import AutoscalerError, SpecError
from autoscaler.tuning.spaces import TUNABLE

if TYPE_CHECKING:
    from autoscaler.core.spec import PolicyKind
    from autoscaler.sim.profiles import ReplicaProfile
    from autoscaler.traces.model import Trace

SHARD_FORMAT = "autoscaler-tune-shard/1"
DEFAULT_BUDGET = "40"
STORAGE_NAME = "tune-journal.log"
_POLICY_ALLOWED = f"comma-separated names from {', '.join(k.value for k in TUNABLE)}"


def _add_common(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``tune`` and ``tune shard`` (values are checked in ``_settings`` so a
    bad one is a one-line error naming the flag and its allowed range)."""
    c.add_trace_arguments(p)
    c.add_window_arguments(p)
    p.add_argument("--synthetic-duration", default="14400", metavar="S",
                   help="length of the embedded synthetic workload, seconds (default 14400)")
    p.add_argument("--rate-scale", default="1", help="multiply the trace's request rate")
    p.add_argument("--profile", default="llama3-8b-h100",
                   help="replica profile: a built-in name or a YAML file")
    p.add_argument("--policy", default=",".join(k.value for k in TUNABLE),
                   help=f"policies to tune, {_POLICY_ALLOWED} (default all)")
    p.add_argument("--slo-ttft", default="2", help="time-to-first-token SLO, seconds")
    p.add_argument("--attainment", default="0.99",
                   help="SLO attainment target in (0, 1] (default 0.99)")
    p.add_argument("--budget", default=DEFAULT_BUDGET,
                   help=f"candidates replayed per policy, >= 1 (default {DEFAULT_BUDGET})")
    p.add_argument("--seed", default="0", help="seed of the search and the replay")
    p.add_argument("--holdout", default="0.25",
                   help="fraction of the trace's end kept out of tuning and used to judge the "
                   "winner, in [0, 1) (default 0.25; 0 = off)")
    p.add_argument("--engine", choices=["auto", "request", "fluid"], default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", dest="json_out", metavar="FILE|-",
                   help="write the results as JSON ('-' = stdout)")
    p.add_argument("--report", metavar="DIR", help="write an HTML report with the Pareto fronts")
    p.add_argument("--emit-spec", metavar="FILE",
                   help="write the cheapest feasible winner as an autoscaler spec YAML")


def add_parser(subparsers: Any) -> None:
    """Add ``tune`` (with ``tune shard`` and ``tune merge``) to an argparse subparsers object."""
    tp = subparsers.add_parser(
        "tune", help="tune each policy's parameters on a replayed trace",
        description="Search each policy's parameters for the fewest GPU-hours that keep SLO "
                    "attainment >= the target, with the same budget for every policy.")
    _add_common(tp)
    tp.add_argument("--workers", default="1", help="replays in parallel (processes), >= 1")
    tp.add_argument("--storage", metavar="FILE",
                    help=f"optuna journal file to resume from (default: {STORAGE_NAME} in "
                    "--report; none = in memory)")
    tp.add_argument("--sweep", action="store_true",
                    help="evaluate the deterministic candidate list (as the sharded Job does) "
                    "instead of the TPE search")
    tp.add_argument("--shards", default=None,
                    help="with --sweep: shards of the candidate list (default: --workers)")
    _add_outputs(tp)
    tsub = tp.add_subparsers(dest="tune_command", required=False)
    sp = tsub.add_parser("shard", help="evaluate one shard of the candidate list",
                         description="Evaluate candidates I, I+N, I+2N, ... of the "
                         "deterministic candidate list and write them as JSON into --out.")
    _add_common(sp)
    sp.add_argument("--index", required=True, help="this shard, 0 <= I < --shards")
    sp.add_argument("--shards", required=True, help="number of shards, >= 1")
    sp.add_argument("--out", required=True, metavar="DIR", help="folder of the shard files")
    mp = tsub.add_parser("merge", help="merge shard files into the tuning output")
    mp.add_argument("dir", metavar="DIR", help="folder of the shard files")
    mp.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_outputs(mp)


def _whole(option: str, text: str, lo: int) -> int:
    return c.Range(low=lo, whole=True).parse_int(option, text)


def _policies(text: str) -> tuple[PolicyKind, ...]:
    return c.policy_list("--policy", text, TUNABLE)


def trace_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that say which trace is replayed (recorded in shard files for the merge)."""
    return {"trace": args.trace, "trace_format": args.trace_format,
            "synthetic_duration": args.synthetic_duration, "rate_scale": args.rate_scale,
            "start": args.start, "duration": args.duration, "profile": args.profile}


def load_inputs(targs: dict[str, Any]) -> tuple[Trace, ReplicaProfile]:
    rate = c.POSITIVE.parse("--rate-scale", targs["rate_scale"])
    dur = None
    if not targs["trace"]:
        dur = c.Range(low=1200, unit="seconds").parse("--synthetic-duration",
                                                      targs["synthetic_duration"])
    # .get: shard files written before --start/--duration existed have neither key.
    trace = c.load_trace_input(targs["trace"], targs["trace_format"], seed=0,
                               synthetic_duration_s=dur, rate_scale=rate,
                               start=targs.get("start"), duration=targs.get("duration"))
    return trace, c.load_profile_input(targs["profile"])


def settings_from_args(args: argparse.Namespace) -> Any:
    from autoscaler.tuning import TuneSettings

    s = TuneSettings(
        policies=_policies(args.policy),
        budget=_whole("--budget", args.budget, 1),
        attainment=c.Range(low=0, low_open=True, high=1).parse("--attainment",
                                                               args.attainment),
        slo_ttft_s=c.Range(low=0, low_open=True, unit="seconds").parse("--slo-ttft",
                                                                     args.slo_ttft),
        holdout=c.Range(low=0, high=1, high_open=True).parse("--holdout", args.holdout),
        seed=c.SEED.parse_int("--seed", args.seed),
        engine=args.engine)
    s.validate()
    return s


def _progress(enabled: bool, total: int, desc: str) -> Any:
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="replay", file=sys.stderr)


def _write(path: str, text: str, option: str) -> None:
    c.write_text(option, path, text)


def _emit(outcome: Any, doc: dict[str, Any], args: argparse.Namespace, out: Any) -> None:
    """Write --json / --report / --emit-spec and print the summary table."""
    from autoscaler.tuning.searching import overall_winner

    to_stdout = args.json_out == "-"
    print(format_table(doc), file=sys.stderr if to_stdout else out)
    if args.json_out:
        c.write_json("--json", args.json_out, doc, stdout=out)
    if args.report:
        from autoscaler.tuning.reporting import write_tune_report

        index = write_tune_report(doc, Path(args.report))
        print(f"report: {index}", file=sys.stderr if to_stdout else out)
    if args.emit_spec:
        import yaml

        from autoscaler.config import spec_to_dict

        win = overall_winner(outcome)
        if win is None or win.spec is None:
            raise AutoscalerError(
                f"--emit-spec {args.emit_spec}: no policy reached attainment "
                f">= {doc['settings']['attainment']} in-sample; nothing to emit (raise "
                "--budget or lower --attainment)")
        _write(args.emit_spec, yaml.safe_dump(spec_to_dict(win.spec), sort_keys=False),
               "--emit-spec")


def _run_search(args: argparse.Namespace) -> int:
    from autoscaler.tuning import finish, outcome_json, prepare, search, sweep

    settings = settings_from_args(args)
    workers = _whole("--workers", args.workers, 1)
    trace, profile = load_inputs(trace_args(args))
    ctx = prepare(trace, profile, settings)
    show = not args.no_progress
    if args.sweep:
        shards = (workers if args.shards is None
                  else _whole("--shards", args.shards, 1))
        bar = _progress(show, shards, "tune sweep (shards)")
        cands = sweep(ctx, shards=shards, workers=workers,
                      on_shard=None if bar is None else (lambda _i: bar.update(1)))
        method = "sweep"
    else:
        if args.shards is not None:
            raise SpecError("--shards", args.shards, "only with --sweep")
        storage = (Path(args.storage) if args.storage
                   else Path(args.report) / STORAGE_NAME if args.report else None)
        bar = _progress(show, settings.budget * len(settings.policies), "tune")
        cands = search(ctx, storage=storage, workers=workers,
                       on_result=None if bar is None else (lambda _c: bar.update(1)))
        method = "tpe"
    if bar is not None:
        bar.close()
    outcome = finish(ctx, cands, method)
    _emit(outcome, outcome_json(outcome), args, sys.stdout)
    return 0


def shard_path(out_dir: str | Path, index: int, shards: int) -> Path:
    return Path(out_dir) / f"shard-{index:04d}-of-{shards:04d}.json"


def _run_shard(args: argparse.Namespace) -> int:
    from autoscaler.tuning import prepare, run_shard
    from autoscaler.tuning.searching import candidate_json, settings_json

    settings = settings_from_args(args)
    shards = _whole("--shards", args.shards, 1)
    index = c.Range(low=0, high=shards, high_open=True, whole=True).parse_int("--index",
                                                                            args.index)
    c.output_dir("--out", args.out)
    targs = trace_args(args)
    trace, profile = load_inputs(targs)
    ctx = prepare(trace, profile, settings)
    cands = run_shard(ctx, index, shards)
    doc = {"format": SHARD_FORMAT, "settings": settings_json(settings), "inputs": targs,
           "shard": {"index": index, "shards": shards},
           "candidates": [candidate_json(c) for c in cands]}
    path = shard_path(args.out, index, shards)
    # Write then rename: a pod killed mid-write leaves no half file for the merge to read.
    tmp = path.with_suffix(".json.tmp")
    _write(str(tmp), json.dumps(doc, indent=1) + "\n", "--out")
    tmp.replace(path)
    print(f"shard {index}/{shards}: {len(cands)} candidates -> {path}")
    return 0


def _run_merge(args: argparse.Namespace) -> int:
    from autoscaler.tuning import finish, outcome_json, prepare
    from autoscaler.tuning.searching import (
        candidate_from_json,
        merge_candidates,
        settings_from_json,
    )

    folder = Path(args.dir)
    files = sorted(folder.glob("shard-*-of-*.json")) if folder.is_dir() else []
    if not files:
        raise AutoscalerError(f"merge {folder}: no shard-*-of-*.json files there")
    docs = []
    for f in files:
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AutoscalerError(f"merge {f}: not a readable shard file: {exc}") from exc
        if not isinstance(d, dict) or d.get("format") != SHARD_FORMAT:
            raise AutoscalerError(f"merge {f}: not a {SHARD_FORMAT} file")
        docs.append(d)
    first = docs[0]
    for f, d in zip(files, docs, strict=True):
        for key in ("settings", "inputs"):
            if d[key] != first[key]:
                raise AutoscalerError(f"merge {f}: {key} differ from {files[0].name}'s "
                                      "(shards of different runs in one folder?)")
        if d["shard"]["shards"] != first["shard"]["shards"]:
            raise AutoscalerError(f"merge {f}: shard count differs from {files[0].name}'s")
    settings = settings_from_json(first["settings"])
    trace, profile = load_inputs(first["inputs"])
    ctx = prepare(trace, profile, settings)
    cands = merge_candidates([[candidate_from_json(c) for c in d["candidates"]] for d in docs],
                             settings)
    outcome = finish(ctx, cands, "sweep")
    _emit(outcome, outcome_json(outcome), args, sys.stdout)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``tune`` / ``tune shard`` / ``tune merge``; returns the exit code (errors are
    raised; ``autoscaler.cli.main`` reports them)."""
    sub = getattr(args, "tune_command", None)
    if sub == "shard":
        return _run_shard(args)
    if sub == "merge":
        return _run_merge(args)
    return _run_search(args)


def format_table(doc: dict[str, Any]) -> str:
    s, o = doc["settings"], doc["oracle"]
    o_out = o["held_out"] or {}

    def cell(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    lines = [f"trace {doc['trace']['name']}: tuned for GPU-hours at attainment >= "
             f"{s['attainment']:.2%} (TTFT <= {s['slo_ttft_s']:g} s); {doc['method']}, budget "
             f"{doc['budget']} per policy, seed {doc['seed']}; holdout {s['holdout']:g}",
             f"{'policy':<11}{'feasible':>9}{'GPU-h in':>10}{'att. in':>9}{'/oracle':>8}"
             f"{'GPU-h out':>10}{'att. out':>9}{'/oracle':>8}",
             f"{'oracle':<11}{'':>9}{o['in_sample']['gpu_hours']:>10.2f}"
             f"{o['in_sample']['attainment']:>9.2%}{1.0:>8.2f}"
             f"{cell(o_out.get('gpu_hours'), '.2f'):>10}{cell(o_out.get('attainment'), '.2%'):>9}"
             f"{cell(o_out.get('gpu_vs_oracle'), '.2f'):>8}"]
    for name, p in doc["policies"].items():
        i, h = p["in_sample"] or {}, p["held_out"] or {}
        lines.append(
            f"{name:<11}{'yes' if p['feasible'] else 'no':>9}"
            f"{cell(i.get('gpu_hours'), '.2f'):>10}{cell(i.get('attainment'), '.2%'):>9}"
            f"{cell(i.get('gpu_vs_oracle'), '.2f'):>8}{cell(h.get('gpu_hours'), '.2f'):>10}"
            f"{cell(h.get('attainment'), '.2%'):>9}{cell(h.get('gpu_vs_oracle'), '.2f'):>8}")
    return "\n".join(lines)
