"""The tuning report: an HTML page and a PNG of each policy's Pareto front."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt

from autoscaler.errors import AutoscalerError
from autoscaler.report import COLORS


def _plot_fronts(doc: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, p in doc["policies"].items():
        color = COLORS.get(name)
        pts = [(c["gpu_hours"], 100 * c["attainment"]) for c in p["candidates"]
               if c["gpu_hours"] is not None]
        if pts:
            ax.scatter([x for x, _ in pts], [y for _, y in pts], s=10, alpha=0.3, color=color)
        front = [(c["gpu_hours"], 100 * c["attainment"]) for c in p["pareto"]]
        if front:
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color=color,
                    lw=1.5, marker="o", ms=4, label=f"{name} (Pareto front)")
        if p["best"] is not None and p["feasible"]:
            ax.scatter([p["best"]["gpu_hours"]], [100 * p["best"]["attainment"]], s=120,
                       marker="*", color=color, edgecolor="black", zorder=5)
    o = doc["oracle"]["in_sample"]
    ax.scatter([o["gpu_hours"]], [100 * o["attainment"]], s=80, marker="D",
               color=COLORS["oracle"], label="oracle (floor)", zorder=5)
    ax.axhline(100 * doc["settings"]["attainment"], color="black", ls="--", lw=1,
               label="attainment target")
    ax.set_xlabel("GPU-hours (training part)")
    ax.set_ylabel("SLO attainment (%)")
    lo = min(95.0, 100 * doc["settings"]["attainment"] - 1)
    ax.set_ylim(lo, 100.2)
    ax.set_title(f"Tuned candidates, {doc['budget']} per policy (star: cheapest feasible)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def write_tune_report(doc: dict[str, Any], out_dir: Path) -> Path:
    """Write ``index.html`` and ``pareto.png`` for an ``outcome_json`` document."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _plot_fronts(doc, out_dir / "pareto.png")
    except OSError as exc:
        raise AutoscalerError(f"--report {out_dir}: cannot write the report: {exc}") from exc
    s = doc["settings"]
    rows = []
    for name, p in doc["policies"].items():
        ins, out, deg = p["in_sample"] or {}, p["held_out"] or {}, p["degradation"] or {}
        params = "" if p["best"] is None else ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in p["best"]["params"].items())
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{'yes' if p['feasible'] else 'no'}</td>"
            f"<td>{_cell(ins.get('gpu_hours'), '.2f')}</td>"
            f"<td>{_cell(ins.get('attainment'), '.2%')}</td>"
            f"<td>{_cell(ins.get('gpu_vs_oracle'), '.2f')}</td>"
            f"<td>{_cell(out.get('gpu_hours'), '.2f')}</td>"
            f"<td>{_cell(out.get('attainment'), '.2%')}</td>"
            f"<td>{_cell(out.get('gpu_vs_oracle'), '.2f')}</td>"
            f"<td>{_cell(deg.get('attainment_drop'), '+.2%')}</td>"
            f"<td>{p['feasible_trials']}/{p['trials']}</td>"
            f"<td style='text-align:left'>{html.escape(params)}</td></tr>")
    o_in, o_out = doc["oracle"]["in_sample"], doc["oracle"]["held_out"] or {}
    t, sp = doc["trace"], doc["split"]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Autoscaler tuning: {html.escape(t['name'])}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>Tuning on {html.escape(t['name'])}</h1>
<p>Goal: fewest GPU-hours with SLO attainment &ge; {s['attainment']:.2%} (TTFT &le;
{s['slo_ttft_s']:g} s). Method: {html.escape(doc['method'])}; budget {doc['budget']} candidates
per policy; seed {doc['seed']}. Tuned on the first {sp['train_s'] / 3600:.2f} h; held out:
{'none' if sp['held_out_s'] is None else f"the last {sp['held_out_s'] / 3600:.2f} h"}.
Oracle (floor): {o_in['gpu_hours']:.2f} GPU-h at {o_in['attainment']:.2%} in-sample;
{_cell(o_out.get('gpu_hours'), '.2f')} GPU-h at {_cell(o_out.get('attainment'), '.2%')}
held out.</p>
<table><tr><th>policy</th><th>feasible</th><th>GPU-h (in)</th><th>att. (in)</th>
<th>/ oracle (in)</th><th>GPU-h (held out)</th><th>att. (held out)</th>
<th>/ oracle (held out)</th><th>att. drop</th><th>feasible trials</th><th>best parameters</th>
</tr>
{chr(10).join(rows)}
</table>
<h2>Pareto fronts</h2><img src="pareto.png" alt="GPU-hours against attainment per policy">
</body></html>
"""
    index = out_dir / "index.html"
    try:
        index.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise AutoscalerError(f"--report {out_dir}: cannot write the report: {exc}") from exc
    return index
