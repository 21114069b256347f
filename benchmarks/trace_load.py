"""Time and memory to load each real trace (and to generate the synthetic workload).

Usage: ``python benchmarks/trace_load.py [TRACE_DIR] [--repeat N] [--readme]`` (default:
``../shared/traces`` beside the clone; ``--readme`` writes the table into the README section
``trace_load``).

ServeGen is loaded twice: with its bursts (the default: per-second counts drawn from each
window's fitted inter-arrival distribution, 14 days, 1.2 million seconds) and as 600-s
window means (``bursts=False``). Goal (issue 11): 14 days of ServeGen, bursts included,
replay in under 60 s per policy on one core, so loading must take a few seconds. Each row
also prints the collection gaps and the arrivals' inter-arrival CV
(``autoscaler.traces.interarrival_cv``); the last rows time NASA x20 by superposition.

For each trace it prints the best wall time of ``--repeat`` loads (without tracing, which
would slow numpy down) and the peak Python-heap allocation during one extra load measured
with ``tracemalloc`` (numpy reports its buffers to tracemalloc). The process's maximum
resident set size (``ru_maxrss``) is printed at the end; it covers the whole run.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from _readme import add_readme_flag, publish

from autoscaler.traces import Trace, default_workload, interarrival_cv, load_trace, scale_trace

REAL_TRACES = (
    "AzureLLMInferenceTrace_conv.csv",
    "AzureLLMInferenceTrace_code.csv",
    "nasa_http_1995/workload.tbz2",
    "servegen_language_m-small",
)


def _measure(load: Callable[[], Trace], repeat: int) -> tuple[float, float, float, Trace]:
    """(best wall s, CPU s of that load, peak MiB, trace). CPU time is printed too because
    on a shared machine wall time mostly measures the other processes."""
    best = best_cpu = float("inf")
    trace = load()  # warm-up: imports, page cache
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        trace = load()
        wall = time.perf_counter() - start
        if wall < best:
            best, best_cpu = wall, time.process_time() - cpu
    tracemalloc.start()
    load()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, best_cpu, peak / 2**20, trace


def _cv(trace: Trace) -> str:
    """The inter-arrival CV, or n/a where window means carry none (a flat rate per window)."""
    cv = interarrival_cv(trace)
    return "n/a" if cv != cv else f"{cv:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace_dir", nargs="?", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "traces")
    parser.add_argument("--repeat", type=int, default=3, help="timed loads per trace")
    add_readme_flag(parser)
    args = parser.parse_args(argv)

    jobs: list[tuple[str, Callable[[], Trace]]] = []
    for rel in REAL_TRACES:
        path = args.trace_dir / rel
        if path.exists():
            jobs.append((rel, functools.partial(load_trace, path)))
            if rel.startswith("servegen"):
                jobs.append((f"{rel} (means)", functools.partial(load_trace, path,
                                                                 bursts=False)))
                jobs.append((f"{rel} client 14", functools.partial(load_trace, path,
                                                                  clients=(14,))))
        else:
            print(f"skip {rel}: not found under {args.trace_dir}", file=sys.stderr)
    jobs.append(("default_workload(seed=0)", lambda: default_workload(0)))
    nasa = args.trace_dir / "nasa_http_1995/workload.tbz2"
    if nasa.exists():
        base = load_trace(nasa)
        jobs.append(("nasa x20 (scale_trace only)", lambda: scale_trace(base, rate=20.0)))

    rows = ["| trace | best wall s | CPU s | peak MiB | requests | bins | gaps | "
            "inter-arrival CV |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, load in jobs:
        seconds, cpu, peak_mib, trace = _measure(load, args.repeat)
        bins = "-" if trace.rates_rps is None else f"{trace.rates_rps.size:,}"
        rows.append(f"| {label} | {seconds:.2f} | {cpu:.2f} | {peak_mib:,.0f} | "
                    f"{trace.request_count:,.0f} | {bins} | {len(trace.gaps)} | "
                    f"{_cv(trace)} |")
        print(rows[-1], file=sys.stderr, flush=True)
    # ru_maxrss is in KiB on Linux.
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows += ["", f"`benchmarks/trace_load.py --repeat {args.repeat}`: peak MiB is tracemalloc's "
             "peak of one more load (numpy buffers included); load average "
             f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores; peak "
             f"resident set size of the whole run {rss_mib:,.0f} MiB."]
    publish("trace_load", "\n".join(rows), readme=args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
