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
from dataclasses import dataclass
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
MAX_BUDGET = 100_000
"""Candidates per policy: at ~1 s a replay, 100,000 is a day of work; 1e12 is a typo."""
MAX_WORKERS = 1024
RATE_SCALE = c.Range(low=0, low_open=True, high=1e3)
SYNTHETIC_DURATION = c.Range(low=1200, high=400 * 86_400, unit="seconds")
MAX_SHARDS = 100_000
SLO_PER_PROMPT_TOKEN = c.Range(low=0.0, high=0.01)
"""``--slo-ttft-per-prompt-token``, seconds/token: ``autoscaler replay``'s range
(``tuning.searching.MAX_SLO_PER_PROMPT_TOKEN``)."""
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
    # The same name, range and check as ``autoscaler replay``'s, so a length-aware SLO
    # compared there can be tuned here (tests/test_cli_tune_slo.py checks they agree).
    p.add_argument("--slo-ttft-per-prompt-token", type=c.number(SLO_PER_PROMPT_TOKEN),
                   default=0.0, metavar="S",
                   help="extra TTFT objective per prompt token, seconds (0..0.01; default 0: "
                   "a flat objective); every candidate's replay and bound use it")
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


def _whole(option: str, text: str, lo: int, hi: int | None = None) -> int:
    return c.Range(low=lo, high=hi, whole=True).parse_int(option, text)


def _policies(text: str) -> tuple[PolicyKind, ...]:
    return c.policy_list("--policy", text, TUNABLE)


@dataclass(frozen=True)
class TraceInputs:
    """Which trace is replayed, on which profile: recorded in shard files (``to_json``) so
    the merge replays the same one."""

    trace: str | None
    trace_format: str | None
    synthetic_duration: str
    rate_scale: str
    profile: str
    start: str | None = None
    duration: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TraceInputs:
        return cls(args.trace, args.trace_format, str(args.synthetic_duration),
                   str(args.rate_scale), args.profile, args.start, args.duration)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TraceInputs:
        # .get: shard files written before --start/--duration existed have neither key.
        return cls(doc.get("trace"), doc.get("trace_format"),
                   str(doc.get("synthetic_duration")), str(doc.get("rate_scale")),
                   str(doc.get("profile")), doc.get("start"), doc.get("duration"))

    def to_json(self) -> dict[str, Any]:
        return {"trace": self.trace, "trace_format": self.trace_format,
                "synthetic_duration": self.synthetic_duration, "rate_scale": self.rate_scale,
                "start": self.start, "duration": self.duration, "profile": self.profile}

    def load(self) -> tuple[Trace, ReplicaProfile]:
        rate = RATE_SCALE.parse("--rate-scale", self.rate_scale)
        dur = None
        if not self.trace:
            dur = SYNTHETIC_DURATION.parse("--synthetic-duration", self.synthetic_duration)
        profile = c.load_profile_input(self.profile)
        trace = c.load_trace_input(self.trace, self.trace_format, seed=0,
                                   synthetic_duration_s=dur, rate_scale=rate,
                                   start=self.start, duration=self.duration)
        return trace, profile


@dataclass(frozen=True)
class Outputs:
    """``--json``, ``--report`` and ``--emit-spec``: checked before the run, written after."""

    json_out: str | None
    report: str | None
    emit_spec: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Outputs:
        out = cls(args.json_out, args.report, args.emit_spec)
        if out.json_out and out.json_out != "-":
            c.writable_path("--json", out.json_out)
        if out.emit_spec:
            c.writable_path("--emit-spec", out.emit_spec)
        if out.report:
            c.writable_path("--report", out.report)
        return out


@dataclass(frozen=True)
class TuneCommand:
    """Every ``tune`` option, parsed and checked (a new flag: one ``add_argument``, one
    field, one line in ``from_args``)."""

    settings: Any  # autoscaler.tuning.TuneSettings (imported lazily)
    inputs: TraceInputs
    outputs: Outputs
    workers: int
    sweep: bool
    shards: int | None
    storage: Path | None
    progress: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TuneCommand:
        settings = settings_from_args(args)
        workers = _whole("--workers", args.workers, 1, MAX_WORKERS)
        shards = None
        if args.shards is not None:
            if not args.sweep:
                raise SpecError("--shards", args.shards, "only with --sweep")
            shards = _whole("--shards", args.shards, 1, MAX_SHARDS)
        storage = (Path(args.storage) if args.storage
                   else Path(args.report) / STORAGE_NAME if args.report else None)
        outputs = Outputs.from_args(args)
        if storage is not None and not args.sweep:
            if args.report:
                c.output_dir("--report", args.report)  # the default journal lives there
            check_journal(storage)
        return cls(settings, TraceInputs.from_args(args), outputs, workers, args.sweep,
                   shards, storage, not args.no_progress)


