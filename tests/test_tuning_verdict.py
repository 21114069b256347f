"""Issue 13's tuned goal per seed and over seeds (``autoscaler.tuning.verdict``): which
baseline is the best tuned one, the gap closed, and the median rule. Worked numbers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from autoscaler.tuning.verdict import (
    Baseline,
    SeedVerdict,
    aggregate,
    best_baseline,
    gap_closed,
    seed_verdict,
)

INF = math.inf


def _pol(gpu: float, att: float, feasible: bool = True,
         bound: float | None = None) -> dict[str, Any]:
    held = {"gpu_hours": gpu, "attainment": att, "bound_gpu_hours": bound}
    return {"feasible": feasible, "held_out": held}


def _doc(pred: tuple[float, float, float] | None, seed: int = 0,
         **baselines: dict[str, Any]) -> dict[str, Any]:
    pols: dict[str, Any] = {}
    if pred is not None:
        pols["predictive"] = _pol(pred[0], pred[1], bound=pred[2])
    pols.update({k.replace("_", "-"): v for k, v in baselines.items()})
    return {"seed": seed, "policies": pols}


@pytest.mark.parametrize(("doc", "want"), [
    # Azure code 1 h on main: no baseline reaches 99 % held out; the cheapest winner that
    # met 99 % in sample stands (KPA 0.54 at 94.56 %), marked as missing it. WVA's 1.00 at
    # 100 % held out never counts: its winner missed 99 % in sample.
    pytest.param(_doc(None, hpa=_pol(0.57, 0.9456), kpa=_pol(0.54, 0.9456),
                      hpa_running=_pol(1.22, 0.9809), wva=_pol(1.00, 1.0, feasible=False)),
                 Baseline("kpa", 0.54, 0.9456, False), id="none at 99 % held out: cheapest"),
    # One reaches 99 % held out: it is the like-for-like figure, however much cheaper the
    # misses are (0.83 and 0.99 at 95.50 % lose to hpa-running's 2.24 at 99.10 %).
    pytest.param(_doc(None, hpa=_pol(0.99, 0.9550), kpa=_pol(0.83, 0.9550),
                      hpa_running=_pol(2.24, 0.9910)),
                 Baseline("hpa-running", 2.24, 0.9910, True), id="the one at 99 % held out"),
    pytest.param(_doc(None, hpa=_pol(0.84, 1.0), kpa=_pol(0.73, 1.0), keda=_pol(1.01, 1.0)),
                 Baseline("kpa", 0.73, 1.0, True), id="cheapest of those at 99 %"),
    # Exactly 99 % reaches the target.
    pytest.param(_doc(None, hpa=_pol(0.90, 0.99), kpa=_pol(0.80, 0.9899)),
                 Baseline("hpa", 0.90, 0.99, True), id="99.00 % exactly counts"),
    pytest.param(_doc(None, hpa=_pol(0.5, 1.0, feasible=False)), None,
                 id="no winner met 99 % in sample: none"),
])
def test_best_tuned_baseline(doc: dict[str, Any], want: Baseline | None) -> None:
    assert best_baseline(doc) == want


@pytest.mark.parametrize(("base", "pred", "bound", "want"), [
    # (0.83 - 1.58) / (0.83 - 0.27) = -0.75 / 0.56 = -1.339.
    pytest.param(0.83, 1.58, 0.27, -1.3393, id="code x5 seed 0 on main: -134 %"),
    # (1.76 - 1.46) / (1.76 - 0.26) = 0.30 / 1.50 = 0.20.
    pytest.param(1.76, 1.46, 0.26, 0.20, id="code x5 seed 1: 20 %"),
    # (2.00 - 1.40) / (2.00 - 1.00) = 0.60: the goal exactly.
    pytest.param(2.00, 1.40, 1.00, 0.60, id="demo at 1.40: 60 %"),
    pytest.param(2.00, 1.00, 1.00, 1.0, id="predictive on the bound: 100 %"),
    # Zero gap: everyone on the bound (Azure conv 1 h).
    pytest.param(0.24, 0.24, 0.24, 1.0, id="zero gap, predictive on the bound: all of it"),
    pytest.param(0.24, 0.25, 0.24, -INF, id="zero gap, predictive above: none"),
    pytest.param(0.24, 0.24, math.nan, math.nan, id="no bound: no figure"),
])
def test_gap_closed(base: float, pred: float, bound: float, want: float) -> None:
    got = gap_closed(base, pred, bound)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize(("doc", "closed", "met"), [
    # (2.00 - 1.40) / (2.00 - 1.00) = 60 % at 100 % held out: met.
    pytest.param(_doc((1.40, 1.0, 1.0), kpa=_pol(2.00, 1.0)), 0.60, True, id="60 % at 100 %"),
    pytest.param(_doc((1.41, 1.0, 1.0), kpa=_pol(2.00, 1.0)), 0.59, False, id="59 %"),
    # All of the gap, but 98.9 % held out: not met.
    pytest.param(_doc((1.00, 0.989, 1.0), kpa=_pol(2.00, 1.0)), 1.0, False,
                 id="on the bound at 98.9 %"),
    # The baseline misses 99 % held out (none reaches it): its cheaper figure still sets
    # the gap: (0.54 - 0.90) / (0.54 - 0.24) = -1.20.
    pytest.param(_doc((0.90, 1.0, 0.24), kpa=_pol(0.54, 0.9456)), -1.20, False,
                 id="code on main: -120 %"),
])
def test_seed_verdict(doc: dict[str, Any], closed: float, met: bool) -> None:
    v = seed_verdict(doc)
    assert v.gap_closed == pytest.approx(closed, abs=0.005)
    assert v.met is met


def test_a_seed_without_a_baseline_rests_on_attainment() -> None:
    doc = _doc((1.0, 0.995, 0.5), hpa=_pol(0.5, 1.0, feasible=False))
    v = seed_verdict(doc)
    assert v.baseline is None and v.met
    assert math.isnan(v.gap_closed)


def _v(closed: float, att: float = 1.0, seed: int = 0, base: bool = True) -> SeedVerdict:
    b = Baseline("kpa", 1.0, 1.0, True) if base else None
    return SeedVerdict(seed, att, 1.0, b, 0.5, closed, att >= 0.99 and closed >= 0.6)


@pytest.mark.parametrize(("seeds", "median", "met"), [
    # 20 %, -134 %, 70 % -> sorted -134, 20, 70: median 20 %. Not met (the best seed, 70 %,
    # would say met; the mean, (-134 + 20 + 70) / 3 = -15 %, also no).
    pytest.param([_v(0.20), _v(-1.34), _v(0.70)], 0.20, False, id="code x5-like: 20 %"),
    # 90 %, 61 %, -200 % -> median 61 %: met. The mean, (90 + 61 - 200) / 3 = -16 %, and
    # "met on every seed" would both say no.
    pytest.param([_v(0.90), _v(0.61), _v(-2.00)], 0.61, True, id="one bad seed: median met"),
    # 59 %, 95 %, 95 % -> median 95 %: met; the worst seed (59 %) would say no.
    pytest.param([_v(0.59), _v(0.95), _v(0.95)], 0.95, True, id="median, not the minimum"),
    # Gap met on every seed, but 98.9 % held out on one: not met.
    pytest.param([_v(0.9), _v(0.9, att=0.989), _v(0.9)], 0.9, False,
                 id="one seed under 99 % held out"),
    # Two seeds: the median is the mean of the two, (50 + 70) / 2 = 60 %: met.
    pytest.param([_v(0.50), _v(0.70)], 0.60, True, id="even count: mean of the middle two"),
    # A seed without a figure closes nothing: -inf, 65 %, 65 % -> median 65 %: met;
    # -inf, -inf, 90 % -> median -inf: not met.
    pytest.param([_v(math.nan), _v(0.65), _v(0.65)], 0.65, True, id="one seed without a gap"),
    pytest.param([_v(math.nan), _v(math.nan), _v(0.9)], -INF, False,
                 id="two seeds without a gap"),
    # A zero gap closed (1.0) on two seeds, -inf on one: median 1.0.
    pytest.param([_v(1.0), _v(-INF), _v(1.0)], 1.0, True, id="zero gaps"),
])
def test_aggregate_is_the_median_gap_with_99_percent_on_every_seed(
        seeds: list[SeedVerdict], median: float, met: bool) -> None:
    agg = aggregate(seeds)
    assert agg.median_gap_closed == pytest.approx(median, abs=1e-9)
    assert agg.met is met
    assert agg.seeds_met == sum(s.met for s in seeds)


def test_aggregate_without_any_baseline_rests_on_attainment() -> None:
    agg = aggregate([_v(math.nan, base=False), _v(math.nan, att=0.991, base=False)])
    assert math.isnan(agg.median_gap_closed) and agg.met
    assert agg.min_attainment == pytest.approx(0.991)
    assert not aggregate([_v(math.nan, att=0.98, base=False)]).met
    assert not aggregate([]).met
