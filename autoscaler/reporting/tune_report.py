"""The tuning report: one self-contained HTML page (plotly inlined) and ``pareto.png``.

Readability choices:

* attainment is drawn as the share of requests that *missed* the SLO, on a log axis:
  99.0%, 99.9% and 99.99% attainment are 1%, 0.1% and 0.01% missed, a decade apart,
  instead of three points on the 100% line;
* one panel per policy on shared axes (candidates, the Pareto front, the winner), plus a
  panel of the fronts together;
* hindsight (a heuristic with foresight, not a floor) and the proven lower bound are
  vertical lines, so the cheapest star never hides under a marker;
* the table leads with the held-out figures (no candidate was chosen on that part), then
  in-sample, each with GPU-hours over the proven bound and over hindsight, and the winner.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoscaler.errors import AutoscalerError
from autoscaler.reporting.replay_report import color

MISS_FLOOR_PCT = 0.001
"""Missed share drawn for a candidate that missed nothing (a log axis has no 0)."""


def _miss_pct(attainment: float | None) -> float | None:
    if attainment is None or not math.isfinite(attainment):
        return None
    return max(MISS_FLOOR_PCT, 100.0 * (1.0 - attainment))


def _cell(x: Any, fmt: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, fmt)


def _hindsight(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The hindsight figures ("oracle" in files written before the rename)."""
    h: Mapping[str, Any] = doc.get("hindsight") or doc["oracle"]
    return h


def _vs_hindsight(f: Mapping[str, Any]) -> Any:
    return f.get("gpu_vs_hindsight", f.get("gpu_vs_oracle"))


def _winner(doc: Mapping[str, Any]) -> str | None:
    feas = [(p["best"]["gpu_hours"], name) for name, p in doc["policies"].items()
            if p["feasible"] and p["best"] is not None and p["best"]["gpu_hours"] is not None]
    return min(feas)[1] if feas else None


def build_figure(doc: Mapping[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(doc["policies"])
    target_miss = 100.0 * (1.0 - doc["settings"]["attainment"])
    cols = 2 if len(names) > 1 else 1
    rows = math.ceil((len(names) + 1) / cols)
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes="all", shared_yaxes="all",
                        subplot_titles=["all fronts", *names], vertical_spacing=0.12,
                        horizontal_spacing=0.07)
    winner = _winner(doc)
    o_in = _hindsight(doc)["in_sample"]
    bound = doc.get("bound") or {}
    for i, name in enumerate(names, start=2):
        r, c = (i - 1) // cols + 1, (i - 1) % cols + 1
        p = doc["policies"][name]
        pts = [(cand["gpu_hours"], _miss_pct(cand["attainment"]), cand) for cand in
               p["candidates"] if cand["gpu_hours"] is not None
               and _miss_pct(cand["attainment"]) is not None]
        fig.add_trace(go.Scatter(
            x=[x for x, _, _ in pts], y=[y for _, y, _ in pts], mode="markers",
            name=f"{name} candidates", legendgroup=name, showlegend=False,
            marker={"color": color(name), "size": 6, "opacity": 0.35},
            text=[html.escape(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else
                                        f"{k}={v}" for k, v in cand["params"].items()))
                  for _, _, cand in pts],
            hovertemplate="%{x:,.2f} GPU-h, %{y:.3g}% missed<br>%{text}<extra>" + name
            + "</extra>"), row=r, col=c)
        front = [(cand["gpu_hours"], _miss_pct(cand["attainment"])) for cand in p["pareto"]
                 if cand["gpu_hours"] is not None]
        for rr, cc, show in ((r, c, False), (1, 1, True)):
            if front:
                fig.add_trace(go.Scatter(
                    x=[x for x, _ in front], y=[y for _, y in front], mode="lines+markers",
                    line={"color": color(name), "shape": "hv", "width": 2},
                    marker={"size": 6}, name=f"{name} Pareto front", legendgroup=name,
                    showlegend=show, hovertemplate="%{x:,.2f} GPU-h, %{y:.3g}% missed"
                    "<extra>" + name + " front</extra>"), row=rr, col=cc)
            if p["best"] is not None and p["feasible"]:
                b = p["best"]
                star = "winner" if name == winner else "cheapest feasible"
                fig.add_trace(go.Scatter(
                    x=[b["gpu_hours"]], y=[_miss_pct(b["attainment"])], mode="markers",
                    marker={"symbol": "star", "size": 18 if name == winner else 13,
                            "color": color(name), "line": {"color": "black", "width": 1}},
                    name=f"{name}: {star}", legendgroup=name, showlegend=False,
                    hovertemplate=f"{name} {star}<br>%{{x:,.2f}} GPU-h, "
                    "%{y:.3g}% missed<extra></extra>"), row=rr, col=cc)
    for rr in range(1, rows + 1):
        for cc in range(1, cols + 1):
            if (rr - 1) * cols + cc > len(names) + 1:
                continue
            fig.add_hline(y=target_miss, line={"dash": "dash", "color": "black", "width": 1},
                          row=rr, col=cc)
            if o_in and o_in.get("gpu_hours") is not None:
                fig.add_vline(x=o_in["gpu_hours"], line={"color": color("hindsight"),
                              "dash": "dot", "width": 1.5}, row=rr, col=cc)
            if isinstance(bound.get("gpu_hours"), int | float):
                fig.add_vline(x=bound["gpu_hours"], line={"color": "#555", "dash": "dashdot",
                              "width": 1}, row=rr, col=cc)
    fig.update_yaxes(type="log", title_text="% of requests missing the SLO (log)",
                     exponentformat="none", showgrid=True, gridcolor="#eee")
    fig.update_xaxes(title_text="GPU-hours (training part)", tickformat=",~r",
                     exponentformat="none", showgrid=True, gridcolor="#eee")
    fig.update_layout(height=330 * rows + 80, template="plotly_white",
                      legend={"orientation": "h", "y": 1.04, "x": 0, "yanchor": "bottom"},
                      margin={"t": 90, "l": 70, "r": 20, "b": 50})
    return fig


