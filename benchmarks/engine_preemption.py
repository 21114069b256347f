"""Where the fluid engine's missing preemptions matter: request vs fluid engine, fixed fleets.

    .venv/bin/python benchmarks/engine_preemption.py [--replicas 4] [--minutes 30]

The request engine models vLLM V1's preemption by recompute: blocks are allocated as tokens
are computed, so admissions overcommit the KV cache, and when a running request needs a
block that is not free the newest admitted one is preempted and later prefilled again. The
fluid engine has no preemptions; it caps its full batch at what the KV cache holds for the
mean request (``ReplicaProfile.max_batch``) and queues the rest.

This script replays the same Poisson arrivals (lognormal lengths, sigma 0.5, around the
means below) on a *fixed* fleet through both engines, so only the engines differ, at loads
given as a fraction of the fluid engine's full-batch throughput ``mu``. It prints
attainment, TTFT p50/p99, the request engine's preemptions per request and its sustained
first-token throughput per replica against ``mu``. It also runs the public Azure traces at
x5 with small fleets, where the KV cache does not bind with ``max_num_seqs`` 256 (their
mean prompt + output/2 stays under 396,256 / 256 = 1,548 tokens).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from autoscaler.cli.common import load_trace_input
from autoscaler.core import decide as core_decide
from autoscaler.core.spec import PolicyKind
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.fluid_engine import throughput_rps
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.traces.model import TokenMix, Trace

R = importlib.import_module("autoscaler.sim.replay")
DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
MIXES = ((2000, 1000), (1000, 2000), (4000, 500), (1000, 200))
"""(mean prompt, mean output) tokens: the first three make the KV cache bind below
``max_num_seqs`` (P + O/2 > 1,548 tokens on llama3-8b-h100), the last does not."""
LOADS = (0.7, 0.9, 0.95, 1.0, 1.1)


def poisson_trace(rate: float, p: int, o: int, duration_s: float, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate * duration_s))
    arr = np.sort(rng.uniform(0.0, duration_s, n))
    sig = 0.5
    pt = np.maximum(1, rng.lognormal(np.log(p) - sig * sig / 2, sig, n)).astype(np.int64)
    ot = np.maximum(2, rng.lognormal(np.log(o) - sig * sig / 2, sig, n)).astype(np.int64)
    return Trace(name=f"P{p} O{o}", duration_s=duration_s, arrivals_s=arr, prompt_tokens=pt,
                 output_tokens=ot, token_mix=TokenMix(float(p), float(o)))


def run(trace: Trace, profile: ReplicaProfile, n: int, engine: str) -> tuple[str, float]:
    """One fixed-fleet replay: (table cells, first tokens per replica-second)."""
    options = ReplayOptions()
    cap = capacity_for(trace, profile, options.slo_ttft_s)
    spec = replace(default_specs(trace, profile, cap, options)[PolicyKind.STATIC],
                   static_replicas=n)
    setup = R.set_up(trace, spec, profile, engine=engine, initial_replicas=n)
    loop = R.run_loop(setup, spec, core_decide, scrape_interval_s=15.0, rate_window_s=60.0,
                      actuation_delay_s=2.0)
    first = setup.engine.sample(trace.duration_s).first_tokens_total
    s = R.summarize(trace, spec, profile, setup, loop).summary
    pre = setup.request.preemptions if setup.request is not None else 0
    p99 = "-" if not np.isfinite(s.ttft_p99_s) else f"{s.ttft_p99_s:.2f}"
    cells = (f"{s.slo_attainment:.2%} | {s.ttft_p50_s:.2f} | {p99}"
             + (f" | {pre / max(1.0, trace.request_count):.2f}" if engine == "request" else ""))
    return cells, first / trace.duration_s / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=30.0)
    args = ap.parse_args()
    profile = load_profile("llama3-8b-h100")
    n, dur = args.replicas, args.minutes * 60.0
    c0 = time.process_time()
    print("| mix | load / mu | request: att. | p50 s | p99 s | preemptions / request | "
          "fluid: att. | p50 s | p99 s | request first tokens / replica-s / mu |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p, o in MIXES:
        mu = float(throughput_rps(profile, p, o))
        for load in LOADS:
            trace = poisson_trace(load * mu * n, p, o, dur, seed=1)
            req, served = run(trace, profile, n, "request")
            flu, _ = run(trace, profile, n, "fluid")
            print(f"| P {p}, O {o} (mu {mu:.2f}/s) | {load:.2f} | {req} | {flu} | "
                  f"{served / mu:.2f} |", flush=True)
    for rel in ("AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv"):
        path = args.traces / rel
        if not path.exists():
            continue
        trace = load_trace_input(str(path), None, rate_scale=5.0, start=None,
                                 duration=f"{args.minutes:g}m")
        for k in (2, 3, 4, 6):
            req, _ = run(trace, profile, k, "request")
            flu, _ = run(trace, profile, k, "fluid")
            print(f"| {rel.split('_')[1][:4]} x5, {k} replicas | - | {req} | {flu} | - |",
                  flush=True)
    print(f"\n{time.process_time() - c0:.0f} CPU s, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
