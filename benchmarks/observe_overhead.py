"""What the replay spends on observing: per-pod series and the observation rules.

Replays a trace (default: 14 days of ServeGen m-small with its bursts, fluid engine) for
each policy and times the fake Prometheus' scrapes and queries apart from the rest (engine
and decision), in CPU seconds, so the cost of judging every decision as the live loop does
is a printed figure, not a guess. ``--no-cache`` turns the fake Prometheus' query memo off
(the slow path it must equal, ``tests/test_sim_observe_cache.py``). Usage:

    python benchmarks/observe_overhead.py [--traces DIR] [--days 14] [--policies hpa,...]
        [--scrape-s S] [--no-cache]
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
from autoscaler.traces.window import window_trace

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


class TimedPrometheus(FakePrometheus):
    """The replay's fake Prometheus, with a stopwatch around every call."""

    spent_s = 0.0
    use_cache = True

    def __init__(self, **kw):  # type: ignore[no-untyped-def]
        super().__init__(**kw, cache=TimedPrometheus.use_cache)

    def scrape(self, sample):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        super().scrape(sample)
        TimedPrometheus.spent_s += time.process_time() - t0

    def query(self, now, ready_replicas=None):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        out = super().query(now, ready_replicas)
        TimedPrometheus.spent_s += time.process_time() - t0
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--policies", default="hpa,kpa,predictive,static")
    ap.add_argument("--scrape-s", type=float, default=None,
                    help="scrape interval (default: what `autoscaler replay` uses, "
                         "min(15 s, the policy's sync period): 2 s for the KPA)")
    ap.add_argument("--no-cache", action="store_true",
                    help="recompute every query (the fake Prometheus' slow path)")
    args = ap.parse_args()
    TimedPrometheus.use_cache = not args.no_cache
    full = load_trace(args.traces / "servegen_language_m-small")
    trace = (window_trace(full, 0.0, args.days * 86400)
             if args.days * 86400 < full.duration_s else full)
    profile = load_profile()
    options = ReplayOptions()
    specs = default_specs(trace, profile, capacity_for(trace, profile, options.slo_ttft_s),
                          options)
    replay_module = sys.modules["autoscaler.sim.replay"]
    replay_module.FakePrometheus = TimedPrometheus  # type: ignore[attr-defined]
    print(f"{trace.name}, fluid engine, query memo {'off' if args.no_cache else 'on'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| policy | replay CPU s | of which observation CPU s | decisions | not-valid "
          "decisions |")
    print("|---|---:|---:|---:|---:|")
    for name in args.policies.split(","):
        TimedPrometheus.spent_s = 0.0
        t0 = time.process_time()
        spec = specs[PolicyKind(name)]
        scrape = args.scrape_s if args.scrape_s is not None else min(15.0, spec.sync_period_s)
        result = replay_module.replay(trace, spec, profile, engine="fluid",
                                      scrape_interval_s=scrape)
        wall = time.process_time() - t0
        held = sum(v for k, v in result.reasons.items() if k in ("MetricsMissing",
                                                                   "MetricsStale"))
        print(f"| {name} | {wall:.1f} | {TimedPrometheus.spent_s:.1f} | {result.decisions} | "
              f"{held} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