def _table(doc: Mapping[str, Any]) -> str:
    winner = _winner(doc)
    rows = []
    for name, p in doc["policies"].items():
        ins, out, deg = p["in_sample"] or {}, p["held_out"] or {}, p["degradation"] or {}
        params = "" if p["best"] is None else ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in p["best"]["params"].items())
        mark = " ★ winner" if name == winner else ""
        rows.append(
            f"<tr><td class='l'>{html.escape(name)}{mark}</td>"
            f"<td>{'yes' if p['feasible'] else 'no'}</td>"
            f"<td>{_cell(out.get('gpu_hours'), ',.2f')}</td>"
            f"<td>{_cell(out.get('attainment'), '.3%')}</td>"
            f"<td>{_cell(out.get('gpu_vs_bound'), '.2f')}</td>"
            f"<td>{_cell(_vs_hindsight(out), '.2f')}</td>"
            f"<td>{_cell(ins.get('gpu_hours'), ',.2f')}</td>"
            f"<td>{_cell(ins.get('attainment'), '.3%')}</td>"
            f"<td>{_cell(ins.get('gpu_vs_bound'), '.2f')}</td>"
            f"<td>{_cell(_vs_hindsight(ins), '.2f')}</td>"
            f"<td>{_cell(deg.get('attainment_drop'), '+.3%')}</td>"
            f"<td>{p['feasible_trials']}/{p['trials']}</td>"
            f"<td class='l'>{html.escape(params)}</td></tr>")
    # Held-out figures lead: no candidate was chosen on that part. / bound is over the
    # proven lower bound at that attainment; / hindsight over a heuristic with foresight.
    return ("<table class='summary'><tr><th>policy</th><th>feasible</th>"
            "<th>GPU-h (held out)</th><th>att. (held out)</th><th>/ bound (held out)</th>"
            "<th>/ hindsight (held out)</th><th>GPU-h (in)</th><th>att. (in)</th>"
            "<th>/ bound (in)</th><th>/ hindsight (in)</th><th>att. drop</th>"
            "<th>feasible trials</th><th>best parameters</th></tr>" + "".join(rows)
            + "</table>")


