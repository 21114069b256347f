"""What the replay spends on observing: per-pod series and the observation rules.

Replays a trace (default: 14 days of ServeGen m-small, fluid engine) for each policy and
times the fake Prometheus' scrapes and queries apart from the rest (engine and decision),
so the cost of judging every decision as the live loop does is a printed figure, not a
guess. Usage:

    python benchmarks/observe_overhead.py [--traces DIR] [--days 14] [--policies hpa,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from autoscaler.core.spec import PolicyKind
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.observe import FakePrometheus
from autoscaler.sim.profiles import load_profile
from autoscaler.traces import load_trace
from autoscaler.traces.model import Trace

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


class TimedPrometheus(FakePrometheus):
    """The replay's fake Prometheus, with a stopwatch around every call."""

    spent_s = 0.0

    def scrape(self, sample):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        super().scrape(sample)
        TimedPrometheus.spent_s += time.perf_counter() - t0

    def query(self, now, ready_replicas=None):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = super().query(now, ready_replicas)
        TimedPrometheus.spent_s += time.perf_counter() - t0
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--policies", default="hpa,kpa,predictive,static")
    args = ap.parse_args()
    full = load_trace(args.traces / "servegen_language_m-small")
    assert full.rates_rps is not None and full.resolution_s is not None
    n = int(args.days * 86400 / full.resolution_s)
    trace = Trace(name=f"{full.name} ({args.days:g} d)", duration_s=n * full.resolution_s,
                  rates_rps=full.rates_rps[:n], resolution_s=full.resolution_s,
                  token_mix=full.token_mix)
    profile = load_profile()
    options = ReplayOptions()
    specs = default_specs(trace, profile, capacity_for(trace, profile, options.slo_ttft_s),
                          options)
    replay_module = sys.modules["autoscaler.sim.replay"]
    replay_module.FakePrometheus = TimedPrometheus  # type: ignore[attr-defined]
    print(f"{trace.name}, fluid engine, load average {os.getloadavg()[0]:.1f}")
    print("| policy | replay wall s | of which observation s | decisions | not-valid "
          "decisions |")
    print("|---|---:|---:|---:|---:|")
    for name in args.policies.split(","):
        TimedPrometheus.spent_s = 0.0
        t0 = time.perf_counter()
        result = replay_module.replay(trace, specs[PolicyKind(name)], profile, engine="fluid")
        wall = time.perf_counter() - t0
        held = sum(v for k, v in result.reasons.items() if k in ("MetricsMissing",
                                                                   "MetricsStale"))
        print(f"| {name} | {wall:.1f} | {TimedPrometheus.spent_s:.1f} | {result.decisions} | "
              f"{held} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
