"""What a TTFT histogram's buckets prove about attainment at an SLO (``attainment_bounds``,
``attainment_verdict``), and what they do not.

The SLO is judged on attainment: the share of first tokens within the objective (99 % within
2 s by default). vLLM exposes ``vllm:time_to_first_token_seconds_bucket`` with
le = ..., 1.0, 2.5, 5.0, ...: the share at or below 1.0 s is a lower bound of the attainment
at 2 s (it may only confirm a target), the share at or below 2.5 s an upper bound (it may
only refute one). Worked numbers are written out; the hypothesis tests check the bounds
bracket the samples' own share and never contradict the quantile verdict on the same
buckets.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core.histogram import (
    Verdict,
    attainment_bounds,
    attainment_verdict,
    histogram_quantile_buckets,
    verdict,
)

VLLM = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
        10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
"""vLLM's TTFT bucket bounds, written out (seconds)."""
TRITON = [0.1, 0.5, 2.0, 5.0]
"""Triton's default latency buckets in seconds: a 2-s objective sits on a bound."""


def cumulative(bounds: list[float], counts_at: dict[float, int], total: int) -> list[float]:
    """Cumulative counts per bound (and +Inf = total) from {bound: count at or below it}
    for the bounds where the count changes; in between it carries the last one."""
    out, last = [], 0
    for b in bounds:
        last = counts_at.get(b, last)
        out.append(float(last))
    return [*out, float(total)]


# 470 requests in a 60-s window at 7.8 req/s (Azure conv's one replica near its knee).
CASES = [
    # id, objective, target, bounds, {bound: cumulative}, total, lower, upper, verdict
    ("vllm-2s-doubt-2.13pct", 2.0, 0.99, VLLM, {1.0: 460, 2.5: 470}, 470,
     460 / 470, 1.0, Verdict.AMBIGUOUS),  # 0.9787 <= attainment <= 1.0
    ("vllm-2s-proven-0.64pct", 2.0, 0.99, VLLM, {1.0: 467, 2.5: 470}, 470,
     467 / 470, 1.0, Verdict.MET),  # 467 >= 0.99 x 470 = 465.3
    ("vllm-2s-refuted", 2.0, 0.99, VLLM, {1.0: 460, 2.5: 464}, 470,
     460 / 470, 464 / 470, Verdict.BREACH),  # 464 < 465.3: at most 98.72 % met
    ("vllm-2s-target-0.95-is-the-spec-s", 2.0, 0.95, VLLM, {1.0: 460, 2.5: 470}, 470,
     460 / 470, 1.0, Verdict.MET),  # 460 >= 0.95 x 470 = 446.5: the same buckets meet 95 %
    ("triton-2s-on-a-bound-exact", 2.0, 0.99, TRITON, {0.5: 400, 2.0: 466, 5.0: 470}, 470,
     466 / 470, 466 / 470, Verdict.MET),  # 466 >= 465.3, and the share is exact
    ("objective-below-first-bound", 0.05, 0.99, TRITON, {0.1: 300, 5.0: 470}, 470,
     0.0, 300 / 470, Verdict.BREACH),
    ("objective-above-last-finite-bound", 6.0, 0.99, TRITON, {5.0: 460}, 470,
     460 / 470, 1.0, Verdict.AMBIGUOUS),  # 10 in the +Inf bucket: anywhere above 5 s
]


@pytest.mark.parametrize(("objective", "target", "bounds", "at", "total", "lower", "upper",
                          "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_attainment_bounds_worked(objective: float, target: float, bounds: list[float],
                                  at: dict[float, int], total: int, lower: float,
                                  upper: float, expected: Verdict) -> None:
    cum = cumulative(bounds, at, total)
    lo, hi = attainment_bounds(objective, bounds, cum)
    assert lo == pytest.approx(lower, abs=1e-12)
    assert hi == pytest.approx(upper, abs=1e-12)
    assert attainment_verdict(objective, target, bounds, cum) is expected


def test_empty_histogram_is_no_attainment() -> None:
    """No requests in the window: no share, and never a met target (missing is not low
    load)."""
    cum = [0.0] * (len(VLLM) + 1)
    lo, hi = attainment_bounds(2.0, VLLM, cum)
    assert math.isnan(lo) and math.isnan(hi)
    assert attainment_verdict(2.0, 0.99, VLLM, cum) is Verdict.AMBIGUOUS


def test_interpolated_p99_below_the_objective_is_not_a_proof() -> None:
    """The first worked case reads p99 = 1.0 + 1.5 x (465.3 - 460) / 10 = 1.795 s, which
    ``verdict`` takes as met (interpolation); the buckets prove only 97.87 %: up to 10 of
    470 requests (2.13 %, twice the 1 % budget) may have taken 2.0-2.5 s."""
    cum = cumulative(VLLM, {1.0: 460, 2.5: 470}, 470)
    [(p99, low, high)] = histogram_quantile_buckets((0.99,), VLLM, cum)
    assert p99 == pytest.approx(1.0 + 1.5 * (0.99 * 470 - 460) / 10)
    assert (low, high) == (1.0, 2.5)
    assert verdict(p99, low, 2.0) is Verdict.MET
    assert attainment_verdict(2.0, 0.99, VLLM, cum) is Verdict.AMBIGUOUS


def test_counts_not_monotone_use_the_running_maximum() -> None:
    """Rates of cumulative counters can dip a hair (scraped apart); like
    ``histogram_quantile``, the running maximum is read: 460, 459.99 -> 460, 460."""
    cum = cumulative(TRITON, {0.5: 460, 2.0: 459.99, 5.0: 470}, 470)  # type: ignore[dict-item]
    assert attainment_bounds(2.0, TRITON, cum) == (460 / 470, 460 / 470)


def test_bad_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="one count per bound"):
        attainment_bounds(2.0, TRITON, [1.0, 2.0])
    with pytest.raises(ValueError, match="one count per bound"):
        attainment_verdict(2.0, 0.99, TRITON, [1.0, 2.0])


