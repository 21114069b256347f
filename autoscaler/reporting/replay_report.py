"""The replay report: one self-contained HTML file (plotly, its JavaScript inlined: no CDN,
works offline) plus PNGs for CI artefacts and the README (matplotlib).

Layout, top to bottom:

1. what was replayed (trace, SLO, profile, capacity, bin width, price) and the table of
   every policy (the old report's columns, plus dollars, worst hour and hours meeting the
   target when the replay reports them);
2. a comparison panel on one time axis: demand (bin mean and the busiest second of each
   bin, so a 1-s burst of 67 req/s is not shown as 12), SLO attainment per hour per policy
   against the target, and cumulative dollars per policy;
3. small multiples, one panel per policy on shared axes: provisioned and ready replicas,
   the replicas the demand needed (demand / one replica's capacity), the forecast (and its
   band, learned capacity) where the policy has one, every scale event with the decision's
   reason and message on hover, collection gaps shaded and overloaded hours marked;
4. cost against attainment.

Long traces are downsampled for the browser to at most ``MAX_POINTS`` points per line:
replica counts keep each group's maximum (a short peak stays visible), demand its mean
and its busiest second, attainment its minimum. The page says by how much.
"""

from __future__ import annotations

import html
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoscaler.errors import AutoscalerError

if TYPE_CHECKING:
    from autoscaler.replaying import Comparison

COLORS = {"hpa": "#d62728", "kpa": "#9467bd", "predictive": "#2ca02c",
          "hindsight": "#1f77b4", "oracle": "#1f77b4", "static": "#7f7f7f",
          "hpa-queue": "#ff7f0e", "hpa-kv": "#8c564b", "keda": "#e377c2", "wva": "#17becf",
          "hpa-running": "#bcbd22"}
SPARE_COLORS = ("#aec7e8", "#393b79", "#637939", "#843c39", "#7b4173")
"""For policy names without their own colour: picked by a stable hash of the name, so a
policy keeps its colour across reports (never one grey for all of them)."""
MAX_POINTS = 4000
"""Points per line in the browser; a 14-day trace at 60-s bins (20,160) is cut by 6."""
MAX_EVENTS = 3000
"""Scale-event markers per policy (the rest are counted in the panel title)."""
HOUR_S = 3600.0


def color(policy: str) -> str:
    if policy in COLORS:
        return COLORS[policy]
    return SPARE_COLORS[sum(policy.encode()) % len(SPARE_COLORS)]


@dataclass(frozen=True)
class Series:
    """One policy's timeline, downsampled."""

    t_h: np.ndarray
    provisioned: np.ndarray
    ready: np.ndarray
    attainment: np.ndarray


def _group(values: np.ndarray, k: int, how: str) -> np.ndarray:
    if k <= 1:
        return values
    n = len(values)
    m = math.ceil(n / k)
    pad = np.full(m * k - n, np.nan)
    v = np.concatenate((values.astype(np.float64), pad)).reshape(m, k)
    # An all-NaN group (a gap) is NaN, as it should be: silence numpy's warning about it.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if how == "max":
            return np.asarray(np.nanmax(v, axis=1))
        if how == "min":
            return np.asarray(np.nanmin(v, axis=1))
        return np.asarray(np.nanmean(v, axis=1))


