"""The capacity the fleet has shown is held against the release plan's mean, the forecast
margin against the estimate (``release.release_replicas``).

A shown capacity is a load the fleet carried (carried / 0.7225): a mean it served. Held
against the plan with its forecast margin, a release to n replicas needed the fleet to have
carried the mean plus the margin per replica, which the n + 1 it keeps never had to show:
NASA x20 (14 d) cost 796 GPU-h before the rule and 841 with it.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import capacity as cap_mod
from autoscaler.core import release

NAN = math.nan
# Release utilisation at the defaults: targetUtilization 0.85 x scaleDownBand 0.85.
DOWN = 0.85 * 0.85  # 0.7225


def learned(capacity: tuple[float, float, float],
            measured: tuple[bool, bool, bool]) -> cap_mod.LearnedCapacity:
    return cap_mod.LearnedCapacity(capacity=capacity, prior=capacity, measured=measured)


# One requests/s unit (the token units have no estimate): estimate 20 req/s per replica,
# anchor 12, carried 10, so shown = min(20, max(12, 10 / 0.7225 = 13.84)) = 13.84, which
# carries 13.84 x 0.7225 = 10 req/s per replica at the release band.
REQ_ONLY = learned((NAN, NAN, 20.0), (False, False, True))
REQ_MEM = release.ReleaseMemory((NAN, NAN, 12.0), (NAN, NAN, 10.0))


@pytest.mark.parametrize(("planned", "mean", "expected", "whole_plan"), [
    # The docstring's worked number: the estimate needs ceil(35 / 14.45) = ceil(2.42) = 3,
    # the shown capacity at the mean ceil(24 / 10) = ceil(2.4) = 3; the whole plan on the
    # shown capacity kept ceil(35 / 10) = ceil(3.5) = 4.
    pytest.param(35.0, 24.0, 3, 4, id="margin on the estimate, mean on the shown: 3 not 4"),
    # A mean above what was carried still holds: ceil(29 / 10) = ceil(2.9) = 3 against the
    # estimate's ceil(30 / 14.45) = ceil(2.08) = 3; at 31 ceil(3.1) = 4.
    pytest.param(30.0, 29.0, 3, 3, id="mean 29 carried on 3"),
    pytest.param(32.0, 31.0, 4, 4, id="mean 31 not carried on 3: 4"),
    # The margin alone still binds on the estimate: ceil(60 / 14.45) = ceil(4.15) = 5
    # where the mean needs ceil(20 / 10) = 2.
    pytest.param(60.0, 20.0, 5, 6, id="a wide margin binds on the estimate"),
    # No mean known (None, NaN): the whole plan on the shown capacity, as before.
    pytest.param(35.0, None, 4, 4, id="no mean: the whole plan"),
    pytest.param(35.0, NAN, 4, 4, id="NaN mean: the whole plan"),
    # A mean above the plan counts as the plan: ceil(35 / 10) = 4.
    pytest.param(35.0, 50.0, 4, 4, id="a mean above the plan is the plan"),
])
def test_release_replicas_worked_numbers(planned: float, mean: float | None, expected: int,
                                         whole_plan: int) -> None:
    got = release.release_replicas(REQ_ONLY, REQ_MEM, (None, None, planned),
                                   (None, None, mean), DOWN)
    assert got == expected
    old, _ = cap_mod.replicas_needed(release.release_estimate(REQ_ONLY, REQ_MEM, DOWN),
                                     (None, None, planned), DOWN)
    assert old == whole_plan


def test_the_decode_unit_without_evidence_is_still_held_at_its_mean() -> None:
    # Heavy-to-light seed 3 at 8,955 s (``tests/test_predictive_release_units.py``): 14.3
    # req/s of 169 generated tokens = 2,416.7 tok/s is both the demand now and the plan's
    # mean (the plan is never below the demand now). The decode unit, planned on
    # min(2,541.5, max(1,249.6, 1,637.0 / 0.7225 = 2,265.7)) = 2,265.7, needs
    # ceil(2,416.7 / 1,637.0) = ceil(1.48) = 2 even with no margin at all.
    est = learned((NAN, 2_541.5, 28.5), (False, False, True))
    mem = release.ReleaseMemory((NAN, 1_249.6, 28.5), (NAN, 1_637.0, NAN))
    gen = 14.3 * 169.0
    assert release.release_replicas(est, mem, (None, gen * 1.3, 14.3 * 1.3),
                                    (None, gen, 14.3), DOWN) == 2


def test_a_unit_without_evidence_keeps_its_whole_plan() -> None:
    # Azure code x5 at 555 s (decision log): the generated-token unit has no evidence, its
    # anchor 181.1 tok/s per replica binds (carried 74.0, 74.0 / 0.7225 = 102.4 below it).
    # The plan 672.7 tok/s with its margin, mean 505.6: the margin is planned nowhere else
    # (the estimate's plan skips the unit), so ceil(672.7 / (181.1 x 0.7225)) =
    # ceil(5.14) = 6, not the mean's ceil(505.6 / 130.9) = ceil(3.86) = 4. The requests/s
    # unit (evidence, estimate 6.94, anchor 6.94, carried 2.07) asks
    # ceil(22.3 / (6.94 x 0.7225)) = ceil(4.45) = 5.
    est = learned((15_693.2, 189.2, 6.94), (False, False, True))
    mem = release.ReleaseMemory((15_698.4, 181.1, 6.94), (4_539.6, 74.0, 2.07))
    assert release.release_replicas(est, mem, (51_825.4, 672.7, 22.3),
                                    (34_344.0, 505.6, 15.6), DOWN) == 6


def test_switched_off_it_is_the_whole_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(release, "RELEASE_SHOWN_AT_MEAN", False)
    assert release.release_replicas(REQ_ONLY, REQ_MEM, (None, None, 35.0),
                                    (None, None, 24.0), DOWN) == 4


finite = st.floats(min_value=0.1, max_value=1e4, allow_nan=False)
maybe = st.one_of(st.just(NAN), finite)


@settings(max_examples=300, deadline=None)
@given(cap=st.tuples(maybe, maybe, finite), measured=st.tuples(st.booleans(), st.booleans()),
       anchor=st.tuples(maybe, maybe, maybe), carried=st.tuples(maybe, maybe, maybe),
       plan=st.tuples(finite, finite, finite),
       share=st.tuples(*(st.floats(min_value=0.0, max_value=1.0),) * 3))
def test_between_the_estimate_and_the_whole_plan(
        cap: tuple[float, float, float], measured: tuple[bool, bool],
        anchor: tuple[float, float, float], carried: tuple[float, float, float],
        plan: tuple[float, float, float], share: tuple[float, float, float]) -> None:
    # Never fewer than the plan needs on the estimate (the margin is still covered), never
    # more than the whole plan on the shown capacity (the rule before), and the whole plan
    # again when the mean is the plan.
    est = learned(cap, (*measured, True))
    mem = release.ReleaseMemory(anchor, carried)
    mean = tuple(p * s for p, s in zip(plan, share, strict=True))
    got = release.release_replicas(est, mem, plan, mean, DOWN)
    on_est, _ = cap_mod.replicas_needed(est, plan, DOWN)
    whole, _ = cap_mod.replicas_needed(release.release_estimate(est, mem, DOWN), plan, DOWN)
    assert on_est <= got <= whole
    assert release.release_replicas(est, mem, plan, plan, DOWN) == max(on_est, whole)
