"""HTML report with PNG plots for a policy comparison."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt
import numpy as np

from autoscaler.errors import AutoscalerError

if TYPE_CHECKING:
    from autoscaler.replaying import Comparison

COLORS = {"hpa": "#d62728", "kpa": "#9467bd", "predictive": "#2ca02c", "hindsight": "#1f77b4",
          "oracle": "#1f77b4",  # the old name of hindsight (the tuning report still uses it)
          "static": "#7f7f7f"}


def _hours(t_s: np.ndarray) -> np.ndarray:
    return t_s / 3600.0


def _plot_demand(comparison: Comparison, path: Path) -> None:
    first = next(iter(comparison.results.values()))
    tl = first.timeline
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(_hours(tl.t_s), tl.arrival_rps, color="black", lw=1)
    cap = comparison.capacity.requests_per_second
    ax.set_ylabel("arrivals (req/s)")
    ax.set_xlabel("time (h)")
    ax.set_title(f"Demand — {comparison.trace.name} (one replica holds {cap:.2f} req/s "
                 "at the SLO)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_replicas(comparison: Comparison, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4))
    for kind, result in comparison.results.items():
        tl = result.timeline
        ax.step(_hours(tl.t_s), tl.provisioned_replicas, where="post", lw=1.2,
                color=COLORS.get(kind.value), label=f"{kind.value} (provisioned)")
        ax.step(_hours(tl.t_s), tl.ready_replicas, where="post", lw=0.8, ls=":",
                color=COLORS.get(kind.value))
    ax.set_ylabel("replicas")
    ax.set_xlabel("time (h)")
    ax.set_title("Replicas over time (solid: provisioned and paid for; dotted: serving)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_latency(comparison: Comparison, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4))
    for kind, result in comparison.results.items():
        tl = result.timeline
        ax.plot(_hours(tl.t_s), np.maximum(tl.ttft_p95_s, 1e-3), lw=1,
                color=COLORS.get(kind.value), label=kind.value)
    ax.axhline(comparison.options.slo_ttft_s, color="black", ls="--", lw=1,
               label="SLO" if not comparison.options.slo_ttft_s_per_prompt_token
               else "SLO (flat part)")
    ax.set_yscale("log")
    ax.set_ylabel("TTFT p95 per bin (s)")
    ax.set_xlabel("time (h)")
    ax.set_title("Time to first token")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_tradeoff(comparison: Comparison, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, result in comparison.results.items():
        s = result.summary
        ax.scatter([s.gpu_hours], [100 * s.slo_attainment], color=COLORS.get(kind.value), s=60,
                   label=kind.value)
    ax.axhline(100 * comparison.specs[next(iter(comparison.specs))].slo.target_attainment,
               color="black", ls="--", lw=1)
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("SLO attainment (%)")
    lowest = min(r.summary.bound_gpu_hours for r in comparison.results.values())
    ax.axvline(lowest, color="black", ls=":", lw=1, label="bound (lowest)")
    ax.set_title("Cost against SLO attainment")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(comparison: Comparison, out_dir: Path) -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir``; return the index path."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _plot_demand(comparison, out_dir / "demand.png")
        _plot_replicas(comparison, out_dir / "replicas.png")
        _plot_latency(comparison, out_dir / "latency.png")
        _plot_tradeoff(comparison, out_dir / "tradeoff.png")
    except OSError as exc:
        raise AutoscalerError(f"--report {out_dir}: cannot write the report: {exc}") from exc
    from autoscaler.replaying import comparison_json

    doc = comparison_json(comparison)
    def cell(x: float | None, spec: str) -> str:
        return "&ndash;" if x is None else format(x, spec)

    rows = "\n".join(
        f"<tr><td>{html.escape(r['policy'])}</td><td>{r['slo_attainment']:.2%}</td>"
        f"<td>{cell(r['worst_hour_attainment'], '.1%')}</td>"
        f"<td>{cell(r['hours_meeting_target'], '.0%')}</td>"
        f"<td>{r['gpu_hours']:.2f}</td><td>{cell(r['bound_gpu_hours'], '.2f')}</td>"
        f"<td>{cell(r['gpu_vs_bound'], '.2f')}</td><td>{cell(r['ttft_p50_s'], '.2f')}</td>"
        f"<td>{cell(r['ttft_p95_s'], '.2f')}</td><td>{cell(r['ttft_p99_s'], '.2f')}</td>"
        f"<td>{r['scale_events']}</td><td>{r['replica_starts_per_day']:.1f}</td>"
        f"<td>{r['cold_start_gpu_hours']:.2f}</td>"
        f"<td>{r['mean_replicas']:.2f}</td><td>{r['max_replicas']}</td></tr>"
        for r in doc["results"])
    t = doc["trace"]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Autoscaler replay: {html.escape(t['name'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>Replay of {html.escape(t['name'])}</h1>
<p>{t['requests']:,} requests over {t['duration_s'] / 3600:.2f} h. SLO: time to first token
&le; {doc['slo']['ttft_s']:g} s. Replica profile: {html.escape(doc['profile'])}; one replica
holds {doc['capacity']['requests_per_second']:.2f} req/s at the SLO.</p>
<table><tr><th>policy</th><th>SLO attainment</th><th>worst hour</th>
<th>hours &ge; {doc['slo']['target_attainment']:.0%}</th><th>GPU-hours</th>
<th>bound (GPU-h)</th><th>/ bound</th><th>TTFT p50 (s)</th>
<th>p95</th><th>p99</th><th>scale events</th><th>replica starts / day</th>
<th>cold-start GPU-h</th><th>mean replicas</th><th>max</th></tr>
{rows}
</table>
<p><b>Bound:</b> {html.escape(doc['bound']['definition'])}</p>
<p>The <i>hindsight</i> policy (formerly <i>oracle</i>) is a heuristic (it is given the
true future rates and plans with the capacity at the SLO); it is not a bound, and other
policies may use fewer GPU-hours than it.</p>
<h2>Demand</h2><img src="demand.png" alt="demand over time">
<h2>Replicas</h2><img src="replicas.png" alt="replicas over time per policy">
<h2>Latency</h2><img src="latency.png" alt="TTFT p95 over time per policy">
<h2>Cost and attainment</h2><img src="tradeoff.png" alt="GPU-hours against attainment">
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
