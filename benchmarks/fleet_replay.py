"""Fleet replay against a real Prometheus holding days of history.

A known diurnal trace (with a 40-minute collection gap) is served by the fluid engine with
a known profile (``llama3-8b-h100``) under a day/night replica schedule; the vLLM exposition
of every pod every 60 s is written as OpenMetrics, turned into TSDB blocks by promtool and
served by a real Prometheus on loopback. Then:

* the workload is reconstructed from Prometheus and replayed; the replay of the original
  trace is the reference: attainment delta in points and GPU-hours delta in percent per
  policy (goal: +/-0.5 points, +/-3%);
* ``fit_profile`` reads the same history: error per fitted parameter (goal: +/-10%).

Usage: python benchmarks/fleet_replay.py [--days 7] [--policies hpa,predictive,static]
Needs the Debian package prometheus (prometheus and promtool).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from autoscaler.core.spec import PolicyKind
from autoscaler.fleetdata.fit import fit_profile
from autoscaler.fleetdata.history import HistoryQuery, Target, reconstruct
from autoscaler.fleetdata.openmetrics import HistorySpec, day_schedule, diurnal_trace
from autoscaler.fleetdata.proof import (
    PolicyDelta,
    build_tsdb,
    relative_error_pct,
    serve_tsdb,
)
from autoscaler.metrics.source import PrometheusConfig, PrometheusSource
from autoscaler.replaying import ReplayOptions, compare
from autoscaler.sim.profiles import load_profile


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--policies", default="hpa,kpa,predictive,static")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    days = args.days
    profile = load_profile("llama3-8b-h100")
    gap = (days * 86_400 * 0.6, days * 86_400 * 0.6 + 2400.0)
    trace = diurnal_trace(days, seed=args.seed, gaps=(gap,))
    start = (time.time() - days * 86_400 - 7200) // 60 * 60
    spec = HistorySpec(trace=trace, profile=profile, start_unix=start,
                       replicas=day_schedule(days), seed=args.seed)
    t0, c0 = time.monotonic(), _cpu()
    with tempfile.TemporaryDirectory(prefix="fleet-replay-") as tmp:
        data, facts = build_tsdb(spec, Path(tmp))
        t1, c1 = time.monotonic(), _cpu()
        print(f"history: {days:g} days, {facts['samples']:,.0f} samples, "
              f"{facts['pods']:.0f} pods; OpenMetrics + promtool {t1 - t0:.1f} s wall, "
              f"{c1 - c0:.1f} s CPU")
        with serve_tsdb(data) as url:
            src = PrometheusSource(PrometheusConfig(url=url, timeout_s=120))
            q = HistoryQuery(Target("llm", "chat"), start, start + trace.duration_s, 60.0)
            rec = reconstruct(src, q)
            fit = fit_profile(src, q, load_profile("llama3-70b-4xh100"))
            src.close()
        t2, c2 = time.monotonic(), _cpu()
        print(f"reconstruction + fit: {rec.queries} range queries, {t2 - t1:.1f} s wall, "
              f"{c2 - c1:.1f} s CPU; gaps found {rec.trace.gaps[:4]} (true {trace.gaps})")
    print(f"requests: trace {trace.request_count:,.0f}, reconstructed "
          f"{rec.trace.request_count:,.0f} (the trace counts its gap's rate too)")
    print("\nprofile fit (base profile for unfitted fields: llama3-70b-4xh100)")
    print(f"{'field':<24}{'true':>12}{'fitted':>14}{'error':>9}  how")
    worst = 0.0
    for key, f in fit.fields.items():
        true = getattr(profile, key)
        err = relative_error_pct(float(f.value), float(true or 0.0))
        if f.fitted:
            worst = max(worst, abs(err))
        print(f"{key:<24}{float(true or 0):>12.6g}{float(f.value):>14.6g}"
              f"{err:>+8.2f}%  {'fitted' if f.fitted else 'NOT fitted (default)'}")
    print(f"worst fitted-parameter error {worst:.2f}% (goal <= 10%)")
    policies = tuple(PolicyKind(p) for p in args.policies.split(","))
    opts = ReplayOptions(engine="fluid", seed=args.seed, max_replicas=20)
    t3, c3 = time.monotonic(), _cpu()
    ref = compare(trace, profile, policies, opts)
    got = compare(rec.trace, profile, policies, opts)
    t4, c4 = time.monotonic(), _cpu()
    print(f"\nreplays: {t4 - t3:.1f} s wall, {c4 - c3:.1f} s CPU "
          f"(2 x {len(policies)} policies x {days:g} days, fluid engine)")
    print(f"{'policy':<12}{'att. trace':>11}{'att. prom':>11}{'delta pt':>10}"
          f"{'GPU-h trace':>13}{'GPU-h prom':>12}{'delta':>9}")
    ok = True
    for kind in policies:
        a, b = ref.results[kind].summary, got.results[kind].summary
        d = PolicyDelta(kind.value, a.slo_attainment, b.slo_attainment, a.gpu_hours,
                        b.gpu_hours)
        ok &= abs(d.attainment_points) <= 0.5 and abs(d.gpu_hours_pct) <= 3.0
        print(f"{kind.value:<12}{a.slo_attainment:>11.3%}{b.slo_attainment:>11.3%}"
              f"{d.attainment_points:>+10.3f}{a.gpu_hours:>13,.2f}{b.gpu_hours:>12,.2f}"
              f"{d.gpu_hours_pct:>+8.2f}%")
    print(f"\nwithin +/-0.5 points and +/-3% GPU-hours: {'yes' if ok else 'NO'}; "
          f"fit within 10%: {'yes' if worst <= 10 else 'NO'}; total {time.monotonic() - t0:.0f}"
          f" s wall, {_cpu() - c0:.0f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
