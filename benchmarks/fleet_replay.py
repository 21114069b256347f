"""Fleet replay against a real Prometheus holding days of history.

A known diurnal trace (with a 40-minute collection gap) is served by the fluid engine with
a known profile (``llama3-8b-h100``) under a day/night replica schedule; the vLLM exposition
of every pod every 60 s is written as OpenMetrics, turned into TSDB blocks by promtool and
served by a real Prometheus on loopback. The same fleet is written three times, as three
workloads: scraped every 60 s on the range query's grid; every 60 s at 23 s past each
minute (a real Prometheus scrapes each target at its own phase); every 15 s at 8 s past.
Then, per seed:

* the workload is reconstructed from Prometheus and replayed; the replay of the original
  trace is the reference: attainment delta in points and GPU-hours delta in percent per
  policy (goal: +/-0.5 points, +/-3%);
* ``fit_profile`` reads the same history: error per fitted parameter (goal: +/-10%), and
  for the cold-start jitter its 90% interval.

Usage: python benchmarks/fleet_replay.py [--days 1.25] [--seeds 0,3] [--readme]
Needs the Debian package prometheus (prometheus and promtool).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from _readme import add_readme_flag, publish

from autoscaler.core.spec import PolicyKind
from autoscaler.fleetdata.fit import ProfileFit, fit_profile
from autoscaler.fleetdata.history import HistoryQuery, Reconstruction, Target, reconstruct
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
from autoscaler.traces.model import Trace

SCRAPES = ((60.0, 0.0), (60.0, 23.0), (15.0, 8.0))
"""(scrape interval, phase) of each copy of the fleet, seconds; the first is fitted."""
FIELDS = (("step_base_s", "step base"), ("step_per_decode_seq_s", "per decode sequence"),
          ("step_per_prefill_token_s", "per prefill token"), ("num_gpu_blocks", "KV blocks"),
          ("block_size", "KV block size"), ("max_num_seqs", "`max_num_seqs` (saturation)"),
          ("cold_start_s", "cold start"), ("cold_start_jitter_s", "cold-start jitter"))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


@dataclass(frozen=True)
class SeedRun:
    seed: int
    trace: Trace
    recs: dict[tuple[float, float], Reconstruction]
    """(scrape interval, phase) -> reconstruction."""
    fit: ProfileFit
    samples: float
    start_unix: float


def rebinned(trace: Trace, rec: Reconstruction, start_unix: float) -> Trace:
    """The trace's own requests counted between the scrapes the reconstruction's bins span
    (its cumulative curve read at the bins' edges), with the reconstruction's gaps: the
    best any reconstruction from those scrapes can do."""
    assert trace.rates_rps is not None and trace.resolution_s is not None
    assert rec.trace.rates_rps is not None
    res = trace.resolution_s
    edges = np.arange(trace.rates_rps.size + 1) * res
    cum = np.concatenate(([0.0], np.cumsum(trace.rates_rps * res)))
    origin = rec.start_unix - start_unix
    at = np.interp(origin + np.arange(rec.trace.rates_rps.size + 1) * rec.step_s, edges, cum)
    rates = np.diff(at) / rec.step_s
    rates[rec.trace.gap_mask(rec.step_s)[: rates.size]] = 0.0
    return replace(rec.trace, name=f"{trace.name} on the scrapes", rates_rps=rates)


def _history(days: float, seed: int, tmp: Path) -> SeedRun:
    profile = load_profile("llama3-8b-h100")
    gap = (days * 86_400 * 0.6, days * 86_400 * 0.6 + 2400.0)
    trace = diurnal_trace(days, seed=seed, gaps=(gap,))
    start = (time.time() - days * 86_400 - 7200) // 60 * 60
    specs = {sc: HistorySpec(trace=trace, profile=profile, start_unix=start,
                             replicas=day_schedule(days), seed=seed,
                             workload=f"chat-{sc[0]:g}s-{sc[1]:g}s", scrape_s=sc[0],
                             scrape_offset_s=sc[1]) for sc in SCRAPES}
    data, facts = build_tsdb(specs[SCRAPES[0]], tmp, more=[specs[sc] for sc in SCRAPES[1:]])
    recs: dict[tuple[float, float], Reconstruction] = {}
    with serve_tsdb(data) as url:
        src = PrometheusSource(PrometheusConfig(url=url, timeout_s=120))
        for sc, spec in specs.items():
            q = HistoryQuery(Target("llm", spec.workload), start, start + trace.duration_s,
                             60.0)
            recs[sc] = reconstruct(src, q)
        q = HistoryQuery(Target("llm", specs[SCRAPES[0]].workload), start,
                         start + trace.duration_s, 60.0)
        # A different base profile: a field that was not fitted cannot pass by accident.
        fit = fit_profile(src, q, load_profile("llama3-70b-4xh100"))
        src.close()
    return SeedRun(seed, trace, recs, fit, facts["samples"], start)


def _delta(a: Any, b: Any) -> str:
    return (f"{100 * (b.slo_attainment - a.slo_attainment):+.2f}, "
            f"{100 * (b.gpu_hours / a.gpu_hours - 1):+.2f}%")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=1.25)
    ap.add_argument("--policies", default="hpa,kpa,predictive,static")
    ap.add_argument("--seeds", default="0,3")
    add_readme_flag(ap)
    args = ap.parse_args()
    days = args.days
    seeds = [int(s) for s in args.seeds.split(",")]
    policies = tuple(PolicyKind(p) for p in args.policies.split(","))
    profile = load_profile("llama3-8b-h100")
    opts = ReplayOptions(engine="fluid", seed=0, max_replicas=20)
    t0, c0 = time.monotonic(), _cpu()
    runs: list[SeedRun] = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="fleet-replay-") as tmp:
            runs.append(_history(days, seed, Path(tmp)))
    t1, c1 = time.monotonic(), _cpu()
    print(f"histories, reconstructions and fits: {t1 - t0:.0f} s wall, {c1 - c0:.0f} s CPU",
          file=sys.stderr)

    fit_rows = ["| profile field | true | " + " | ".join(f"seed {r.seed}" for r in runs) + " |",
                "|---|---:|" + "---:|" * len(runs)]
    worst = 0.0
    for key, label in FIELDS:
        true = float(getattr(profile, key))
        cells = []
        for r in runs:
            f = r.fit.fields[key]
            err = relative_error_pct(float(f.value), true)
            cell = f"{err:+.2f}%" if f.fitted else "not fitted"
            if key == "cold_start_jitter_s" and f.fitted:
                n = int(f.quality["pods"])
                cell += (f" ({n} starts; 90% interval {f.quality['jitter_low_s']:.0f}.."
                         f"{f.quality['jitter_high_s']:.0f} s)")
            elif f.fitted:
                worst = max(worst, abs(err))
            cells.append(cell)
        fit_rows.append(f"| {label} | {true:g} | " + " | ".join(cells) + " |")

    t2, c2 = time.monotonic(), _cpu()
    rep_rows = ["| seed | scrapes | policy | attainment, trace | from Prometheus | delta | "
                "GPU-h, trace | from Prometheus | delta | trace on the scrapes: delta pt, "
                "GPU-h |",
                "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    ok = dict.fromkeys(SCRAPES, True)
    requests = []
    for r in runs:
        ref = compare(r.trace, profile, policies, opts)
        for sc, rec in r.recs.items():
            got = compare(rec.trace, profile, policies, opts)
            best = compare(rebinned(r.trace, rec, r.start_unix), profile, policies, opts)
            scrapes = f"{sc[0]:g} s, {'on the grid' if sc[1] == 0 else f'+{sc[1]:g} s'}"
            requests.append(f"seed {r.seed}, {scrapes}: {rec.trace.request_count:,.0f}")
            for kind in policies:
                a, b = ref.results[kind].summary, got.results[kind].summary
                d = PolicyDelta(kind.value, a.slo_attainment, b.slo_attainment, a.gpu_hours,
                                b.gpu_hours)
                ok[sc] &= abs(d.attainment_points) <= 0.5 and abs(d.gpu_hours_pct) <= 3.0
                rep_rows.append(
                    f"| {r.seed} | {scrapes} | {kind.value} | {a.slo_attainment:.2%} | "
                    f"{b.slo_attainment:.2%} | {d.attainment_points:+.2f} pt | "
                    f"{a.gpu_hours:,.2f} | {b.gpu_hours:,.2f} | {d.gpu_hours_pct:+.2f}% | "
                    f"{_delta(a, best.results[kind].summary)} |")
    t3, c3 = time.monotonic(), _cpu()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    verdict = "; ".join(f"scrapes every {sc[0]:g} s "
                        f"{'on the grid' if sc[1] == 0 else f'+{sc[1]:g} s'}: "
                        f"{'within' if v else 'NOT within'}" for sc, v in ok.items())
    md = "\n".join([
        f"{days:g} days per seed, seeds {', '.join(map(str, seeds))}; "
        f"{runs[0].samples:,.0f} samples written for the 60-s fleet. Fitted from that "
        "fleet, from base profile `llama3-70b-4xh100`:",
        "",
        *fit_rows,
        "",
        f"Worst fitted-field error except the jitter: {worst:.2f}% (goal +/-10%).",
        "",
        *rep_rows,
        "",
        f"Goal +/-0.5 points and +/-3% GPU-hours for every policy and seed: {verdict}. "
        f"Requests rebuilt: {'; '.join(requests)}; in the traces: "
        + "; ".join(f"seed {r.seed} {r.trace.request_count:,.0f}" for r in runs)
        + " (gap and edge minutes are missing, not zero).",
        "",
        f"Cost: histories, promtool, Prometheus and fits {c1 - c0:.0f} s CPU "
        f"({t1 - t0:.0f} s wall); replays {c3 - c2:.0f} s CPU ({t3 - t2:.0f} s wall); "
        f"on 2 cores shared with other jobs (load average {load}).",
    ])
    publish("fleet_replay", md, readme=args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
