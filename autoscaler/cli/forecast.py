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


def _positive_int(option: str, text: str, allowed: str) -> int:
    if not c.Range(low=1, whole=True).check(_float(text)):
        raise SpecError(option, text, allowed)
    return int(float(text))


def _float(text: str) -> float:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return math.nan


def _parse(args: argparse.Namespace) -> tuple[int, list[int], list[str], float]:
    res = _positive_int("--resolution", args.resolution, "a positive whole number of seconds")
    allowed_h = f"comma-separated positive whole seconds, each a multiple of --resolution ({res})"
    horizons = [_positive_int("--horizons", part.strip(), allowed_h)
                for part in str(args.horizons).split(",")]
    bad = [h for h in horizons if h % res]
    if bad:
        raise SpecError("--horizons", args.horizons, allowed_h)
    models = [m.strip() for m in str(args.models).split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        raise SpecError("--models", args.models,
                        f"comma-separated names from {', '.join(MODEL_NAMES)}")
    train_days = c.Range(low=0, low_open=True, unit="days").parse("--train-days",
                                                                   args.train_days)
    return res, horizons, models, train_days


def _row_json(r: BacktestRow) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {"model": r.model, "horizon_s": r.horizon_s, "mae": num(r.mae),
            "relative_mae": num(r.relative_mae), "coverage_90": num(r.coverage_90),
            "n": r.n, "fallbacks": r.fallbacks, "fits_by_model": dict(r.chosen)}


def run(args: argparse.Namespace) -> int:
    """Run ``forecast backtest``; returns the exit code (errors are raised)."""
    import numpy as np

    from autoscaler.forecast.backtest import backtest
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
    rows = backtest(values, resolution_s=float(res), horizons_s=horizons, models=models,
                    train_steps=train, refit_every=max(1, DAY_S // res),
                    max_history_steps=28 * DAY_S // res)
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