def check_trace(trace: Trace, profile: ReplicaProfile, settings: Any) -> None:
    """The replay's own check: a trace that makes a capacity or a replica bound impossible
    is blamed on the trace (and the options that scale it), not on a spec field."""
    from autoscaler.replaying import ReplayOptions

    c.derive_specs(trace, profile, ReplayOptions(
        slo_ttft_s=settings.slo_ttft_s,
        slo_ttft_s_per_prompt_token=settings.slo_ttft_s_per_prompt_token))


def settings_from_args(args: argparse.Namespace) -> Any:
    from autoscaler.tuning import TuneSettings

    s = TuneSettings(
        policies=_policies(args.policy),
        budget=_whole("--budget", args.budget, 1, MAX_BUDGET),
        attainment=c.Range(low=0, low_open=True, high=1).parse("--attainment",
                                                               args.attainment),
        slo_ttft_s=c.Range(low=0, low_open=True, high=3600, unit="seconds").parse(
            "--slo-ttft", args.slo_ttft),
        slo_ttft_s_per_prompt_token=float(args.slo_ttft_per_prompt_token),
        holdout=c.Range(low=0, high=1, high_open=True).parse("--holdout", args.holdout),
        seed=c.SEED.parse_int("--seed", args.seed),
        engine=args.engine)
    s.validate()
    return s


def _per_token(slope: float) -> str:
    """`` + 0.0002 s/prompt token`` for a length-aware objective, nothing for a flat one."""
    return f" + {slope:g} s/prompt token" if slope > 0.0 else ""


def _trial_note(cand: Any) -> str:
    """``hpa: 1.23 GPU-h at 99.1%`` for the trial just finished (what a log reader wants)."""
    if getattr(cand, "error", None):
        return f"{cand.policy}: failed"
    return f"{cand.policy}: {cand.gpu_hours:.2f} GPU-h at {cand.attainment:.1%}"


def _write(path: str, text: str, option: str) -> None:
    c.write_text(option, path, text)


def _emit(outcome: Any, doc: dict[str, Any], outputs: Outputs, out: Any) -> None:
    """Write --json / --report / --emit-spec and print the summary table."""
    from autoscaler.tuning.searching import overall_winner

    to_stdout = outputs.json_out == "-"
    print(format_table(doc), file=sys.stderr if to_stdout else out)
    if outputs.json_out:
        c.write_json("--json", outputs.json_out, doc, stdout=out)
    if outputs.report:
        from autoscaler.reporting.tune_report import write_tune_report

        index = write_tune_report(doc, Path(outputs.report))
        print(f"report: {index}", file=sys.stderr if to_stdout else out)
    if outputs.emit_spec:
        import yaml

        from autoscaler.config import spec_to_dict

        win = overall_winner(outcome)
        if win is None or win.spec is None:
            raise AutoscalerError(
                f"--emit-spec {outputs.emit_spec}: no policy reached attainment "
                f">= {doc['settings']['attainment']} in-sample; nothing to emit (raise "
                "--budget or lower --attainment)")
        _write(outputs.emit_spec, yaml.safe_dump(tidy_spec(spec_to_dict(win.spec)),
                                                 sort_keys=False), "--emit-spec")


# Sections each policy reads; an emitted spec leaves out the others (a user reading a KPA
# spec should not wonder what ``predictive.headroomQuantile`` does to it).
# ``behavior`` stays everywhere: the core applies it after every policy.
_SECTIONS = {"hpa": {"metrics", "behavior"}, "kpa": {"kpa", "behavior"},
             "predictive": {"predictive", "behavior"},
             "static": {"staticReplicas", "behavior"}, "oracle": {"behavior"},
             "hindsight": {"behavior"},
             "hpa-queue": {"metrics", "behavior"}, "hpa-kv": {"metrics", "behavior"},
             "hpa-running": {"metrics", "behavior"},
             "keda": {"metrics", "keda", "behavior"}, "wva": {"wva", "behavior"}}
_OPTIONAL_SECTIONS = {"metrics", "behavior", "kpa", "predictive", "staticReplicas", "keda",
                      "wva"}


