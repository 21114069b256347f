"""The decision against the baselines (issue 13 goals): one table, every figure measured here.

1. At defaults, on the embedded demo and the Azure hours (x1 and x5): does any default
   baseline dominate predictive (higher attainment *and* fewer GPU-hours)? Where a baseline
   reaches 99 %, does predictive reach 99 % at no more GPU-hours?
2. Churn on the 14-day traces: predictive's replica starts per day against the default
   HPA's (goal <= 1.2x), with GPU-hours and attainment next to them.
3. Learned capacity from a 0.5x and a 2x prior (the scenario of ``tests/test_capacity.py``):
   when it converges and the attainment after.
4. The ``auto`` forecaster on every public trace and the demo (``forecast_backtest.py
   --goals``): MAE against the best naive model and 90 % interval coverage (goal 0.85-0.95).

Every replay is ``autoscaler replay`` run as a subprocess (the command is printed next to
the table). CPU seconds are the children's user + system time.

    .venv/bin/python benchmarks/decision_goals.py [--quick] [--readme]

``--quick`` skips the 14-day traces.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from _readme import add_readme_flag, publish  # a sibling script (run as a file)
from replay_all import run_cli

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRACES = Path("..") / "shared" / "traces"
BASELINES = "hpa,hpa-queue,hpa-kv,keda,kpa,wva"
TARGET = 0.99
CHURN_LIMIT = 1.2
DEMO_SEEDS = (1, 2, 3)
"""Other draws of the demo's generator, shown beside the goal's seed 0."""
LENGTH_SLOPE = 0.001
"""s per prompt token of the length-aware SLO rows (see ``_short_rows``)."""


def _short_rows() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = [("embedded demo (4 h)", [])]
    # The demo's generator drawn again: the goal is the embedded demo (seed 0), but one draw
    # of a synthetic day is one sample, and a verdict that flips with the draw says so
    # (``--seed`` draws both the trace and the replay's randomness).
    out += [(f"embedded demo (4 h), generator seed {k}", ["--seed", str(k)])
            for k in DEMO_SEEDS]
    for label, name in (("Azure conv", "AzureLLMInferenceTrace_conv.csv"),
                        ("Azure code", "AzureLLMInferenceTrace_code.csv")):
        path = TRACES / name
        if (ROOT / path).exists():
            out += [(f"{label} 1 h", ["--trace", str(path)]),
                    (f"{label} 1 h x5", ["--trace", str(path), "--rate-scale", "5"])]
    # The issue judges long prompts at a length-aware SLO. Its slope: the held-back
    # long-prompt trace allows 10 s, reached at the 8B profile's 8,192-token context from the
    # flat 2 s: (10 - 2) / 8,192 = 0.001 s per prompt token. Azure code is the public trace
    # with long prompts (~2,000 tokens: an objective of ~4 s).
    code = TRACES / "AzureLLMInferenceTrace_code.csv"
    if (ROOT / code).exists():
        slope = ["--slo-ttft-per-prompt-token", str(LENGTH_SLOPE)]
        out += [(f"Azure code 1 h, SLO 2 s + {LENGTH_SLOPE:g} s/prompt token",
                 ["--trace", str(code), *slope]),
                (f"Azure code 1 h x5, SLO 2 s + {LENGTH_SLOPE:g} s/prompt token",
                 ["--trace", str(code), "--rate-scale", "5", *slope])]
    return out


def _long_rows() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    nasa = TRACES / "nasa_http_1995" / "workload.tbz2"
    servegen = TRACES / "servegen_language_m-small"
    if (ROOT / nasa).exists():
        out.append(("NASA 1995 x20 (14 d)",
                    ["--trace", str(nasa), "--rate-scale", "20", "--duration", "14d"]))
    if (ROOT / servegen).exists():
        out.append(("ServeGen m-small (14 d)", ["--trace", str(servegen)]))
    return out


def _dominance(label: str, doc: dict[str, Any]) -> tuple[str, str, bool]:
    res = {r["policy"]: r for r in doc["results"]}
    p = res["predictive"]
    fig = f"predictive {p['slo_attainment']:.2%} / {p['gpu_hours']:,.2f} GPU-h"
    dominated = [n for n, r in res.items() if n != "predictive"
                 and r["slo_attainment"] > p["slo_attainment"]
                 and r["gpu_hours"] < p["gpu_hours"]]
    cheaper_99 = [n for n, r in res.items() if n != "predictive"
                  and r["slo_attainment"] >= TARGET
                  and (p["slo_attainment"] < TARGET or r["gpu_hours"] < p["gpu_hours"])]
    shown = sorted({*dominated, *cheaper_99, "hpa", "wva"} & set(res))
    fig += "; " + "; ".join(f"{n} {res[n]['slo_attainment']:.2%} / {res[n]['gpu_hours']:,.2f}"
                            for n in shown)
    notes = []
    if dominated:
        notes.append("dominated by " + ", ".join(dominated))
    if cheaper_99:
        notes.append("99 % rule broken by " + ", ".join(cheaper_99))
    ok = not notes
    return fig, "yes" if ok else "no: " + "; ".join(notes), ok


def _churn(doc: dict[str, Any]) -> tuple[str, str, bool]:
    res = {r["policy"]: r for r in doc["results"]}
    p, h = res["predictive"], res["hpa"]
    ratio = p["replica_starts_per_day"] / h["replica_starts_per_day"] \
        if h["replica_starts_per_day"] > 0 else float("inf")
    fig = (f"starts/day predictive {p['replica_starts_per_day']:,.1f} vs HPA "
           f"{h['replica_starts_per_day']:,.1f} ({ratio:.2f}x); predictive "
           f"{p['slo_attainment']:.2%} / {p['gpu_hours']:,.0f} GPU-h, HPA "
           f"{h['slo_attainment']:.2%} / {h['gpu_hours']:,.0f}")
    ok = ratio <= CHURN_LIMIT
    return fig, "yes" if ok else f"no ({ratio:.2f}x > {CHURN_LIMIT}x)", ok


def _capacity() -> tuple[str, str, bool]:
    import numpy as np

    # The scenario the test asserts, measured here. ``tests`` is a package imported from the
    # repo root, which ``run_all.py`` puts on PYTHONPATH (directly:
    # ``PYTHONPATH=. .venv/bin/python benchmarks/decision_goals.py``).
    from tests import test_capacity as tc

    parts, ok = [], True
    for factor, high in ((0.5, math.inf), (2.0, 1.3)):
        result, log, truth = tc._run(factor)
        # Converged: every later 10-minute median >= 0.7x the simulated replica's truth
        # (and <= 1.3x it from the 2x prior), as the test states.
        t_conv = tc._converged_at(log, 0.7 * truth, high * truth)
        att = tc._attainment_after(result, t_conv)
        end = float(np.median([c for t, c in log if t >= tc.STEADY.duration_s - 600.0]))
        ok = ok and att >= TARGET
        parts.append(f"{factor:g}x: within {t_conv / 60:.0f} min, then {att:.2%}; last "
                     f"10 min at {end / truth:.2f}x the truth ({truth:.2f} req/s)")
    return "; ".join(parts), "yes" if ok else "converges; misses 99 % after", ok


def _coverage() -> tuple[str, str, bool]:
    # The forecast goals as the forecast helper scores them (``forecast_backtest.py
    # --goals``): per trace, ``auto``'s MAE over the best naive model's and its 90 % interval
    # coverage at each scored horizon.
    from forecast_backtest import goal_summary  # a sibling script (run as a file)

    text, ok = goal_summary()
    return text, "yes" if ok else "no: see the figures", ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 14-day traces")
    add_readme_flag(ap)
    args = ap.parse_args()
    started = time.perf_counter()
    rows: list[str] = ["| goal | trace | measured | met? |", "|---|---|---|---|"]
    cmds: list[str] = []
    for label, extra in _short_rows():
        doc, wall, cmd = run_cli([*extra, "--policies", f"{BASELINES},predictive"])
        fig, verdict, _ = _dominance(label, doc)
        rows.append(f"| defaults: no baseline dominates; 99 % rule | {label} | {fig} | "
                    f"{verdict} |")
        cmds.append(f"- {label} ({wall:.0f} s): `{cmd}`")
        print(f"done: {label} ({wall:.0f} s)", file=sys.stderr, flush=True)
    if not args.quick:
        for label, extra in _long_rows():
            doc, wall, cmd = run_cli([*extra, "--policies", "hpa,predictive"])
            fig, verdict, _ = _churn(doc)
            rows.append(f"| churn <= {CHURN_LIMIT}x the HPA's starts per day | {label} | "
                        f"{fig} | {verdict} |")
            cmds.append(f"- {label} ({wall:.0f} s): `{cmd}`")
            print(f"done: {label} ({wall:.0f} s)", file=sys.stderr, flush=True)
    fig, verdict, _ = _capacity()
    rows.append(f"| learned capacity from a 0.5x and a 2x prior, then 99 % | 3 h sine "
                f"(`tests/test_capacity.py`) | {fig} | {verdict} |")
    fig, verdict, _ = _coverage()
    rows.append(f"| `auto` never worse than the best naive model; 90 % intervals cover "
                f"0.85-0.95 | every public trace and the demo | {fig} | {verdict} |")
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime
    load = os.getloadavg()
    text = "\n".join([
        *rows, "", "Reproduce the replay rows:", "", *cmds, "",
        f"Measured by `benchmarks/decision_goals.py` in {time.perf_counter() - started:.0f} s "
        f"wall, {cpu:.0f} CPU s, on a shared 2-core machine (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end)."])
    publish("decision_goals", text, readme=args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