# -- invariants -------------------------------------------------------------------------------

samples_st = st.lists(st.floats(min_value=0.0, max_value=30.0, allow_nan=False), min_size=1,
                      max_size=400)
objective_st = st.floats(min_value=0.001, max_value=30.0, allow_nan=False)
bounds_st = st.sampled_from([VLLM, TRITON, [0.5, 1.0, 1.5, 2.0, 3.0]])


def bucketed(bounds: list[float], samples: list[float]) -> list[float]:
    """Cumulative counts the slow way: each sample counted at every bound at or above it
    (Prometheus' ``le``), then the +Inf count."""
    return [float(sum(1 for x in samples if x <= b)) for b in bounds] + [float(len(samples))]


@settings(max_examples=300, deadline=None)
@given(samples=samples_st, objective=objective_st, bounds=bounds_st)
def test_bounds_bracket_the_true_share(samples: list[float], objective: float,
                                       bounds: list[float]) -> None:
    lo, hi = attainment_bounds(objective, bounds, bucketed(bounds, samples))
    true = sum(1 for x in samples if x <= objective) / len(samples)
    assert 0.0 <= lo <= true <= hi <= 1.0


@settings(max_examples=300, deadline=None)
@given(samples=samples_st, objective=objective_st, bounds=bounds_st,
       target=st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_verdict_is_a_proof_about_the_samples(samples: list[float], objective: float,
                                              bounds: list[float], target: float) -> None:
    """MET: the samples met the target; BREACH: they missed it (on the same rank
    arithmetic as ``histogram_quantile``: ceil-free, count >= target x n)."""
    v = attainment_verdict(objective, target, bounds, bucketed(bounds, samples))
    met = sum(1 for x in samples if x <= objective)
    if v is Verdict.MET:
        assert met >= target * len(samples)
    if v is Verdict.BREACH:
        assert met < target * len(samples)


@settings(max_examples=300, deadline=None)
@given(samples=samples_st, objective=objective_st, bounds=bounds_st,
       target=st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_never_contradicts_the_quantile_verdict(samples: list[float], objective: float,
                                                bounds: list[float], target: float) -> None:
    """At target q the buckets' proof and the q-quantile's bucket agree: a certain breach
    is one for both, an ambiguous quantile is ambiguous here, a proven target reads met.
    (The quantile alone is more optimistic: a reading interpolated at or below the
    objective inside the objective's bucket is met for ``verdict``, ambiguous here.)"""
    cum = bucketed(bounds, samples)
    [(value, low, _)] = histogram_quantile_buckets((target,), bounds, cum)
    q = verdict(value, low, objective)
    a = attainment_verdict(objective, target, bounds, cum)
    assert (q is Verdict.BREACH) == (a is Verdict.BREACH)
    if q is Verdict.AMBIGUOUS:
        assert a is Verdict.AMBIGUOUS
    if a is Verdict.MET:
        assert q is Verdict.MET


@settings(max_examples=200, deadline=None)
@given(samples=samples_st, a=objective_st, b=objective_st, bounds=bounds_st)
def test_bounds_grow_with_the_objective(samples: list[float], a: float, b: float,
                                        bounds: list[float]) -> None:
    lo_obj, hi_obj = sorted((a, b))
    cum = bucketed(bounds, samples)
    l1, u1 = attainment_bounds(lo_obj, bounds, cum)
    l2, u2 = attainment_bounds(hi_obj, bounds, cum)
    assert l1 <= l2 and u1 <= u2
    # Within one bucket the bounds do not move: the buckets cannot tell two objectives
    # strictly inside the same bucket apart.
    i, j = bisect_left(bounds, lo_obj), bisect_left(bounds, hi_obj)
    if i == j and (i == len(bounds) or (bounds[i] not in (lo_obj, hi_obj))):
        assert (l1, u1) == (l2, u2)
