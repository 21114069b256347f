"""Does a better forecaster buy anything in the replay? Predictive with ``trend`` vs ``auto``.

For each trace and forecaster the predictive policy (the replay's default predictive spec,
only ``predictive.forecaster`` and ``predictive.headroomQuantile`` changed) is replayed on
the fluid engine with the ``llama3-8b-h100`` profile over a sweep of headroom quantiles.
Reported: SLO attainment and GPU-hours per run, then per forecaster the cheapest run that
reaches the SLO's attainment target (``spec.slo.target_attainment``), so the forecasters
are compared at the same attainment rather than at the same knob.

Traces: NASA-HTTP 1995 with the rate x20 (``scale_trace``) and ServeGen m-small (30
clients summed), both cut to the first ``--days`` days (default 14). The traces are
replayed as recorded: ServeGen's collection gaps are real zero-arrival periods to the
simulator (the gap rule is a forecasting-data rule, not a workload rule).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/forecast_replay.py \\
        [--days 14] [--quantiles 0.9,0.95,0.99] [--forecasters trend,auto] [--traces nasa,servegen]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from autoscaler.core.spec import PolicyKind
from autoscaler.replaying import ReplayOptions, default_specs
from autoscaler.sim.calibrate import capacity_at_slo
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import replay
from autoscaler.traces import load_trace, scale_trace
from autoscaler.traces.model import Trace

TRACES = str(Path(__file__).resolve().parents[2] / "shared" / "traces")


def first_days(trace: Trace, days: float) -> Trace:
    """The first ``days`` of a rate-level trace."""
    assert trace.rates_rps is not None and trace.resolution_s is not None
    n = min(len(trace.rates_rps), int(days * 86_400 / trace.resolution_s))
    return Trace(f"{trace.name} (first {days:g} d)", n * trace.resolution_s,
                 rates_rps=trace.rates_rps[:n], resolution_s=trace.resolution_s,
                 token_mix=trace.token_mix)


def load(name: str, days: float) -> Trace:
    if name == "nasa":
        return first_days(scale_trace(load_trace(f"{TRACES}/nasa_http_1995/workload.tbz2"),
                                      rate=20.0), days)
    return first_days(load_trace(f"{TRACES}/servegen_language_m-small"), days)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--quantiles", default="0.9,0.95,0.99")
    ap.add_argument("--utilizations", default="",
                    help="comma-separated targetUtilization values (default: the spec's)")
    ap.add_argument("--forecasters", default="trend,auto")
    ap.add_argument("--traces", default="nasa,servegen")
    a = ap.parse_args()
    quantiles = [float(q) for q in a.quantiles.split(",")]
    forecasters = a.forecasters.split(",")
    profile = load_profile("llama3-8b-h100")
    opts = ReplayOptions(engine="fluid")
    t_all = time.perf_counter()
    for tname in a.traces.split(","):
        trace = load(tname, a.days)
        cap = capacity_at_slo(profile, opts.slo_ttft_s, trace.token_mix)
        base = default_specs(trace, profile, cap, opts)[PolicyKind.PREDICTIVE]
        target = base.slo.target_attainment
        print(f"\n== {trace.name}: {trace.duration_s / 86_400:.1f} d, capacity "
              f"{cap.requests_per_second:.2f} req/s per replica, attainment target {target:g}")
        utils = ([float(u) for u in a.utilizations.split(",")] if a.utilizations
                 else [base.predictive.target_utilization])
        print(f"{'forecaster':<12}{'quantile':>9}{'util':>6}{'attainment':>12}{'gpu_hours':>11}"
              f"{'mean_repl':>10}{'seconds':>9}")
        best: dict[str, tuple[float, float, float, float]] = {}
        for fc in forecasters:
            for u in utils:
                for q in quantiles:
                    spec = replace(base, predictive=replace(
                        base.predictive, forecaster=fc, headroom_quantile=q,
                        target_utilization=u))
                    t0 = time.perf_counter()
                    s = replay(trace, spec, profile, engine="fluid", seed=0).summary
                    dt = time.perf_counter() - t0
                    print(f"{fc:<12}{q:>9g}{u:>6g}{s.slo_attainment:>12.4f}"
                          f"{s.gpu_hours:>11.1f}{s.mean_replicas:>10.2f}{dt:>9.0f}", flush=True)
                    if s.slo_attainment >= target and (fc not in best
                                                       or s.gpu_hours < best[fc][2]):
                        best[fc] = (q, u, s.gpu_hours, s.slo_attainment)
        for fc in forecasters:
            if fc in best:
                q, u, gh, att = best[fc]
                print(f"cheapest {fc} at >= {target:g}: quantile {q:g}, utilisation {u:g}, "
                      f"{gh:.1f} GPU-h (attainment {att:.4f})")
            else:
                print(f"cheapest {fc} at >= {target:g}: none of the quantiles reached it")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
