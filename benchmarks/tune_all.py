"""Tune predictive, HPA and KPA with the same budget on every trace and print the tables.

1. Per trace (the list and limits of ``replay_all.py``): each policy's tuned GPU-hours at
   >= 99% SLO attainment (TPE, ``--budget`` candidates per policy, tuned on the first 75% of
   the trace), the oracle's on the same part, the ratios, and how the predictive winner does
   on the held-out last 25%.
2. The wall time of a 200-candidate sweep (predictive, the embedded synthetic workload) with
   1 and 2 worker processes.

    .venv/bin/python benchmarks/tune_all.py [--budget N] [--workers N] [--quick]

Budget: measured single replays (s, full length) of predictive / HPA / KPA are about
40 / 9 / 51 on NASA x20 (14 d; the named forecasters cost 1.5-2.5x the trend) and
60 / 5 / 51 on ServeGen (14 d), ~4 s for all short traces together. At 75% of the trace
that is ~165 s per unit of budget on one core, ~90 s on two, so 16 candidates per policy
take ~24 min and the sweep timings ~5 min: the whole run stays within ~30-40 min on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from replay_all import TARGET, traces  # noqa: E402  (a sibling script, not a package)

from autoscaler.core.spec import PolicyKind  # noqa: E402
from autoscaler.sim.profiles import load_profile  # noqa: E402
from autoscaler.traces import default_workload  # noqa: E402
from autoscaler.tuning import TuneSettings, finish, outcome_json, prepare, search, sweep  # noqa: E402

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
DEFAULT_BUDGET = 16
SWEEP_CANDIDATES = 200


def _f(x: float | None, spec: str) -> str:
    return "-" if x is None or x != x else format(x, spec)


def _cell(p: dict[str, Any]) -> str:
    """'GPU-h' when the policy met the target, else 'best att. (GPU-h)'."""
    i = p["in_sample"]
    if i is None:
        return "-"
    if p["feasible"]:
        return f"{i['gpu_hours']:,.2f}"
    return f"none ({i['attainment']:.2%} at {i['gpu_hours']:,.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="skip the multi-day traces")
    parser.add_argument("--no-sweep-timing", action="store_true")
    args = parser.parse_args()

    profile = load_profile("llama3-8b-h100")
    settings = TuneSettings(budget=args.budget, attainment=TARGET, holdout=0.25, seed=0)
    head = [f"Budget: {args.budget} candidates per policy (TPE, seed 0, {args.workers} "
            f"workers); tuned on the first 75% of each trace, held out: the last 25%. "
            f"Cells: GPU-hours at >= {TARGET:.0%} attainment on the training part.", "",
            "| trace | oracle GPU-h | predictive | HPA | KPA | pred / oracle | pred / HPA | "
            "pred held-out att. | pred held-out GPU-h / oracle (in-sample) | wall (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines = list(head)
    started = time.perf_counter()
    for name, trace in traces(args.traces, args.quick):
        t0 = time.perf_counter()
        ctx = prepare(trace, profile, settings)
        doc = outcome_json(finish(ctx, search(ctx, workers=args.workers), "tpe"))
        pol = doc["policies"]
        oracle = doc["oracle"]["in_sample"]["gpu_hours"]
        pred, hpa = pol[PolicyKind.PREDICTIVE.value], pol[PolicyKind.HPA.value]
        pg = pred["in_sample"]["gpu_hours"] if pred["feasible"] else None
        hg = hpa["in_sample"]["gpu_hours"] if hpa["feasible"] else None
        held = pred["held_out"] or {}
        ins = pred["in_sample"] or {}
        lines.append(
            f"| {name} | {oracle:,.2f} | {_cell(pred)} | {_cell(hpa)} | "
            f"{_cell(pol[PolicyKind.KPA.value])} | "
            f"{_f(None if pg is None else pg / oracle, '.2f')} | "
            f"{_f(None if pg is None or hg is None else pg / hg, '.2f')} | "
            f"{_f(held.get('attainment'), '.2%')} (in {_f(ins.get('attainment'), '.2%')}) | "
            f"{_f(held.get('gpu_vs_oracle'), '.2f')} ({_f(ins.get('gpu_vs_oracle'), '.2f')}) | "
            f"{time.perf_counter() - t0:.0f} |")
        print(f"done: {name} ({time.perf_counter() - started:.0f} s so far)", file=sys.stderr,
              flush=True)
        print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines)
    if not args.no_sweep_timing:
        sw = TuneSettings(policies=(PolicyKind.PREDICTIVE,), budget=SWEEP_CANDIDATES, seed=0)
        ctx = prepare(default_workload(seed=0), profile, sw)
        rows = ["", f"Sweep of {SWEEP_CANDIDATES} predictive candidates on the embedded "
                "synthetic workload (4 h, tuned on 3 h):", "",
                "| workers | wall (s) | candidates / s |", "|---:|---:|---:|"]
        for workers in (1, 2):
            t0 = time.perf_counter()
            sweep(ctx, shards=max(workers, 4), workers=workers)
            wall = time.perf_counter() - t0
            rows.append(f"| {workers} | {wall:.0f} | {SWEEP_CANDIDATES / wall:.2f} |")
            print(rows[-1], file=sys.stderr, flush=True)
        text += "\n" + "\n".join(rows)
    text += f"\n\nTotal wall time: {time.perf_counter() - started:.0f} s.\n"
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
