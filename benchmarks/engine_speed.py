"""CPU and wall seconds per policy of the two engines on the real traces, and peak memory.

    .venv/bin/python benchmarks/engine_speed.py [--traces ../shared/traces] [--readme]

Goals (issue 11), each on one core:

* request engine: the Azure 2023 conversation trace (19,366 requests, ~1 h) under 2 s per
  policy;
* fluid engine: 14 days of ServeGen m-small *with its bursts* (``load_trace``'s default:
  per-second counts drawn from each window's fitted Gamma or Weibull inter-arrival
  distribution, 1.04 billion requests, collection gaps as missing data) under 60 s per
  policy.

Besides time it prints, per run, the share of decisions at which ``num_requests_waiting``
was above zero (the queue signal a queue-size HPA reads), so a change in the engine's queue
model shows up here.

Each policy runs with the spec ``autoscaler replay`` builds for it (the KPA decides every
2 s, the others every 15 s). Time is for the replay alone, calibration excluded (printed
once per trace). The process is single-threaded; CPU seconds (``time.process_time``) are
the figure to compare on a shared machine, where wall time mostly measures the other
processes. The load average is printed with the table.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
from _readme import add_readme_flag, publish

from autoscaler.core.spec import PolicyKind
from autoscaler.core.types import Decision, Signal, Snapshot
from autoscaler.replaying import (
    DEFAULT_POLICIES,
    ReplayOptions,
    capacity_for,
    default_specs,
)
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import replay
from autoscaler.traces import load_trace
from autoscaler.traces.window import window_trace

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
GOALS_S = {"request": 2.0, "fluid": 60.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    ap.add_argument("--runs", default="request,fluid",
                    help="comma-separated subset of request (Azure conv), fluid (ServeGen)")
    ap.add_argument("--days", type=float, default=14.0,
                    help="days of ServeGen for the fluid run (the goal is for 14)")
    ap.add_argument("--policies", default=",".join(
        [p.value for p in DEFAULT_POLICIES] + [PolicyKind.HPA_RUNNING.value]))
    add_readme_flag(ap)
    args = ap.parse_args()
    profile = load_profile("llama3-8b-h100")
    runs: list[tuple[str, str]] = []
    wanted = args.runs.split(",")
    if "request" in wanted:
        runs.append(("request", "AzureLLMInferenceTrace_conv.csv"))
    if "fluid" in wanted:
        runs.append(("fluid", "servegen_language_m-small"))
    policies = [PolicyKind(p) for p in args.policies.split(",")]
    options = ReplayOptions()
    rows: list[str] = []
    loads: list[float] = []
    for engine, rel in runs:
        trace = load_trace(args.traces / rel)
        if engine == "fluid" and args.days * 86400 < trace.duration_s:
            trace = window_trace(trace, 0.0, args.days * 86400)
        t0 = time.process_time()
        cap = capacity_for(trace, profile, options.slo_ttft_s)
        print(f"{trace.name}: {trace.request_count:,.0f} requests over "
              f"{trace.duration_s / 86400:.2f} d; calibration {cap.requests_per_second:.2f} "
              f"req/s per replica ({time.process_time() - t0:.2f} CPU s)", flush=True)
        specs = default_specs(trace, profile, cap, options)
        for policy in policies:
            spec = specs[policy]
            seen: list[float] = []

            def log(_now: float, snap: Snapshot, _d: Decision,
                    seen: list[float] = seen) -> None:
                w = snap.metrics.get(Signal.QUEUE_DEPTH)
                seen.append(math.nan if w is None else w.value)

            w0, c0 = time.perf_counter(), time.process_time()
            res = replay(trace, spec, profile, engine=engine,
                         scrape_interval_s=min(15.0, spec.sync_period_s), on_decision=log)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            loads.append(os.getloadavg()[0])
            s = res.summary
            q = np.asarray(seen)
            share = float(np.mean(q[np.isfinite(q)] > 0)) if np.isfinite(q).any() else 0.0
            goal = GOALS_S[engine]
            rows.append(
                f"| {trace.name} | {engine} | {policy.value} | {cpu:.1f} | {wall:.1f} | "
                f"{'yes' if cpu < goal else 'no'} (< {goal:g} s) | {res.decisions:,} | "
                f"{s.slo_attainment:.2%} | {s.gpu_hours:,.1f} | {share:.1%} |")
            print(rows[-1], flush=True)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = "\n".join([
        "| trace | engine | policy | CPU s | wall s | goal met (CPU) | decisions | SLO att. "
        "| GPU-h | waiting > 0 |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Load average (1 min) while running: {min(loads, default=0):.1f}-"
        f"{max(loads, default=0):.1f} on {os.cpu_count()} cores; peak RSS {rss_mib:,.0f} "
        f"MiB. `benchmarks/engine_speed.py --runs {args.runs} --days {args.days:g}`.",
    ])
    publish("engine_speed", table, readme=args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