def tidy_spec(doc: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    """``doc`` with floats rounded to ``digits`` significant digits but never below whole
    units (0.30000000000000004 -> 0.3, 7.123456 -> 7.123, 123456.789 -> 123457.0) and the
    sections its policy ignores left out."""
    import math

    def r(v: Any) -> Any:
        if isinstance(v, float) and math.isfinite(v) and v != 0:
            return round(v, max(0, digits - 1 - math.floor(math.log10(abs(v)))))
        if isinstance(v, dict):
            return {k: r(x) for k, x in v.items()}
        if isinstance(v, list):
            return [r(x) for x in v]
        return v

    keep = _SECTIONS.get(str(doc.get("policy")), _OPTIONAL_SECTIONS)
    out = {k: v for k, v in doc.items() if k not in _OPTIONAL_SECTIONS or k in keep}
    return {k: r(v) for k, v in out.items()}


def check_journal(path: Path) -> None:
    """An existing ``--storage`` file must be an optuna journal (JSON lines, each with an
    ``op_code``): optuna itself fails on anything else with a traceback, after the set-up."""
    if path.exists() and not path.is_file():
        raise SpecError("--storage", str(path), "", problem=f"{path} is not a file")
    if not path.exists():
        c.writable_path("--storage", path)
        return
    try:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except ValueError:  # bad UTF-8 or bad JSON
                    record = None
                if not (isinstance(record, dict) and "op_code" in record):
                    raise SpecError("--storage", str(path), "", source=f"{path}:{number}",
                                    problem="not an optuna journal record; give a journal "
                                    "an earlier `autoscaler tune` wrote, or a new file name")
    except OSError as exc:
        raise SpecError("--storage", str(path), "", problem=f"cannot read {path} "
                        f"({exc.strerror or exc})") from exc


def _run_search(cmd: TuneCommand) -> int:
    from autoscaler.tuning import finish, outcome_json, prepare, search, sweep

    settings = cmd.settings
    trace, profile = cmd.inputs.load()
    check_trace(trace, profile, settings)
    if cmd.progress:
        c.note(f"tune: trace {trace.name}, {trace.duration_s / 3600:.2f} h; profile "
               f"{profile.name}; SLO TTFT <= {settings.slo_ttft_s:g} s"
               f"{_per_token(settings.slo_ttft_s_per_prompt_token)} at attainment >= "
               f"{settings.attainment:g}; policies "
               f"{', '.join(k.value for k in settings.policies)}")
    ctx = prepare(trace, profile, settings)
    if cmd.sweep:
        shards = cmd.shards if cmd.shards is not None else cmd.workers
        with c.Progress(shards, "tune sweep", unit="shard", enabled=cmd.progress) as bar:
            cands = sweep(ctx, shards=shards, workers=cmd.workers,
                          on_shard=lambda _i: bar.update(1))
        method = "sweep"
    else:
        with c.Progress(settings.budget * len(settings.policies), "tune", unit="trial",
                        enabled=cmd.progress) as bar:
            cands = search(ctx, storage=cmd.storage, workers=cmd.workers,
                           on_result=lambda cand: bar.update(1, _trial_note(cand)))
        method = "tpe"
    outcome = finish(ctx, cands, method)
    _emit(outcome, outcome_json(outcome), cmd.outputs, sys.stdout)
    return 0


def shard_path(out_dir: str | Path, index: int, shards: int) -> Path:
    return Path(out_dir) / f"shard-{index:04d}-of-{shards:04d}.json"


def _run_shard(args: argparse.Namespace) -> int:
    from autoscaler.tuning import prepare, run_shard
    from autoscaler.tuning.searching import candidate_json, settings_json

    settings = settings_from_args(args)
    shards = _whole("--shards", args.shards, 1, MAX_SHARDS)
    index = c.Range(low=0, high=shards, high_open=True, whole=True).parse_int("--index",
                                                                            args.index)
    c.output_dir("--out", args.out)
    inputs = TraceInputs.from_args(args)
    trace, profile = inputs.load()
    check_trace(trace, profile, settings)
    ctx = prepare(trace, profile, settings)
    cands = run_shard(ctx, index, shards)
    doc = {"format": SHARD_FORMAT, "settings": settings_json(settings),
           "inputs": inputs.to_json(),
           "shard": {"index": index, "shards": shards},
           "candidates": [candidate_json(cand) for cand in cands]}
    path = shard_path(args.out, index, shards)
    # Write then rename: a pod killed mid-write leaves no half file for the merge to read.
    tmp = path.with_suffix(".json.tmp")
    _write(str(tmp), json.dumps(doc, indent=1) + "\n", "--out")
    tmp.replace(path)
    print(f"shard {index}/{shards}: {len(cands)} candidates -> {path}")
    return 0


def _run_merge(args: argparse.Namespace) -> int:
    from autoscaler.tuning import finish, outcome_json, prepare

    outputs = Outputs.from_args(args)
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
        if not (isinstance(d.get("settings"), dict) and isinstance(d.get("inputs"), dict)
                and isinstance(d.get("shard"), dict) and isinstance(d.get("candidates"), list)):
            raise AutoscalerError(f"merge {f}: a {SHARD_FORMAT} file needs settings, inputs, "
                                  "shard and candidates")
        docs.append(d)
    first = docs[0]
    for f, d in zip(files, docs, strict=True):
        for key in ("settings", "inputs"):
            if d[key] != first[key]:
                raise AutoscalerError(f"merge {f}: {key} differ from {files[0].name}'s "
                                      "(shards of different runs in one folder?)")
        if d["shard"].get("shards") != first["shard"].get("shards"):
            raise AutoscalerError(f"merge {f}: shard count differs from {files[0].name}'s")
    try:
        settings = settings_from_json(first["settings"])
        parts = [[candidate_from_json(cand) for cand in d["candidates"]] for d in docs]
    except (KeyError, TypeError, ValueError) as exc:
        raise AutoscalerError(f"merge {folder}: a shard file has a malformed field: "
                              f"{exc!r}") from exc
    trace, profile = TraceInputs.from_json(first["inputs"]).load()
    check_trace(trace, profile, settings)
    ctx = prepare(trace, profile, settings)
    cands = merge_candidates(parts, settings)
    outcome = finish(ctx, cands, "sweep")
    _emit(outcome, outcome_json(outcome), outputs, sys.stdout)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``tune`` / ``tune shard`` / ``tune merge``; returns the exit code (errors are
    raised; ``autoscaler.cli.main`` reports them)."""
    sub = getattr(args, "tune_command", None)
    if sub == "shard":
        return _run_shard(args)
    if sub == "merge":
        return _run_merge(args)
    return _run_search(TuneCommand.from_args(args))


def format_table(doc: dict[str, Any]) -> str:
    """The summary table, held-out figures first (the part no candidate was chosen on is the
    one that says how the winner will do), then in-sample. ``/bound`` is GPU-hours over the
    proven lower bound at that attainment; ``/hindsight`` over the hindsight policy's, a
    heuristic with foresight (not a bound: below 1 is possible)."""
    s = doc["settings"]
    o = doc.get("hindsight") or doc["oracle"]  # "oracle": files written before the rename
    o_out = o["held_out"] or {}

    def cell(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    def vs(f: dict[str, Any], key: str) -> float | None:
        return f.get(key, f.get("gpu_vs_oracle") if key == "gpu_vs_hindsight" else None)

    head = (f"{'GPU-h':>8}{'att.':>9}{'/bound':>8}{'/hindsight':>11}")
    lines = [f"trace {doc['trace']['name']}: tuned for GPU-hours at attainment >= "
             f"{s['attainment']:.2%} (TTFT <= {s['slo_ttft_s']:g} s"
             f"{_per_token(s.get('slo_ttft_s_per_prompt_token') or 0.0)}); "
             f"{doc['method']}, budget "
             f"{doc['budget']} per policy, seed {doc['seed']}; holdout {s['holdout']:g}",
             f"{'':<11}{'':>9}{'held out':^36}{'in sample':^36}",
             f"{'policy':<11}{'feasible':>9}{head}{head}"]

    def figs(f: dict[str, Any]) -> str:
        return (f"{cell(f.get('gpu_hours'), '.2f'):>8}{cell(f.get('attainment'), '.2%'):>9}"
                f"{cell(f.get('gpu_vs_bound'), '.2f'):>8}"
                f"{cell(vs(f, 'gpu_vs_hindsight'), '.2f'):>11}")

    lines.append(f"{'hindsight':<11}{'':>9}{figs(o_out)}{figs(o['in_sample'])}")
    for name, p in doc["policies"].items():
        i, h = p["in_sample"] or {}, p["held_out"] or {}
        lines.append(f"{name:<11}{'yes' if p['feasible'] else 'no':>9}{figs(h)}{figs(i)}")
    scoring = (doc.get("split") or {}).get("held_out_scoring")
    if scoring:
        lines.append(f"held out: {scoring}")
    return "\n".join(lines)