def _png(doc: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, p in doc["policies"].items():
        pts = [(c["gpu_hours"], _miss_pct(c["attainment"]) or MISS_FLOOR_PCT)
               for c in p["candidates"]
               if c["gpu_hours"] is not None and _miss_pct(c["attainment"]) is not None]
        if pts:
            ax.scatter([x for x, _ in pts], [y for _, y in pts], s=10, alpha=0.3,
                       color=color(name))
        front = [(c["gpu_hours"], _miss_pct(c["attainment"]) or MISS_FLOOR_PCT)
                 for c in p["pareto"] if c["gpu_hours"] is not None]
        if front:
            ax.step([x for x, _ in front], [y for _, y in front], where="post",
                    color=color(name), lw=1.5, marker="o", ms=4, label=f"{name} front")
        if p["best"] is not None and p["feasible"]:
            ax.scatter([p["best"]["gpu_hours"]],
                       [_miss_pct(p["best"]["attainment"]) or MISS_FLOOR_PCT], s=160,
                       marker="*", color=color(name), edgecolor="black", zorder=5)
    o = _hindsight(doc)["in_sample"]
    if o and o.get("gpu_hours") is not None:
        ax.axvline(o["gpu_hours"], color=color("hindsight"), ls=":", lw=1.5,
                   label="hindsight (not a bound)")
    ax.axhline(100 * (1 - doc["settings"]["attainment"]), color="black", ls="--", lw=1,
               label="target")
    ax.set_yscale("log")
    ax.set_xlabel("GPU-hours (training part)")
    ax.set_ylabel("% of requests missing the SLO (log)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set_title("Tuned candidates (star: cheapest meeting the target)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tune_report(doc: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``index.html`` and ``pareto.png`` for a tuning outcome document."""
    from plotly.offline import get_plotlyjs

    fig = build_figure(doc)
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id="panel-0",
                      config={"displaylogo": False, "responsive": True})
    s, t, sp = doc["settings"], doc["trace"], doc["split"]
    o_in, o_out = _hindsight(doc)["in_sample"], _hindsight(doc)["held_out"] or {}
    bound = doc.get("bound") or {}
    bound_text = (f" Lower bound: {bound['gpu_hours']:,.2f} GPU-h "
                  f"({html.escape(str(bound.get('definition', '')))})."
                  if isinstance(bound.get("gpu_hours"), int | float) else "")
    winner = _winner(doc)
    # Files written before held-out parts were scored as a continuation have no such key.
    scoring = (f" (scored as a {html.escape(str(sp['held_out_scoring']))})"
               if sp.get("held_out_scoring") else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Autoscaler tuning: {html.escape(t['name'])}
</title><script>window.__reportErrors=[];window.addEventListener('error',function(e){{
window.__reportErrors.push(String(e.message||e));}});</script>
<script>{get_plotlyjs()}</script>
<style>body{{font-family:system-ui,sans-serif;max-width:1280px;margin:1.5em auto;padding:0 1em}}
table.summary{{border-collapse:collapse;font-variant-numeric:tabular-nums}}
table.summary td,table.summary th{{border-bottom:1px solid #ddd;padding:4px 8px;
text-align:right}}table.summary td.l{{text-align:left}}</style></head><body>
<h1>Tuning on {html.escape(t['name'])}</h1>
<p>Goal: fewest GPU-hours with SLO attainment &ge; {s['attainment']:.2%} (TTFT &le;
{s['slo_ttft_s']:g} s). Method {html.escape(doc['method'])}; {doc['budget']} candidates per
policy; seed {doc['seed']}. Tuned on the first {sp['train_s'] / 3600:,.2f} h; held out:
{'none' if sp['held_out_s'] is None else f"the last {sp['held_out_s'] / 3600:,.2f} h"}{scoring}.
Winner: <b>{html.escape(winner or 'none met the target')}</b>. Hindsight (dotted line; a
heuristic with foresight, not a bound):
{_cell(o_in.get('gpu_hours'), ',.2f')} GPU-h at {_cell(o_in.get('attainment'), '.3%')}
in-sample; {_cell(o_out.get('gpu_hours'), ',.2f')} GPU-h at
{_cell(o_out.get('attainment'), '.3%')} held out.{bound_text}</p>
{_table(doc)}
<section class="panel" data-panel="Pareto fronts"><h2>Pareto fronts</h2>
<p>Lower is better on both axes: left = cheaper, down = fewer requests missing the SLO. The
dashed line is the target.</p>{div}</section>
<script>document.documentElement.setAttribute('data-panels',
String(document.querySelectorAll('.js-plotly-plot').length));
document.documentElement.setAttribute('data-report-errors',
String(window.__reportErrors.length));</script>
</body></html>
"""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _png(doc, out_dir / "pareto.png")
        index = out_dir / "index.html"
        index.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise AutoscalerError(f"--report {out_dir}: cannot write the report: {exc}") from exc
    return index
