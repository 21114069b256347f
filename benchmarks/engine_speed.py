"""Wall time per policy of the two engines on the real traces, and peak memory.

    .venv/bin/python benchmarks/engine_speed.py [--traces /work/shared/traces]

* request engine: the Azure 2023 conversation trace (19,366 requests, ~1 h);
* fluid engine: 14 days of the summed ServeGen m-small client rates, scaled to a mean of
  1,000 req/s, a decision every 15 s.

Policies that still raise NotImplementedError are reported as skipped.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import resource
import time
from datetime import datetime

import numpy as np

from autoscaler.core.spec import Capacity, MetricTarget, MetricTargetType, PolicyKind, Spec
from autoscaler.core.types import Signal
from autoscaler.sim.calibrate import capacity_at_slo
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import replay
from autoscaler.traces.model import TokenMix, Trace


def azure_conv(path: str) -> Trace:
    """A small local parser (the project's loader may not exist yet)."""
    ts: list[float] = []
    p: list[int] = []
    o: list[int] = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            stamp = row["TIMESTAMP"][:26]  # 7 fractional digits -> 6 for strptime
            ts.append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp())
            p.append(int(row["ContextTokens"]))
            o.append(int(row["GeneratedTokens"]))
    t = np.asarray(ts) - ts[0]
    return Trace(name="azure-conv", duration_s=float(t[-1]) + 1.0, arrivals_s=t,
                 prompt_tokens=np.asarray(p, dtype=np.int64),
                 output_tokens=np.asarray(o, dtype=np.int64))


def servegen_sum(folder: str, mean_rps: float) -> Trace:
    total = np.zeros(2016)
    for f in sorted(glob.glob(os.path.join(folder, "chunk-*-trace.csv"))):
        rates = np.loadtxt(f, delimiter=",", usecols=(1,), dtype=np.float64)
        total[: len(rates)] += rates
    total *= mean_rps / total.mean()
    return Trace(name="servegen-14d", duration_s=2016 * 600.0, rates_rps=total,
                 resolution_s=600.0, token_mix=TokenMix())


def spec_for(policy: PolicyKind, cap: Capacity, max_replicas: int, cold: float) -> Spec:
    metrics = (MetricTarget(Signal.CONCURRENCY, MetricTargetType.AVERAGE_VALUE,
                            cap.concurrency),) if policy == PolicyKind.HPA else ()
    static = max_replicas if policy == PolicyKind.STATIC else None
    return Spec(max_replicas=max_replicas, capacity=cap, policy=policy, metrics=metrics,
                static_replicas=static, cold_start_s=cold)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default="/work/shared/traces")
    args = ap.parse_args()
    profile = load_profile("llama3-8b-h100")
    cold = profile.cold_start_s + profile.cold_start_jitter_s
    runs = [
        ("request", azure_conv(os.path.join(args.traces, "AzureLLMInferenceTrace_conv.csv"))),
        ("fluid", servegen_sum(os.path.join(args.traces, "servegen_language_m-small"),
                               1000.0)),
    ]
    for engine, trace in runs:
        if trace.prompt_tokens is not None and trace.output_tokens is not None:
            mix: tuple[float, float] = (float(trace.prompt_tokens.mean()),
                                        float(trace.output_tokens.mean()))
        else:
            mix = (trace.token_mix.mean_prompt_tokens, trace.token_mix.mean_output_tokens)
        t0 = time.perf_counter()
        cap = capacity_at_slo(profile, 2.0, mix)
        print(f"calibration: {cap.requests_per_second:.2f} req/s per replica "
              f"({time.perf_counter() - t0:.2f} s)")
        peak = float(trace.binned_rates(60.0).max())
        max_rep = max(2, int(np.ceil(1.5 * peak / cap.requests_per_second)))
        for policy in PolicyKind:
            spec = spec_for(policy, cap, max_rep, cold)
            t0 = time.perf_counter()
            try:
                res = replay(trace, spec, profile, engine=engine)
            except NotImplementedError:
                print(f"{trace.name:14s} {engine:7s} {policy.value:10s} skipped (not implemented)")
                continue
            wall = time.perf_counter() - t0
            s = res.summary
            print(f"{trace.name:14s} {engine:7s} {policy.value:10s} {wall:7.2f} s  "
                  f"attainment {s.slo_attainment:.4f}  GPU-h {s.gpu_hours:9.1f}  "
                  f"mean replicas {s.mean_replicas:7.1f}  events {s.scale_events}")
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {rss_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
