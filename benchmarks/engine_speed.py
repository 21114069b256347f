"""Wall time per policy of the two engines on the real traces, and peak memory.

    .venv/bin/python benchmarks/engine_speed.py [--traces ../shared/traces]

* request engine: the Azure 2023 conversation trace (19,366 requests, ~1 h);
* fluid engine: 14 days of the summed ServeGen m-small client rates, scaled to a mean of
  1,000 req/s; then the same with bursts: every 1-s rate multiplied by a Gamma draw of
  mean 1 whose variance is what a renewal process with inter-arrival CV 3 (ServeGen's
  rate-weighted CV) gives a 1-s count: Var = rate x CV^2, so the factor's CV is
  3 / sqrt(rate) (about 0.095 at 1,000 req/s).

Besides wall time it prints, per run, the share of decisions at which
``num_requests_waiting`` was above zero (the queue signal a queue-size HPA reads) and the
preemptions, so a change in the engine's queue model shows up here.

Each policy runs with the spec ``autoscaler replay`` builds for it (KPA decides every 2 s,
the others every 15 s). Wall time is for the replay alone, calibration excluded (it is
cached and printed once per trace). Run it on an otherwise idle machine; the process is
single-threaded, so it uses one core.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from autoscaler.core.types import Decision, Signal, Snapshot
from autoscaler.replaying import DEFAULT_POLICIES, ReplayOptions, capacity_for, default_specs
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import replay
from autoscaler.traces import load_trace, scale_trace

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    ap.add_argument("--runs", default="request,fluid,bursty",
                    help="comma-separated subset of request,fluid,bursty")
    args = ap.parse_args()
    profile = load_profile("llama3-8b-h100")
    servegen = load_trace(args.traces / "servegen_language_m-small")
    mean = servegen.request_count / servegen.duration_s
    flat = scale_trace(servegen, rate=1000.0 / mean)
    assert flat.rates_rps is not None
    rng = np.random.default_rng(0)
    per_s = flat.binned_rates(1.0)
    shape = np.maximum(per_s, 1e-9) / 9.0  # Gamma(k, 1/k): mean 1, CV^2 = 9 / rate
    bursty = replace(flat, name=f"{flat.name} bursty (CV 3)", resolution_s=1.0,
                     rates_rps=per_s * rng.gamma(shape, 1.0 / shape))
    runs = [
        ("request", load_trace(args.traces / "AzureLLMInferenceTrace_conv.csv")),
        ("fluid", flat),
        ("fluid", bursty),
    ]
    runs = [r for r, key in zip(runs, ("request", "fluid", "bursty"), strict=True)
            if key in args.runs.split(",")]
    options = ReplayOptions()
    for engine, trace in runs:
        t0 = time.perf_counter()
        cap = capacity_for(trace, profile, options.slo_ttft_s)
        print(f"{trace.name}: {trace.request_count:,.0f} requests over "
              f"{trace.duration_s / 86400:.2f} d; calibration {cap.requests_per_second:.2f} "
              f"req/s per replica ({time.perf_counter() - t0:.2f} s)")
        specs = default_specs(trace, profile, cap, options)
        for policy in DEFAULT_POLICIES:
            spec = specs[policy]
            seen: list[float] = []

            def log(_now: float, snap: Snapshot, _d: Decision,
                    seen: list[float] = seen) -> None:
                w = snap.metrics.get(Signal.QUEUE_DEPTH)
                seen.append(math.nan if w is None else w.value)

            t0 = time.perf_counter()
            res = replay(trace, spec, profile, engine=engine,
                         scrape_interval_s=min(15.0, spec.sync_period_s), on_decision=log)
            wall = time.perf_counter() - t0
            s = res.summary
            q = np.asarray(seen)
            share = float(np.mean(q[np.isfinite(q)] > 0)) if np.isfinite(q).any() else 0.0
            print(f"  {engine:7s} {policy.value:10s} {wall:7.2f} s  {res.decisions:7d} "
                  f"decisions  attainment {s.slo_attainment:.4f}  GPU-h {s.gpu_hours:9.1f}  "
                  f"events {s.scale_events}  waiting>0 at {share:.1%} of decisions")
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {rss_kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
