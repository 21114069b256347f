"""Issue 13's tuned-against-tuned goal, judged per seed and over seeds.

Per seed (one tune JSON, ``searching.outcome_json``): predictive reaches the attainment
target (99 %) on the held-out part, and closes at least ``GAP_GOAL`` of the gap between
the best tuned baseline's held-out GPU-hours and the proven lower bound:
closed = (baseline - predictive) / (baseline - bound).

*The best tuned baseline* (``best_baseline``): among the baselines whose winner met the
target in sample (the tuner's own claim), the cheapest held out of those that also reach
the target held out, a like-for-like figure. When none reaches it held out, the cheapest
of them all the same, marked as missing the target: its GPU-hours are bought with missed
requests, so the gap it sets is never easier to close than a like-for-like one would be
(the rule can only make predictive look worse, never better). A baseline whose winner
missed the target in sample is not a tuned configuration that meets the SLO and never
counts.

*A zero gap* (the baseline already on the bound, as every policy is on Azure conv 1 h):
there is nothing to close, and predictive closes "all of it" (1.0) when it is on the
bound too (its GPU-hours no more than the baseline's), none of it (-inf) otherwise.

*Over seeds* (``aggregate``): TPE's result moves with its seed (Azure code x5: 20 % of the
gap closed at seed 1, -134 % at seed 0, the best baseline moving 0.5 GPU-h), so one seed is
not a verdict. The goal is met when predictive reaches the target held out on *every*
seed (an SLO miss on one seed is a miss a user could draw) and the *median* gap closed
reaches ``GAP_GOAL`` (one lucky or unlucky study does not decide it, as a mean would let a
single -134 % do). A seed without a figure (predictive not tuned, no bound, or no baseline
met the target in sample on that seed) counts as closing nothing (-inf); when no seed has a
baseline, the goal rests on predictive's attainment alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TARGET = 0.99
"""The goal's attainment on the held-out part (issue 13)."""
GAP_GOAL = 0.6
"""The share of the gap to the bound predictive must close (issue 13)."""
PREDICTIVE = "predictive"

_REL = 1e-9
"""Float noise allowed when predictive and a baseline both sit on the bound (the same
replica-seconds summed in a different order)."""


@dataclass(frozen=True)
class Baseline:
    name: str
    gpu_hours: float
    attainment: float
    """Held out."""
    reaches_target: bool
    """Whether ``attainment`` reaches the target (a like-for-like figure)."""


@dataclass(frozen=True)
class SeedVerdict:
    seed: int
    attainment: float
    """Predictive's held-out attainment (nan: not tuned or no held-out part)."""
    gpu_hours: float
    baseline: Baseline | None
    bound_gpu_hours: float
    gap_closed: float
    """(baseline - predictive) / (baseline - bound); 1.0 / -inf on a zero gap; nan when
    there is no figure."""
    met: bool


@dataclass(frozen=True)
class Aggregate:
    seeds: tuple[int, ...]
    median_gap_closed: float
    min_attainment: float
    seeds_met: int
    met: bool


def best_baseline(doc: Mapping[str, Any], target: float = TARGET) -> Baseline | None:
    """The best tuned baseline of one tune JSON (module docstring); None when no baseline
    met the target in sample."""
    winners = [Baseline(name, float(p["held_out"]["gpu_hours"]),
                        float(p["held_out"]["attainment"]),
                        float(p["held_out"]["attainment"]) >= target)
               for name, p in doc["policies"].items()
               if name != PREDICTIVE and p.get("feasible") and p.get("held_out")]
    if not winners:
        return None
    like = [w for w in winners if w.reaches_target]
    return min(like or winners, key=lambda w: (w.gpu_hours, w.name))


def gap_closed(baseline_gpu: float, predictive_gpu: float, bound_gpu: float) -> float:
    """(baseline - predictive) / (baseline - bound); on a zero gap (baseline <= bound) 1.0
    when predictive is no more than the baseline, else -inf; nan without a bound.
    Worked number (Azure code x5, seed 0 on main): (0.83 - 1.58) / (0.83 - 0.27) = -1.34."""
    if not math.isfinite(bound_gpu):
        return math.nan
    if baseline_gpu <= bound_gpu * (1 + _REL):
        return 1.0 if predictive_gpu <= baseline_gpu * (1 + _REL) else -math.inf
    return (baseline_gpu - predictive_gpu) / (baseline_gpu - bound_gpu)


def seed_verdict(doc: Mapping[str, Any], target: float = TARGET,
                 gap_goal: float = GAP_GOAL) -> SeedVerdict:
    """The goal on one tune JSON (one seed)."""
    seed = int(doc.get("seed", doc.get("settings", {}).get("seed", 0)))
    pred = doc["policies"].get(PREDICTIVE)
    held = None if pred is None else pred.get("held_out")
    if not held:
        return SeedVerdict(seed, math.nan, math.nan, best_baseline(doc, target), math.nan,
                           math.nan, False)
    att, gpu = float(held["attainment"]), float(held["gpu_hours"])
    bound_raw = held.get("bound_gpu_hours")
    bound = math.nan if bound_raw is None else float(bound_raw)
    base = best_baseline(doc, target)
    if base is None:
        # No tuned baseline meets the SLO in sample: nothing to be compared with; the goal
        # rests on predictive's own attainment.
        return SeedVerdict(seed, att, gpu, None, bound, math.nan, att >= target)
    closed = gap_closed(base.gpu_hours, gpu, bound)
    return SeedVerdict(seed, att, gpu, base, bound, closed,
                       att >= target and closed >= gap_goal)


def aggregate(verdicts: Sequence[SeedVerdict], target: float = TARGET,
              gap_goal: float = GAP_GOAL) -> Aggregate:
    """The goal over seeds (module docstring): met when predictive reaches ``target`` held
    out on every seed and the median gap closed reaches ``gap_goal``. Worked numbers:
    closed 20 %, -134 %, 70 % -> median 20 %: not met (the mean, -15 %, and the best seed,
    70 %, would be other verdicts); closed 90 %, 61 %, -200 % at 99.5 % on each -> median
    61 %: met (the mean, -16 %, would say no)."""
    if not verdicts:
        return Aggregate((), math.nan, math.nan, 0, False)
    # A seed without a figure closes nothing (nan would sort anywhere in the median).
    closed = [-math.inf if math.isnan(v.gap_closed) else v.gap_closed for v in verdicts]
    no_baseline = all(v.baseline is None for v in verdicts)
    atts = [v.attainment for v in verdicts]
    all_att = all(a >= target for a in atts)  # nan compares False: a seed without a figure
    min_att = min(atts) if not any(math.isnan(a) for a in atts) else math.nan
    if no_baseline:
        median = math.nan
        met = all_att
    else:
        median = statistics.median(closed)
        met = all_att and median >= gap_goal
    return Aggregate(tuple(v.seed for v in verdicts), median, min_att,
                     sum(v.met for v in verdicts), met)