def hourly_attainment(t_s: np.ndarray, arrivals_rps: np.ndarray, attainment: np.ndarray,
                      bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(hour start in hours, request-weighted attainment of each hour; NaN with no
    requests). Worked: bins with 100 req at 100% and 300 req at 90% -> 92.5%."""
    if len(t_s) == 0:
        return np.zeros(0), np.zeros(0)
    hours = np.floor(t_s / HOUR_S).astype(np.int64)
    n = int(hours.max()) + 1
    req = np.nan_to_num(arrivals_rps * bin_s)
    met = np.where(np.isfinite(attainment), attainment, 0.0) * req
    req = np.where(np.isfinite(attainment), req, 0.0)
    r = np.bincount(hours, weights=req, minlength=n)
    m = np.bincount(hours, weights=met, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        att = np.where(r > 0, m / r, np.nan)
    return np.arange(n, dtype=np.float64), att


def _gap_hours(gaps: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    return [(float(a) / HOUR_S, float(b) / HOUR_S) for a, b in gaps]


def _hover(rec: Mapping[str, Any]) -> str:
    parts = [f"<b>{html.escape(str(rec.get('reason', '')))}</b>",
             f"t = {float(rec.get('t_s', 0.0)) / HOUR_S:.2f} h",
             f"replicas {rec.get('current')} → {rec.get('replicas')}"]
    msg = str(rec.get("message", ""))
    if msg:
        # Wrap long messages: plotly hover labels do not wrap by themselves.
        words, line, lines = msg.split(), "", []
        for w in words:
            if len(line) + len(w) > 70:
                lines.append(line)
                line = ""
            line = f"{line} {w}".strip()
        lines.append(line)
        parts.append("<br>".join(html.escape(x) for x in lines))
    for key in sorted(rec):
        if key in ("reason", "message", "t_s", "current", "replicas", "policy", "metrics"):
            continue
        v = rec[key]
        if v is None:
            continue
        parts.append(f"{html.escape(key)}: {v:.4g}" if isinstance(v, float)
                     else f"{html.escape(key)}: {html.escape(str(v))}")
    return "<br>".join(parts)


def _fmt_num(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, fmt)


def _table(doc: Mapping[str, Any], price: float | None) -> str:
    target = doc.get("slo", {}).get("target_attainment")
    at_target = f"hours &ge; {target:.0%}" if isinstance(target, float) else "hours at target"
    extra = [("worst_hour_attainment", "worst hour", ".1%"),
             ("hours_meeting_target", at_target, ".0%"),
             ("bound_gpu_hours", "bound (GPU-h)", ",.2f"),
             ("gpu_vs_bound", "/ bound", ".2f"),
             ("replica_starts_per_day", "replica starts / day", ",.1f"),
             ("cold_start_gpu_hours", "cold-start GPU-h", ",.2f")]
    present = [e for e in extra if any(e[0] in r for r in doc["results"])]
    head = ("<tr><th>policy</th><th>SLO attainment</th><th>GPU-hours</th>"
            + ("<th>cost ($)</th>" if price is not None else "")
            + "<th>TTFT p50 (s)</th><th>p95 (s)</th><th>p99 (s)</th><th>scale events</th>"
            "<th>mean replicas</th><th>max replicas</th>"
            + "".join(f"<th>{h}</th>" for _, h, _ in present) + "</tr>")
    rows = []
    for r in doc["results"]:
        cells = [f"<td class='l'><span class='dot' style='background:{color(r['policy'])}'>"
                 f"</span>{html.escape(r['policy'])}</td>",
                 f"<td>{_fmt_num(r['slo_attainment'], '.2%')}</td>",
                 f"<td>{_fmt_num(r['gpu_hours'], ',.2f')}</td>"]
        if price is not None:
            cells.append(f"<td>{_fmt_num(r['gpu_hours'] * price, ',.2f')}</td>")
        cells += [f"<td>{_fmt_num(r['ttft_p50_s'], '.2f')}</td>",
                  f"<td>{_fmt_num(r['ttft_p95_s'], '.2f')}</td>",
                  f"<td>{_fmt_num(r['ttft_p99_s'], '.2f')}</td>",
                  f"<td>{_fmt_num(r['scale_events'], ',d')}</td>",
                  f"<td>{_fmt_num(r['mean_replicas'], '.2f')}</td>",
                  f"<td>{_fmt_num(r['max_replicas'], 'd')}</td>"]
        for key, _, fmt in present:
            v = r.get(key)
            ok = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f"<td>{_fmt_num(v, fmt) if ok else '–'}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='summary'>{head}{''.join(rows)}</table>"


def _axis_style() -> dict[str, Any]:
    # Plain numbers: thousands separators, never "+1.405e3" offsets or SI suffixes on
    # dollars.
    return {"tickformat": ",~r", "exponentformat": "none", "showgrid": True,
            "gridcolor": "#eee", "zeroline": False}


def build_figures(comparison: Comparison, decisions: Mapping[str, Sequence[Mapping[str, Any]]]
                  ) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """(title, plotly figure) of each section, and facts the page states (bin width, ...)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from autoscaler.replaying import comparison_json

    doc = comparison_json(comparison)
    results = comparison.results
    first = next(iter(results.values()))
    tl = first.timeline
    bin_s = float(tl.t_s[1] - tl.t_s[0]) if len(tl.t_s) > 1 else float(
        comparison.trace.duration_s)
    k = max(1, math.ceil(len(tl.t_s) / MAX_POINTS))
    target = next(iter(comparison.specs.values())).slo.target_attainment
    cap = comparison.capacity.requests_per_second
    price = comparison.profile.gpu_hour_cost
    gpus = comparison.profile.gpus_per_replica
    gaps = _gap_hours(comparison.trace.gaps)
    t_h = _group(tl.t_s / HOUR_S, k, "min")
    demand = _group(tl.arrival_rps, k, "mean")
    # The busiest second of each displayed bin, from the trace itself.
    per_s = comparison.trace.binned_rates(1.0)
    group_s = round(bin_s * k)
    peak = _group(per_s, max(1, group_s), "max")[: len(t_h)] if group_s >= 1 else demand
    shown_bin_s = bin_s * k

    # --- comparison -------------------------------------------------------------------
    cmp_fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.05,
                            subplot_titles=(
                                f"Demand: mean per {shown_bin_s:g}-s bin and busiest second",
                                f"SLO attainment per hour (target {target:.0%})",
                                f"Time to first token, p95 per {shown_bin_s:g}-s bin "
                                f"(SLO {comparison.options.slo_ttft_s:g} s)",
                                "Cumulative cost" + (" ($)" if price is not None
                                                     else " (GPU-hours)")))
    cmp_fig.add_trace(go.Scatter(x=t_h, y=peak, name="busiest second (req/s)",
                                 line={"color": "#bbbbbb", "width": 1},
                                 legendgroup="demand"), row=1, col=1)
    cmp_fig.add_trace(go.Scatter(x=t_h, y=demand, name=f"mean per {shown_bin_s:g} s (req/s)",
                                 line={"color": "black", "width": 1.2},
                                 legendgroup="demand"), row=1, col=1)
    for kind, result in results.items():
        name = kind.value
        t = result.timeline
        hx, att = hourly_attainment(t.t_s, t.arrival_rps, t.attainment, bin_s)
        cmp_fig.add_trace(go.Scatter(
            x=hx + 0.5, y=100 * att, mode="lines+markers", name=f"{name}",
            legendgroup=name, line={"color": color(name), "width": 1.5},
            marker={"size": 4}, hovertemplate="%{y:.1f}% in hour %{x:.0f}<extra>" + name
            + "</extra>"), row=2, col=1)
        cost_step = np.diff(np.concatenate(([0.0], t.t_s))) if len(t.t_s) else np.zeros(0)
        cost_step = np.append(cost_step[1:], bin_s) if len(cost_step) else cost_step
        gpu_h = np.cumsum(t.provisioned_replicas * cost_step) * gpus / HOUR_S
        cum = gpu_h * (price if price is not None else 1.0)
        cmp_fig.add_trace(go.Scatter(
            x=_group(t.t_s / HOUR_S, k, "min"), y=_group(cum, k, "max"), name=name,
            legendgroup=name, showlegend=False, line={"color": color(name), "width": 1.5},
            hovertemplate=("$%{y:,.2f}" if price is not None else "%{y:,.1f} GPU-h")
            + "<extra>" + name + "</extra>"), row=4, col=1)
        cmp_fig.add_trace(go.Scatter(
            x=_group(t.t_s / HOUR_S, k, "min"),
            y=np.maximum(_group(t.ttft_p95_s, k, "max"), 1e-3), name=name,
            legendgroup=name, showlegend=False, line={"color": color(name), "width": 1},
            hovertemplate="%{y:.2f} s<extra>" + name + "</extra>"), row=3, col=1)
    cmp_fig.add_hline(y=100 * target, line={"color": "black", "dash": "dash", "width": 1},
                      row=2, col=1)
    cmp_fig.add_hline(y=comparison.options.slo_ttft_s,
                      line={"color": "black", "dash": "dash", "width": 1}, row=3, col=1)
    for a, b in gaps:
        cmp_fig.add_vrect(x0=a, x1=b, fillcolor="#f4c542", opacity=0.25, line_width=0)
    cmp_fig.update_yaxes(title_text="requests/s", row=1, col=1, **_axis_style())
    cmp_fig.update_yaxes(title_text="% of requests within SLO", row=2, col=1,
                         **_axis_style())
    cmp_fig.update_yaxes(title_text="seconds (log)", type="log", row=3, col=1,
                         exponentformat="none", showgrid=True, gridcolor="#eee")
    cmp_fig.update_yaxes(title_text="dollars" if price is not None else "GPU-hours",
                         tickprefix="$" if price is not None else "", row=4, col=1,
                         **_axis_style())
    cmp_fig.update_xaxes(title_text="hours since trace start", row=4, col=1, **_axis_style())
    cmp_fig.update_xaxes(rangeslider={"visible": False}, **_axis_style())
    cmp_fig.update_layout(height=1000, template="plotly_white", hovermode="x unified",
                          legend={"orientation": "h", "y": 1.06, "x": 0},
                          margin={"t": 80, "l": 70, "r": 20, "b": 50})

    # --- small multiples ------------------------------------------------------------------
    kinds = list(results)
    titles = []
    for kind in kinds:
        s = results[kind].summary
        n_ev = sum(1 for r in decisions.get(kind.value, ())
                   if r.get("replicas") != r.get("current"))
        thin = (f" (markers: every {math.ceil(n_ev / MAX_EVENTS)}th)"
                if n_ev > MAX_EVENTS else "")
        titles.append(f"{kind.value}: {s.slo_attainment:.2%} attainment, "
                      f"{s.gpu_hours:,.1f} GPU-h, {s.scale_events:,d} scale events{thin}")
    sm = make_subplots(rows=len(kinds), cols=1, shared_xaxes=True,
                       vertical_spacing=0.04 if len(kinds) > 3 else 0.08,
                       subplot_titles=titles)
    need = _group(np.asarray(tl.arrival_rps) / cap if cap > 0 else tl.arrival_rps, k, "mean")
    shown_legend: set[str] = set()

    def once(group: str) -> bool:
        """Show a legend entry the first time its group appears (one legend for all)."""
        if group in shown_legend:
            return False
        shown_legend.add(group)
        return True

    for i, kind in enumerate(kinds, start=1):
        name = kind.value
        t = results[kind].timeline
        legend = i == 1
        tt = _group(t.t_s / HOUR_S, k, "min")
        sm.add_trace(go.Scatter(x=tt, y=need, name="replicas the demand needed",
                                fill="tozeroy", line={"color": "#cccccc", "width": 0},
                                fillcolor="rgba(150,150,150,0.25)", legendgroup="need",
                                showlegend=legend, hovertemplate="%{y:.1f} needed<extra>"
                                "</extra>"), row=i, col=1)
        sm.add_trace(go.Scatter(x=tt, y=_group(t.provisioned_replicas, k, "max"),
                                name="provisioned (paid for)", line={"color": color(name),
                                "width": 1.6, "shape": "hv"}, legendgroup="prov",
                                showlegend=legend), row=i, col=1)
        sm.add_trace(go.Scatter(x=tt, y=_group(t.ready_replicas, k, "max"),
                                name="ready (serving)", line={"color": color(name),
                                "width": 1, "dash": "dot", "shape": "hv"},
                                legendgroup="ready", showlegend=legend), row=i, col=1)
        recs = list(decisions.get(name, ()))
        fc = [(r["t_s"], r["forecast_rps"]) for r in recs
              if isinstance(r.get("forecast_rps"), int | float) and cap > 0]
        if fc:
            fx = np.asarray([a for a, _ in fc]) / HOUR_S
            fy = np.asarray([b for _, b in fc]) / cap
            kf = max(1, math.ceil(len(fx) / MAX_POINTS))
            lo_key = next((key for key in ("forecast_low_rps", "forecast_lower_rps")
                           if any(key in r for r in recs)), None)
            hi_key = next((key for key in ("forecast_high_rps", "forecast_upper_rps")
                           if any(key in r for r in recs)), None)
            if lo_key and hi_key:
                band = [(r["t_s"], r.get(lo_key), r.get(hi_key)) for r in recs
                        if isinstance(r.get(lo_key), int | float)
                        and isinstance(r.get(hi_key), int | float)]
                if band:
                    bx = np.asarray([b[0] for b in band]) / HOUR_S
                    kb = max(1, math.ceil(len(bx) / MAX_POINTS))
                    sm.add_trace(go.Scatter(
                        x=_group(bx, kb, "min"),
                        y=_group(np.asarray([b[2] for b in band]) / cap, kb, "max"),
                        line={"width": 0}, showlegend=False, hoverinfo="skip",
                        legendgroup="band"), row=i, col=1)
                    sm.add_trace(go.Scatter(
                        x=_group(bx, kb, "min"),
                        y=_group(np.asarray([b[1] for b in band]) / cap, kb, "min"),
                        fill="tonexty", fillcolor="rgba(44,160,44,0.15)", line={"width": 0},
                        name="forecast band", legendgroup="band", showlegend=once("band"),
                        hoverinfo="skip"), row=i, col=1)
            sm.add_trace(go.Scatter(x=_group(fx, kf, "min"), y=_group(fy, kf, "mean"),
                                    name="forecast (replicas)", legendgroup="fc",
                                    showlegend=once("fc"), line={"color": "#2ca02c", "width": 1,
                                                           "dash": "dash"}), row=i, col=1)
        cap_key = next((key for key in ("learned_capacity_rps", "capacity_rps")
                        if any(isinstance(r.get(key), int | float) for r in recs)), None)
        if cap_key:
            pts = [(r["t_s"], r[cap_key]) for r in recs if isinstance(r.get(cap_key),
                                                                      int | float)]
            cx = np.asarray([a for a, _ in pts]) / HOUR_S
            kc = max(1, math.ceil(len(cx) / MAX_POINTS))
            sm.add_trace(go.Scatter(
                x=_group(cx, kc, "min"), y=_group(np.asarray([b for _, b in pts]), kc, "mean"),
                name="learned capacity (req/s per replica)", yaxis=None,
                line={"color": "#8c564b", "width": 1}, legendgroup="cap", showlegend=once("cap"),
                visible="legendonly"), row=i, col=1)
        events = [r for r in recs if r.get("replicas") != r.get("current")]
        # Too many markers to hover: keep every k-th over the whole range (not the first
        # MAX_EVENTS, which would leave the end of a 14-day trace without any).
        stride = max(1, math.ceil(len(events) / MAX_EVENTS))
        shown = events[::stride]
        if shown:
            ups = [r for r in shown if r["replicas"] > r["current"]]
            downs = [r for r in shown if r["replicas"] < r["current"]]
            for group, sym, label in ((ups, "triangle-up", "scale up"),
                                      (downs, "triangle-down", "scale down")):
                if not group:
                    continue
                sm.add_trace(go.Scatter(
                    x=[r["t_s"] / HOUR_S for r in group], y=[r["replicas"] for r in group],
                    mode="markers", name=label, legendgroup=label, showlegend=once(label),
                    marker={"symbol": sym, "size": 8, "color": color(name),
                            "line": {"color": "black", "width": 0.5}},
                    text=[_hover(r) for r in group], hovertemplate="%{text}<extra></extra>"),
                    row=i, col=1)
        # Overloaded hours: attainment under target.
        hx, att = hourly_attainment(t.t_s, t.arrival_rps, t.attainment, bin_s)
        bad = np.isfinite(att) & (att < target)
        if bad.any():
            sm.add_trace(go.Scatter(
                x=hx[bad] + 0.5, y=np.zeros(int(bad.sum())), mode="markers",
                name=f"hour under {target:.0%} attainment", legendgroup="over",
                showlegend=once("over"),
                marker={"symbol": "x", "color": "#d62728", "size": 9},
                text=[f"{a:.1%} of the hour's requests within SLO" for a in att[bad]],
                hovertemplate="%{text}<extra>overload</extra>"), row=i, col=1)
        for a, b in gaps:
            sm.add_vrect(x0=a, x1=b, fillcolor="#f4c542", opacity=0.25, line_width=0,
                         row=i, col=1)
        sm.update_yaxes(title_text="replicas", row=i, col=1, rangemode="tozero",
                        **_axis_style())
    # One y scale for every panel (make_subplots' shared_yaxes only links columns).
    top = max(float(np.nanmax(r.timeline.provisioned_replicas)) if len(r.timeline.t_s)
              else 1.0 for r in results.values())
    sm.update_yaxes(range=[-0.3, max(1.0, top) * 1.08])
    sm.update_xaxes(**_axis_style())
    sm.update_xaxes(title_text="hours since trace start", row=len(kinds), col=1)
    sm.update_layout(height=230 * len(kinds) + 120, template="plotly_white",
                     hovermode="closest", legend={"orientation": "h", "y": 1.02, "x": 0,
                                                  "yanchor": "bottom"},
                     margin={"t": 90, "l": 70, "r": 20, "b": 50})

    # --- cost against attainment --------------------------------------------------------
    tr = go.Figure()
    for r in doc["results"]:
        x = r["gpu_hours"] * (price if price is not None else 1.0)
        tr.add_trace(go.Scatter(x=[x], y=[100 * r["slo_attainment"]], mode="markers+text",
                                text=[r["policy"]], textposition="top center",
                                marker={"size": 12, "color": color(r["policy"])},
                                name=r["policy"], showlegend=False))
    tr.add_hline(y=100 * target, line={"dash": "dash", "color": "black", "width": 1},
                 annotation_text=f"target {target:.0%}")
    tr.update_xaxes(title_text="dollars" if price is not None else "GPU-hours",
                    tickprefix="$" if price is not None else "", **_axis_style())
    tr.update_yaxes(title_text="% of requests within SLO", **_axis_style())
    tr.update_layout(height=420, template="plotly_white", margin={"t": 30})
    facts = {"bin_s": bin_s, "shown_bin_s": shown_bin_s, "downsample": k,
             "target": target, "price": price, "doc": doc}
    return ([("Comparison", cmp_fig), ("One panel per policy", sm),
             ("Cost against attainment", tr)], facts)


