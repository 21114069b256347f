"""Replay every trace in ../shared/traces through every policy and print the results tables.

1. Every policy at its default settings (what ``autoscaler replay`` runs).
2. Our goal, measured honestly: at >= 99% SLO attainment, the GPU-hours of the cheapest
   predictive setting on a small grid (headroom quantile x target utilisation), against the
   oracle and against the cheapest HPA on a grid of request-rate targets that reaches at
   least the same attainment ("tuned vs tuned", same grid budget for neither more than the
   other needs). Where no setting reaches the target, the best attainment is shown.

    .venv/bin/python benchmarks/replay_all.py [--traces DIR] [--markdown FILE] [--quick]

The README's results tables are pasted from its output.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from autoscaler.core.spec import MetricTarget, MetricTargetType, PolicyKind, Spec
from autoscaler.core.types import Signal
from autoscaler.replaying import (
    DEFAULT_POLICIES,
    ReplayOptions,
    capacity_for,
    compare,
    default_specs,
)
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.sim.replay import replay
from autoscaler.traces import default_workload, load_trace, scale_trace
from autoscaler.traces.model import Trace

HERE = Path(__file__).resolve().parent
DEFAULT_TRACES = HERE.parent.parent / "shared" / "traces"
TARGET = 0.99

HPA_UTILIZATION_GRID = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)
"""HPA target = this fraction of one replica's request rate at the SLO."""
PREDICTIVE_GRID = tuple(itertools.product((0.5, 0.75, 0.9, 0.97, 0.99), (0.5, 0.7, 0.85, 1.0)))
"""(headroom quantile, target utilisation) pairs tried for the predictive policy."""


def first_days(trace: Trace, days: float) -> Trace:
    """The first ``days`` of a rate-level trace."""
    assert trace.rates_rps is not None and trace.resolution_s is not None
    n = int(days * 86400 / trace.resolution_s)
    return dataclasses.replace(
        trace, name=f"{trace.name}[:{days:g}d]", rates_rps=trace.rates_rps[:n],
        duration_s=float(min(trace.duration_s, n * trace.resolution_s)))


def traces(root: Path, quick: bool) -> list[tuple[str, Trace]]:
    out: list[tuple[str, Trace]] = [("synthetic (embedded, 4 h)", default_workload(seed=0))]
    if not root.is_dir():
        print(f"note: {root} not found; only the embedded workload is replayed", file=sys.stderr)
        return out
    conv = root / "AzureLLMInferenceTrace_conv.csv"
    code = root / "AzureLLMInferenceTrace_code.csv"
    nasa = root / "nasa_http_1995" / "workload.tbz2"
    servegen = root / "servegen_language_m-small"
    # The Azure hours average 5.5 and 2.6 req/s: one 8B replica nearly carries them, so they
    # are replayed at x5 as well, where the policies have something to decide.
    if conv.exists():
        t = load_trace(conv)
        out += [("Azure conv 2023 (1 h)", t), ("Azure conv 2023 x5", scale_trace(t, rate=5.0))]
    if code.exists():
        t = load_trace(code)
        out += [("Azure code 2023 (1 h)", t), ("Azure code 2023 x5", scale_trace(t, rate=5.0))]
    if not quick and nasa.exists():
        # 0.68 req/s on average: x20 looks like a modest LLM service (~14 req/s); the first
        # 14 days (July 1-14, 1995) keep the run short.
        out.append(("NASA 1995 x20 (14 d)",
                    first_days(scale_trace(load_trace(nasa), rate=20.0), 14.0)))
    if not quick and servegen.exists():
        out.append(("ServeGen m-small (14 d)", load_trace(servegen)))
    return out


def cheapest(trace: Trace, profile: ReplicaProfile, specs: list[Spec],
             target: float) -> tuple[int | None, float, float, float]:
    """(index of the cheapest spec reaching ``target``, its GPU-h, its attainment, best
    attainment seen)."""
    best: tuple[int | None, float, float] = (None, float("nan"), float("nan"))
    best_att = 0.0
    for i, spec in enumerate(specs):
        s = replay(trace, spec, profile).summary
        best_att = max(best_att, s.slo_attainment)
        if s.slo_attainment >= target and (best[0] is None or s.gpu_hours < best[1]):
            best = (i, s.gpu_hours, s.slo_attainment)
    return (*best, best_att)


