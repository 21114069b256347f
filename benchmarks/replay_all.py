"""Regenerate the README's replay tables: every public trace through every policy, each row
with the one ``autoscaler replay`` command that reproduces it.

1. Every policy at its default settings: ``autoscaler replay`` itself is run (as a
   subprocess, the command printed next to the table), and its JSON read back: attainment,
   worst hour, share of hours at the target, GPU-hours, the proven bound at that attainment
   (``autoscaler/sim/bound.py``) and the ratio to it, TTFT p99, replica starts per day and
   cold-start GPU-hours.
2. At >= 99% attainment, the cheapest predictive setting on a small grid (headroom quantile
   x target utilisation) and the cheapest HPA request-rate target on a grid, each against
   the bound. The winning specs are written as YAML files next to the markdown, with the
   command (``--spec FILE``) that replays them.

    .venv/bin/python benchmarks/replay_all.py [--traces DIR] [--out DIR] [--quick] [--readme]

It prints a markdown block (also written to ``OUT/replay_all.md``); with ``--readme`` the
defaults table, its commands and the bound's definition replace the README section
``replay_defaults``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _readme import add_readme_flag, publish

from autoscaler.cli.common import load_trace_input
from autoscaler.config import spec_to_dict
from autoscaler.core.spec import MetricTarget, MetricTargetType, PolicyKind, Spec
from autoscaler.core.types import Signal
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.sim.replay import replay
from autoscaler.traces.model import Trace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
"""Commands run from the clone's root, so the printed ones work pasted there."""
DEFAULT_TRACES = Path("..") / "shared" / "traces"
TARGET = 0.99
PROFILE = "llama3-8b-h100"

POLICIES = "hpa,hpa-queue,hpa-running,hpa-kv,keda,kpa,wva,predictive,hindsight,static"
"""Every policy, the HPAs side by side on request rate, queue, running requests and KV cache
(``hpa-running`` is not in ``autoscaler replay``'s default list yet, so every row names them)."""

HPA_UTILIZATION_GRID = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)
"""HPA target = this fraction of one replica's request rate at the SLO."""
PREDICTIVE_GRID = tuple(itertools.product((0.5, 0.75, 0.9, 0.97, 0.99), (0.5, 0.7, 0.85, 1.0)))
"""(headroom quantile, target utilisation) pairs tried for the predictive policy."""


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "autoscaler"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "autoscaler"]


def rows(root: Path, quick: bool) -> list[tuple[str, list[str]]]:
    """(label, ``autoscaler replay`` arguments) per README row."""
    out: list[tuple[str, list[str]]] = [("synthetic (embedded, 4 h)", ["--policies", POLICIES])]
    if not (ROOT / root).is_dir():
        print(f"note: {root} not found; only the embedded workload is replayed", file=sys.stderr)
        return out
    conv = root / "AzureLLMInferenceTrace_conv.csv"
    code = root / "AzureLLMInferenceTrace_code.csv"
    nasa = root / "nasa_http_1995" / "workload.tbz2"
    servegen = root / "servegen_language_m-small"
    # The Azure hours average 5.5 and 2.6 req/s: one 8B replica nearly carries them, so they
    # are replayed at x5 as well, where the policies have something to decide.
    for label, path in (("Azure conv 2023", conv), ("Azure code 2023", code)):
        if (ROOT / path).exists():
            out += [(f"{label} (1 h)", ["--trace", str(path), "--policies", POLICIES]),
                    (f"{label} x5", ["--trace", str(path), "--rate-scale", "5",
                                     "--policies", POLICIES])]
    if not quick and (ROOT / nasa).exists():
        # 0.68 req/s on average: x20 (20 superposed days, see --rate-scale) looks like a
        # modest LLM service (~14 req/s); the first 14 days keep the run short.
        out.append(("NASA 1995 x20 (first 14 d)",
                    ["--trace", str(nasa), "--rate-scale", "20", "--duration", "14d",
                     "--policies", POLICIES]))
    if not quick and (ROOT / servegen).exists():
        out.append(("ServeGen m-small (14 d)", ["--trace", str(servegen),
                                                "--policies", POLICIES]))
    return out


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cli(args: list[str]) -> tuple[dict[str, Any], float, str]:
    """Run ``autoscaler replay ARGS --json FILE``; (its JSON, CPU seconds, the command)."""
    with tempfile.TemporaryDirectory() as tmp:
        js = Path(tmp) / "r.json"
        cmd = [*_cli(), "replay", *args, "--no-progress", "--json", str(js)]
        c0 = _children_cpu_s()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        wall = _children_cpu_s() - c0
        if proc.returncode != 0:
            raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}): "
                             f"{proc.stderr.strip()}")
        doc: dict[str, Any] = json.loads(js.read_text())
    shown = ["autoscaler", "replay", *args, "--json", "-"]
    return doc, wall, shlex.join(shown)