def _page(comparison: Comparison, figures: Sequence[tuple[str, Any]],
          facts: Mapping[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    doc = facts["doc"]
    t = doc["trace"]
    price = facts["price"]
    sections = []
    for i, (title, fig) in enumerate(figures):
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"panel-{i}",
                          config={"displaylogo": False, "responsive": True,
                                  "scrollZoom": False})
        sections.append(f"<section class='panel' data-panel='{html.escape(title)}'>"
                        f"<h2>{html.escape(title)}</h2>{div}</section>")
    ds = ("" if facts["downsample"] <= 1 else
          f" Lines are drawn at {facts['shown_bin_s']:g}-s bins ({facts['downsample']} "
          "replay bins each: replicas at their maximum, attainment at its minimum, demand "
          "at its mean).")
    gaps = comparison.trace.gaps
    gap_text = (f" {len(gaps)} collection gap(s), {sum(b - a for a, b in gaps) / 3600:.1f} h "
                "in all, shaded yellow: no traffic and no scoring there." if gaps else "")
    price_text = (f"Cost at ${price:g} per GPU-hour (the profile's gpu_hour_cost)."
                  if price is not None else "The profile has no gpu_hour_cost: costs are "
                  "in GPU-hours.")
    title = f"Autoscaler replay: {t['name']}"
    bound = doc.get("bound") or {}
    bound_html = ""
    if bound.get("definition"):
        bound_html += (f"<p class='facts'><b>Bound:</b> {html.escape(str(bound['definition']))}"
                       "</p>")
    if any(r["policy"] == "hindsight" for r in doc["results"]):
        bound_html += ("<p class='facts'>The <i>hindsight</i> policy (formerly <i>oracle</i>) "
                       "is a heuristic given the true future rates; it is not a bound, and "
                       "other policies may use fewer GPU-hours than it.</p>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script>window.__reportErrors=[];window.addEventListener('error',function(e){{
window.__reportErrors.push(String(e.message||e));document.documentElement.setAttribute(
'data-report-errors',String(window.__reportErrors.length));}});</script>
<script>{get_plotlyjs()}</script>
<style>body{{font-family:system-ui,sans-serif;max-width:1280px;margin:1.5em auto;
padding:0 1em;color:#222}}h1{{font-size:1.5em}}h2{{font-size:1.15em;margin-top:1.6em}}
table.summary{{border-collapse:collapse;font-variant-numeric:tabular-nums}}
table.summary td,table.summary th{{border-bottom:1px solid #ddd;padding:4px 10px;
text-align:right}}table.summary td.l{{text-align:left}}
.dot{{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}}
p.facts{{line-height:1.5}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="facts">{t['requests']:,} requests over {t['duration_s'] / 3600:,.2f} h. SLO: time to
first token &le; {doc['slo']['ttft_s']:g} s for {facts['target']:.0%} of requests. Replica
profile {html.escape(doc['profile'])}: one replica holds
{doc['capacity']['requests_per_second']:,.2f} req/s at the SLO. Replay bins are
{facts['bin_s']:g} s.{ds} {price_text}{gap_text} Hover a triangle for the decision's reason
and message; drag to zoom, double-click to reset.</p>
{_table(doc, price)}
{bound_html}
{''.join(sections)}
<p class="facts">Static images of the same (for CI artefacts and documents):
<a href="comparison.png">comparison.png</a>, <a href="replicas.png">replicas.png</a>; the
table as JSON: <a href="summary.json">summary.json</a>.</p>
<script>document.documentElement.setAttribute('data-panels',
String(document.querySelectorAll('.js-plotly-plot').length));
document.documentElement.setAttribute('data-report-errors',
String(window.__reportErrors.length));</script>
</body></html>
"""


def write_png(comparison: Comparison, out_dir: Path) -> list[Path]:
    """The static PNGs: comparison and small multiples (matplotlib, for CI and README)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, StrMethodFormatter

    results = comparison.results
    first = next(iter(results.values())).timeline
    bin_s = float(first.t_s[1] - first.t_s[0]) if len(first.t_s) > 1 else 60.0
    target = next(iter(comparison.specs.values())).slo.target_attainment
    cap = comparison.capacity.requests_per_second
    price = comparison.profile.gpu_hour_cost
    gpus = comparison.profile.gpus_per_replica
    plain = StrMethodFormatter("{x:,.0f}")
    paths = []
    n = len(results)
    fig, axes = plt.subplots(n, 1, figsize=(11, 1.9 * n + 0.8), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (kind, res) in zip(axes[:, 0], results.items(), strict=True):
        tl = res.timeline
        th = tl.t_s / HOUR_S
        ax.fill_between(th, 0, tl.arrival_rps / cap if cap > 0 else 0, color="#999",
                        alpha=0.3, lw=0, label="needed")
        ax.step(th, tl.provisioned_replicas, where="post", color=color(kind.value), lw=1.3,
                label="provisioned")
        ax.step(th, tl.ready_replicas, where="post", color=color(kind.value), lw=0.8, ls=":",
                label="ready")
        for a, b in comparison.trace.gaps:
            ax.axvspan(a / HOUR_S, b / HOUR_S, color="#f4c542", alpha=0.3, lw=0)
        s = res.summary
        ax.set_title(f"{kind.value}: {s.slo_attainment:.2%} attainment, "
                     f"{s.gpu_hours:,.1f} GPU-h", fontsize=9, loc="left")
        ax.set_ylabel("replicas")
        ax.yaxis.set_major_formatter(plain)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3, framealpha=0.9)
    axes[-1, 0].set_xlabel("hours since trace start")
    fig.tight_layout()
    p = out_dir / "replicas.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)

    fig, (a0, a1, a3, a2) = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    per_s = comparison.trace.binned_rates(1.0)
    a0.plot(np.arange(per_s.size) / HOUR_S, per_s, color="#bbb", lw=0.5,
            label="per second")
    a0.plot(first.t_s / HOUR_S, first.arrival_rps, color="black", lw=1,
            label=f"mean per {bin_s:g} s")
    a0.set_ylabel("requests/s")
    a0.yaxis.set_major_formatter(plain)
    a0.legend(loc="upper left", fontsize=8, framealpha=0.9)
    a0.set_title(f"{comparison.trace.name}: one replica holds {cap:,.2f} req/s at the SLO",
                 fontsize=10, loc="left")
    a0.grid(alpha=0.3)
    for kind, res in results.items():
        tl = res.timeline
        hx, att = hourly_attainment(tl.t_s, tl.arrival_rps, tl.attainment, bin_s)
        a1.plot(hx + 0.5, 100 * att, color=color(kind.value), lw=1.2, label=kind.value)
        a3.plot(tl.t_s / HOUR_S, np.maximum(tl.ttft_p95_s, 1e-3), color=color(kind.value),
                lw=0.8)
        dt = np.append(np.diff(tl.t_s), bin_s)
        cum = np.cumsum(tl.provisioned_replicas * dt) * gpus / HOUR_S * (price or 1.0)
        a2.plot(tl.t_s / HOUR_S, cum, color=color(kind.value), lw=1.2, label=kind.value)
    for ax in (a0, a1, a2, a3):
        for a, b in comparison.trace.gaps:
            ax.axvspan(a / HOUR_S, b / HOUR_S, color="#f4c542", alpha=0.3, lw=0)
    a1.axhline(100 * target, color="black", ls="--", lw=1)
    a1.set_ylabel("% within SLO, per hour")
    a1.legend(loc="lower left", fontsize=8, ncol=len(results), framealpha=0.9)
    a1.grid(alpha=0.3)
    a3.axhline(comparison.options.slo_ttft_s, color="black", ls="--", lw=1)
    a3.set_yscale("log")
    a3.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a3.set_ylabel(f"TTFT p95 per {bin_s:g} s (s)")
    a3.grid(alpha=0.3)
    a2.set_ylabel("cumulative $" if price is not None else "cumulative GPU-hours")
    a2.yaxis.set_major_formatter(FuncFormatter(
        lambda v, _: f"${v:,.0f}" if price is not None else f"{v:,.0f}"))
    a2.set_xlabel("hours since trace start")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    p = out_dir / "comparison.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    return paths


def write_report(comparison: Comparison, out_dir: Path,
                 decisions: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> Path:
    """Write ``index.html`` (self-contained) and the PNGs into ``out_dir``; return the
    index path. ``decisions`` maps a policy name to its decision records (see
    ``autoscaler.replaying.decision_record``), for the hover text and forecasts."""
    figures, facts = build_figures(comparison, decisions or {})
    page = _page(comparison, figures, facts)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_png(comparison, out_dir)
        index = out_dir / "index.html"
        index.write_text(page, encoding="utf-8")
        (out_dir / "summary.json").write_text(json.dumps(
            _finite(facts["doc"]), indent=1), encoding="utf-8")
    except OSError as exc:
        raise AutoscalerError(f"--report {out_dir}: cannot write the report: {exc}") from exc
    return index


def _finite(doc: Any) -> Any:
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_finite(v) for v in doc]
    return doc