def _f(value: float, spec: str) -> str:
    """A table cell: the number, or '-' where there is none."""
    return "-" if value != value else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--quick", action="store_true", help="skip the multi-day traces")
    args = parser.parse_args()

    profile = load_profile("llama3-8b-h100")
    options = ReplayOptions(slo_ttft_s=2.0)
    lines = ["| trace | policy | SLO attainment | GPU-hours | TTFT p99 (s) | scale events | "
             "mean replicas | wall (s) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    goal = ["| trace | oracle GPU-h | predictive: best setting (q, util) | att. | GPU-h | "
            "/ oracle | tuned HPA: target util | att. | GPU-h | predictive / HPA |",
            "|---|---:|---|---:|---:|---:|---|---:|---:|---:|"]
    started = time.perf_counter()
    for name, trace in traces(args.traces, args.quick):
        walls: dict[PolicyKind, float] = {}
        mark = [time.perf_counter()]

        def lap(kind: PolicyKind, _result: object, mark: list[float] = mark,
                walls: dict[PolicyKind, float] = walls) -> None:
            now = time.perf_counter()
            walls[kind] = now - mark[0]
            mark[0] = now

        comp = compare(trace, profile, DEFAULT_POLICIES, options, on_result=lap)
        for kind, result in comp.results.items():
            s = result.summary
            lines.append(f"| {name} | {kind.value} | {s.slo_attainment:.2%} | "
                         f"{s.gpu_hours:,.1f} | {s.ttft_p99_s:.2f} | {s.scale_events} | "
                         f"{s.mean_replicas:.2f} | {walls[kind]:.1f} |")
        oracle_gpu = comp.results[PolicyKind.ORACLE].summary.gpu_hours

        cap = capacity_for(trace, profile, options.slo_ttft_s)
        base = default_specs(trace, profile, cap, options)
        pred_specs = [replace(base[PolicyKind.PREDICTIVE], predictive=replace(
            base[PolicyKind.PREDICTIVE].predictive, headroom_quantile=q, target_utilization=u))
            for q, u in PREDICTIVE_GRID]
        p_i, p_gpu, p_att, p_best = cheapest(trace, profile, pred_specs, TARGET)
        hpa_target = p_att if p_i is not None else TARGET
        hpa_specs = [replace(base[PolicyKind.HPA], metrics=(MetricTarget(
            Signal.REQUEST_RATE.value, MetricTargetType.AVERAGE_VALUE,
            round(cap.requests_per_second * u, 3)),)) for u in HPA_UTILIZATION_GRID]
        h_i, h_gpu, h_att, h_best = cheapest(trace, profile, hpa_specs, hpa_target)
        p_set = (f"{PREDICTIVE_GRID[p_i][0]:g}, {PREDICTIVE_GRID[p_i][1]:g}" if p_i is not None
                 else f"none reached {TARGET:.0%} (best {p_best:.2%})")
        h_set = (f"{HPA_UTILIZATION_GRID[h_i]:g}" if h_i is not None
                 else f"none reached {hpa_target:.2%} (best {h_best:.2%})")
        ratio_o = p_gpu / oracle_gpu if p_i is not None else float("nan")
        ratio_h = p_gpu / h_gpu if p_i is not None and h_i is not None else float("nan")
        goal.append(f"| {name} | {oracle_gpu:,.1f} | {p_set} | {_f(p_att, '.2%')} | "
                    f"{_f(p_gpu, ',.1f')} | {_f(ratio_o, '.2f')} | {h_set} | "
                    f"{_f(h_att, '.2%')} | {_f(h_gpu, ',.1f')} | {_f(ratio_h, '.2f')} |")
        print(f"done: {name} ({time.perf_counter() - started:.0f} s so far)", file=sys.stderr,
              flush=True)
    text = ("\n".join(lines) + "\n\n" + "\n".join(goal) + "\n\n"
            f"Total wall time: {time.perf_counter() - started:.0f} s; numpy {np.__version__}.\n")
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
