"""``autoscaler forecast backtest``: score every forecaster on a trace (file I/O lives here,
the models in ``autoscaler.forecast`` stay pure)."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from autoscaler.cli import common as c
from autoscaler.errors import SpecError
from autoscaler.forecast import MODEL_NAMES

if TYPE_CHECKING:
    from autoscaler.forecast.backtest import BacktestRow

DEFAULT_HORIZONS = "300,900,1800"
DAY_S = 86_400


def add_parser(subparsers: Any) -> None:
    """Add ``forecast backtest`` to an argparse subparsers object."""
    fp = subparsers.add_parser("forecast", help="forecasting tools")
    fsub = fp.add_subparsers(dest="forecast_command", required=True)
    bp = fsub.add_parser(
        "backtest", help="rolling-origin backtest of every forecaster on a trace",
        description="Fit on the first part of the trace, then walk forward one bin at a "
                    "time (update per bin, refit daily) and score MAE and 90%% coverage.")
    bp.add_argument("--trace", required=True, help="trace file or ServeGen folder")
    c.add_window_arguments(bp)
    bp.add_argument("--resolution", default="60", help="bin width in seconds (default 60)")
    bp.add_argument("--horizons", default=DEFAULT_HORIZONS,
                    help=f"comma-separated lead times in seconds (default {DEFAULT_HORIZONS})")
    bp.add_argument("--models", default=",".join(MODEL_NAMES),
                    help="comma-separated models (baselines are always added)")
    bp.add_argument("--train-days", default="7", help="days fitted before scoring (default 7)")
    bp.add_argument("--no-gap-rule", action="store_true",
                    help="score runs of exact zeros as real traffic (by default a run of zeros "
                    "between bins that expected >= 100 requests is a collection gap: missing)")
    bp.add_argument("--json", dest="json_out", default=None, metavar="FILE|-",
                    help="write the results as JSON to FILE, or to stdout with '-'")
    bp.add_argument("--no-progress", action="store_true",
                    help="no progress bar (terminal) or progress lines (pipe)")


MAX_RESOLUTION_S = DAY_S
MAX_HORIZON_S = 7 * DAY_S
"""A week ahead: longer lead times are past what any policy plans for."""


def _whole(option: str, text: str, high: int, allowed: str) -> int:
    if not c.Range(low=1, high=high, whole=True).check(_float(text)):
        raise SpecError(option, text, allowed)
    return int(float(text))


def _float(text: str) -> float:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return math.nan


def _parse(args: argparse.Namespace) -> tuple[int, list[int], list[str], float]:
    res = _whole("--resolution", args.resolution, MAX_RESOLUTION_S,
                 f"a whole number of seconds >= 1 and <= {MAX_RESOLUTION_S}")
    allowed_h = (f"comma-separated whole seconds <= {MAX_HORIZON_S}, each a positive "
                 f"multiple of --resolution ({res})")
    horizons = [_whole("--horizons", part.strip(), MAX_HORIZON_S, allowed_h)
                for part in str(args.horizons).split(",")]
    if any(h % res for h in horizons):
        raise SpecError("--horizons", args.horizons, allowed_h)
    models = [m.strip() for m in str(args.models).split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        raise SpecError("--models", args.models,
                        f"comma-separated names from {', '.join(MODEL_NAMES)}")
    train_days = c.Range(low=0, low_open=True, high=3650, unit="days").parse(
        "--train-days", args.train_days)
    return res, horizons, models, train_days


def _row_json(r: BacktestRow) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {"model": r.model, "horizon_s": r.horizon_s, "mae": num(r.mae),
            "relative_mae": num(r.relative_mae), "coverage_90": num(r.coverage_90),
            "n": r.n, "fallbacks": r.fallbacks, "fits_by_model": dict(r.chosen)}


def _backtest_with_progress(values: Any, res: int, horizons: list[int], models: list[str],
                            train: int, *, enabled: bool) -> list[BacktestRow]:
    """``backtest`` one model at a time, for a progress step per model (a 2-month trace
    takes minutes per model). The baselines are scored in every call because they define
    ``relative_mae``; only the first call's baseline rows are kept, and the rows come out in
    ``backtest``'s own order (horizon, then model)."""
    from autoscaler.forecast import BASELINES
    from autoscaler.forecast.backtest import backtest

    names = list(dict.fromkeys([*BASELINES, *models]))
    extra = [m for m in names if m not in BASELINES]
    by_key: dict[tuple[str, int], BacktestRow] = {}
    with c.Progress(1 + len(extra), "forecast backtest", unit="model",
                    enabled=enabled, min_interval_s=0.0) as bar:
        for i, model in enumerate([None, *extra]):
            part = backtest(values, resolution_s=float(res), horizons_s=horizons,
                            models=[] if model is None else [model], train_steps=train,
                            refit_every=max(1, DAY_S // res),
                            max_history_steps=28 * DAY_S // res)
            for row in part:
                if (model is None) == (row.model in BASELINES) and (
                        model is None or row.model == model):
                    by_key[(row.model, row.horizon_s)] = row
            bar.update(1, "baselines" if i == 0 else str(model))
    return [by_key[(name, h)] for h in horizons for name in names if (name, h) in by_key]


def run(args: argparse.Namespace) -> int:
    """Run ``forecast backtest``; returns the exit code (errors are raised)."""
    import numpy as np

    from autoscaler.forecast.gaps import collection_gaps

    res, horizons, models, train_days = _parse(args)
    trace = c.load_trace_input(args.trace, None, start=args.start, duration=args.duration)
    raw = np.asarray(trace.binned_rates(float(res)), dtype=np.float64)
    # Same rule as the benchmark: a collection gap is missing data, not zero demand; it
    # is neither trained on nor scored. The trace's own gaps (ServeGen's silent windows,
    # a count trace's implausible silences) are missing too.
    values = raw if args.no_gap_rule else collection_gaps(
        trace.binned_rates_missing(float(res)), resolution_s=float(res))
    gaps = int(np.isnan(values).sum() - np.isnan(raw).sum())
    train = int(train_days * DAY_S // res)
    if train + max(horizons) // res >= values.shape[0]:
        raise SpecError("--train-days", args.train_days,
                        f"less than the trace's {values.shape[0] * res / DAY_S:.2f} days "
                        "minus the longest horizon")
    if not args.no_progress:
        c.note(f"forecast backtest: trace {trace.name}, {values.shape[0]:,} bins of {res} s "
               f"({gaps} in collection gaps); train {train * res / DAY_S:g} days; "
               f"horizons {', '.join(map(str, horizons))} s; models {', '.join(models)}")
    rows = _backtest_with_progress(values, res, horizons, models, train,
                                   enabled=not args.no_progress)
    doc = {"trace": {"name": trace.name}, "resolution_s": res,
           "train_s": train * res, "refit_every_s": DAY_S, "collection_gaps": gaps,
           "results": [_row_json(r) for r in rows]}
    if args.json_out:
        c.write_json("--json", args.json_out, doc)
        if args.json_out == "-":
            return 0
    print(format_table(rows))
    return 0


def format_table(rows: list[BacktestRow]) -> str:
    lines = [f"{'model':<20}{'horizon_s':>10}{'mae':>12}{'rel_mae':>9}{'cov90':>8}{'n':>8}"
             f"{'fallbacks':>10}"]
    for r in rows:
        lines.append(f"{r.model:<20}{r.horizon_s:>10}{r.mae:>12.4g}{r.relative_mae:>9.3f}"
                     f"{r.coverage_90:>8.3f}{r.n:>8}{r.fallbacks:>10}")
    return "\n".join(lines)