def _f(value: float | None, spec: str) -> str:
    """A table cell: the number, or '-' where there is none."""
    return "-" if value is None or value != value else format(value, spec)


def default_table(results: list[tuple[str, dict[str, Any], float, str]]) -> list[str]:
    lines = ["| trace | policy | SLO att. | worst hour | hours >= 99% | GPU-h | bound | / bound "
             "| TTFT p99 (s) | starts / day | cold-start GPU-h |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, doc, _, _ in results:
        for r in doc["results"]:
            lines.append(
                f"| {label} | {r['policy']} | {r['slo_attainment']:.2%} | "
                f"{_f(r['worst_hour_attainment'], '.1%')} | "
                f"{_f(r['hours_meeting_target'], '.0%')} | {r['gpu_hours']:,.1f} | "
                f"{_f(r['bound_gpu_hours'], ',.1f')} | {_f(r['gpu_vs_bound'], '.2f')} | "
                f"{_f(r['ttft_p99_s'], '.2f')} | {r['replica_starts_per_day']:,.1f} | "
                f"{r['cold_start_gpu_hours']:,.2f} |")
    lines += ["", "Reproduce each trace's rows (CPU seconds of the whole command, every "
              "policy, calibration included):", ""]
    lines += [f"- {label} ({wall:.0f} s): `{cmd}`" for label, _, wall, cmd in results]
    return lines


def cheapest(trace: Trace, profile: ReplicaProfile, specs: list[Spec],
             target: float) -> tuple[int | None, Any, float]:
    """(index of the cheapest spec reaching ``target``, its summary, best attainment)."""
    best_i: int | None = None
    best: Any = None
    best_att = 0.0
    for i, spec in enumerate(specs):
        s = replay(trace, spec, profile).summary
        best_att = max(best_att, s.slo_attainment)
        if s.slo_attainment >= target and (best is None or s.gpu_hours < best.gpu_hours):
            best_i, best = i, s
    return best_i, best, best_att


def load_row(args: list[str]) -> Trace:
    """The trace a row's arguments replay (for the grid search, in-process), loaded by the
    CLI's own loader so that scaling and windows are the same."""

    def opt(name: str) -> str | None:
        return args[args.index(name) + 1] if name in args else None

    path = opt("--trace")
    return load_trace_input(None if path is None else str(ROOT / path), None,
                            rate_scale=float(opt("--rate-scale") or 1.0),
                            start=opt("--start"), duration=opt("--duration"))


def tuned_table(rows_: list[tuple[str, list[str]]], out: Path,
                profile: ReplicaProfile) -> list[str]:
    lines = ["| trace | predictive (q, util) | att. | GPU-h | / bound | HPA target util | att. "
             "| GPU-h | / bound | predictive / HPA |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    cmds: list[str] = []
    options = ReplayOptions(slo_ttft_s=2.0)
    for label, args in rows_:
        trace = load_row(args)
        cap = capacity_for(trace, profile, options.slo_ttft_s)
        base = default_specs(trace, profile, cap, options)
        pred = [replace(base[PolicyKind.PREDICTIVE], predictive=replace(
            base[PolicyKind.PREDICTIVE].predictive, headroom_quantile=q, target_utilization=u))
            for q, u in PREDICTIVE_GRID]
        p_i, p_s, p_best = cheapest(trace, profile, pred, TARGET)
        hpa = [replace(base[PolicyKind.HPA], metrics=(MetricTarget(
            Signal.REQUEST_RATE.value, MetricTargetType.AVERAGE_VALUE,
            round(cap.requests_per_second * u, 3)),)) for u in HPA_UTILIZATION_GRID]
        h_i, h_s, h_best = cheapest(trace, profile, hpa,
                                    p_s.slo_attainment if p_s is not None else TARGET)
        slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
        cells = []
        for kind, i, s, best, specs, grid in (
                ("predictive", p_i, p_s, p_best, pred, PREDICTIVE_GRID),
                ("hpa", h_i, h_s, h_best, hpa, HPA_UTILIZATION_GRID)):
            if i is None:
                cells.append((f"none reached (best {best:.2%})", None, None, None))
                continue
            path = out / f"{slug}-{kind}.yaml"
            path.write_text(yaml.safe_dump(spec_to_dict(specs[i]), sort_keys=False))
            argv = ["autoscaler", "replay", *args, "--policies", kind, "--spec", str(path)]
            cmds.append(f"- {label}, tuned {kind}: `{shlex.join(argv)}`")
            setting = grid[i]
            name = (f"{setting[0]:g}, {setting[1]:g}" if isinstance(setting, tuple)
                    else f"{setting:g}")
            cells.append((name, s.slo_attainment, s.gpu_hours,
                          s.gpu_hours / s.bound_gpu_hours if s.bound_gpu_hours > 0 else None))
        (pn, pa, pg, pb), (hn, ha, hg, hb) = cells
        ratio = pg / hg if pg is not None and hg is not None else None
        lines.append(f"| {label} | {pn} | {_f(pa, '.2%')} | {_f(pg, ',.1f')} | {_f(pb, '.2f')} | "
                     f"{hn} | {_f(ha, '.2%')} | {_f(hg, ',.1f')} | {_f(hb, '.2f')} | "
                     f"{_f(ratio, '.2f')} |")
        print(f"tuned: {label}", file=sys.stderr, flush=True)
    return [*lines, "", "Reproduce the tuned rows:", "", *cmds]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    ap.add_argument("--out", type=Path, default=Path("reports/replay_all"),
                    help="folder for the tuned specs and replay_all.md")
    ap.add_argument("--quick", action="store_true", help="skip the multi-day traces")
    ap.add_argument("--no-tuned", action="store_true", help="skip the grid-search table")
    add_readme_flag(ap)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows_ = rows(args.traces, args.quick)
    results = []
    loads: list[float] = []
    for label, row_args in rows_:
        doc, cpu, cmd = run_cli(row_args)
        results.append((label, doc, cpu, cmd))
        loads.append(os.getloadavg()[0])
        print(f"done: {label} ({cpu:.0f} CPU s)", file=sys.stderr, flush=True)
    section = "\n".join([
        *default_table(results), "",
        "Bound: " + results[0][1]["bound"]["definition"], "",
        f"`benchmarks/replay_all.py{' --quick' if args.quick else ''} --no-tuned`: "
        f"{sum(r[2] for r in results):.0f} CPU s, {time.perf_counter() - started:.0f} s wall "
        f"at load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores "
        "(2 s TTFT SLO, llama3-8b-h100)."])
    publish("replay_defaults", section, readme=args.readme)
    text = ["### Replay at defaults (2 s TTFT SLO, llama3-8b-h100)", "", section, ""]
    if not args.no_tuned:
        text += ["### Cheapest setting at >= 99% attainment (grid search, whole trace)", "",
                 *tuned_table(rows_, args.out, load_profile(PROFILE)), ""]
    text.append(f"Total wall time: {time.perf_counter() - started:.0f} s; "
                f"numpy {np.__version__}.")
    block = "\n".join(text)
    if not args.no_tuned:
        print(block)
    (args.out / "replay_all.md").write_text(block + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
