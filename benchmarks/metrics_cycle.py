"""Queries and wall time of one control cycle's metrics collection for 10, 100 and 1,000
targets, against a real Prometheus scraping the digital twin (vLLM exposition, 2 pods or
more per target).

    .venv/bin/python benchmarks/metrics_cycle.py [--targets 10,100,1000] [--cycles 10]

The goal (issue 4): a constant number of queries per cycle, under 1 s at 1,000 targets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from promserver import PrometheusServer

from autoscaler.metrics.collect import Collector, CollectorConfig, Status
from autoscaler.metrics.presets import get_preset
from autoscaler.metrics.source import PrometheusConfig, PrometheusSource
from autoscaler.sim.profiles import load_profile
from autoscaler.traces import default_workload
from autoscaler.twin.serving import Twin


def measure(k: int, cycles: int) -> dict[str, float]:
    twin = Twin.from_trace(default_workload(seed=1), load_profile(), targets=k,
                           namespace="bench", workload="llm", initial_replicas=3)
    port = twin.start(0)
    # A 1,000-target scrape is ~100k lines (1.5 s to render): scrape every 5 s.
    prom = PrometheusServer([f"127.0.0.1:{port}"], scrape_interval_s=5.0).start()
    try:
        prom.wait_for("count(count by (workload) (vllm:num_requests_running))",
                      lambda r: bool(r) and int(r[0]["value"][1]) == k, timeout_s=120)
        time.sleep(12)  # a few scrapes, so 20-s rate() windows have data
        source = PrometheusSource(PrometheusConfig(url=prom.url, timeout_s=30))
        collector = Collector(source, CollectorConfig(preset=get_preset("vllm"), window="20s"))
        walls, queries, ok = [], [], 0
        for _ in range(cycles):
            result = collector.collect(time.time())
            walls.append(result.wall_s)
            queries.append(result.queries)
            ok = sum(1 for o in result.observations.values()
                     if o.readings[next(iter(o.readings))].status is Status.OK)
            time.sleep(0.5)
        return {"targets": k, "queries": statistics.median(queries),
                "p50_s": statistics.median(walls), "max_s": max(walls), "ok_targets": ok}
    finally:
        prom.cleanup()
        twin.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="10,100,1000")
    ap.add_argument("--cycles", type=int, default=10)
    args = ap.parse_args()
    print("| targets | queries per cycle | wall p50 | wall max | targets with data |")
    print("|---:|---:|---:|---:|---:|")
    for k in (int(x) for x in args.targets.split(",")):
        r = measure(k, args.cycles)
        print(f"| {k:,} | {r['queries']:.0f} | {r['p50_s'] * 1000:.0f} ms | "
              f"{r['max_s'] * 1000:.0f} ms | {r['ok_targets']:,} |", flush=True)


if __name__ == "__main__":
    main()
