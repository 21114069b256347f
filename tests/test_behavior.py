"""HPA behaviour: stabilisation windows, rate-limit policies, bounds (``core.behavior``).

Each case names the upstream semantics it traces to (kubernetes/kubernetes,
pkg/controller/podautoscaler/horizontal.go and horizontal_test.go). Expected numbers are
derived by hand in the ids/comments, never read back from the code.
"""

from __future__ import annotations

import pytest

from autoscaler.core.behavior import (
    apply_behavior,
    replicas_changed_in_period,
    scale_down_limit,
    scale_up_limit,
    store_scale_event,
)
from autoscaler.core.spec import (
    Behavior,
    Capacity,
    PolicyKind,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
    Spec,
    default_scale_down_rules,
    default_scale_up_rules,
)
from autoscaler.core.types import Reason, State

NOW = 10_000.0
PODS, PCT = ScalingPolicyType.PODS, ScalingPolicyType.PERCENT


def rules(*policies: tuple[ScalingPolicyType, int, int], window: int = 0,
          select: SelectPolicy = SelectPolicy.MAX) -> ScalingRules:
    return ScalingRules(window, tuple(ScalingPolicy(t, v, p) for t, v, p in policies), select)


def spec(behavior: Behavior | None = None, *, min_r: int = 1, max_r: int = 100) -> Spec:
    return Spec(max_replicas=max_r, min_replicas=min_r, capacity=Capacity(1.0, 1.0),
                policy=PolicyKind.STATIC, behavior=behavior)


DEFAULT = Behavior()
LEGACY = None


# --- stabilisation ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("behavior", "history", "current", "rec", "expected", "reason"),
    [
        pytest.param(DEFAULT, ((NOW - 100, 10),), 10, 4, 10, Reason.SCALE_DOWN_STABILIZED,
                     id="stabilizeRecommendationWithBehaviors: max over 300 s down window "
                        "holds 10"),
        pytest.param(DEFAULT, ((NOW - 300, 10),), 10, 4, 4, None,
                     id="down window is strict After(cutoff): a sample exactly 300 s old "
                        "no longer counts"),
        pytest.param(DEFAULT, ((NOW - 299.5, 10),), 10, 4, 10, Reason.SCALE_DOWN_STABILIZED,
                     id="a sample 299.5 s old still counts"),
        pytest.param(Behavior(scale_up=rules((PODS, 100, 15), window=60)),
                     ((NOW - 30, 3),), 3, 8, 3, Reason.SCALE_UP_STABILIZED,
                     id="scale-up window: min over 60 s holds at the earlier 3"),
        pytest.param(Behavior(scale_up=rules((PODS, 100, 15), window=60),
                              scale_down=rules((PCT, 100, 15), window=0)),
                     ((NOW - 30, 6),), 5, 8, 6, Reason.SCALE_UP_STABILIZED,
                     id="current clamped into [up=min(8,6)=6, down=8]: 6, not 8"),
        pytest.param(Behavior(scale_up=rules((PODS, 100, 15), window=60)),
                     ((NOW - 60, 3),), 3, 8, 8, None,
                     id="up window boundary: a sample exactly 60 s old no longer counts"),
        pytest.param(LEGACY, ((NOW - 300, 10),), 10, 4, 10, Reason.SCALE_DOWN_STABILIZED,
                     id="legacy stabilizeRecommendation: not Before(cutoff), so a sample "
                        "exactly 300 s old still counts"),
        pytest.param(LEGACY, ((NOW - 300.5, 10),), 10, 4, 4, None,
                     id="legacy: a sample 300.5 s old is out"),
    ],
)
def test_stabilization_windows(behavior: Behavior | None, history: tuple[tuple[float, int], ...],
                               current: int, rec: int, expected: int,
                               reason: Reason | None) -> None:
    out = apply_behavior(rec, current=current, state=State(recommendations=history),
                         spec=spec(behavior), now=NOW)
    assert out.replicas == expected
    assert out.reason == reason


def test_the_unstabilized_recommendation_is_recorded_not_the_result() -> None:
    out = apply_behavior(4, current=10, state=State(recommendations=((NOW - 100, 10),)),
                         spec=spec(DEFAULT), now=NOW)
    assert (NOW, 4) in out.state.recommendations
    assert out.replicas == 10


def test_a_fresh_start_seeds_the_history_and_holds_a_scale_down() -> None:
    # recordInitialRecommendation: the current 10 is remembered at now, so the 300 s down
    # window holds 10 even though the first recommendation is 2.
    out = apply_behavior(2, current=10, state=State(), spec=spec(DEFAULT), now=NOW)
    assert out.replicas == 10
    assert out.reason == Reason.SCALE_DOWN_STABILIZED
    assert out.state.recommendations == ((NOW, 10), (NOW, 2))


def test_an_old_sample_is_replaced_rather_than_the_list_growing() -> None:
    # Samples older than both windows: the last one is overwritten by the new sample.
    history = ((NOW - 1000, 7), (NOW - 900, 8), (NOW - 10, 9))
    out = apply_behavior(9, current=9, state=State(recommendations=history),
                         spec=spec(DEFAULT), now=NOW)
    assert out.state.recommendations == ((NOW - 1000, 7), (NOW, 9), (NOW - 10, 9))


# --- rate limits -----------------------------------------------------------------------

UP_CASES = [
    # (rules, current, up events, down events, expected limit)
    pytest.param(rules((PCT, 50, 60)), 3, (), (), 5,
                 id="Percent up rounds up: ceil(3 x 1.5) = ceil(4.5) = 5"),
    pytest.param(rules((PCT, 10, 60)), 1, (), (), 2,
                 id="Percent up lets 1 replica grow: ceil(1 x 1.1) = 2"),
    pytest.param(rules((PODS, 2, 60)), 3, (), (), 5, id="Pods up: 3 + 2 = 5"),
    pytest.param(default_scale_up_rules(), 5, (), (), 10,
                 id="default up: max(5 + 4, 5 x 2) = 10"),
    pytest.param(default_scale_up_rules(), 1, (), (), 5,
                 id="default up from 1: max(1 + 4, 1 x 2) = 5"),
    pytest.param(rules((PODS, 4, 15), (PCT, 100, 15), select=SelectPolicy.MIN), 5, (), (), 9,
                 id="selectPolicy Min up: min(5 + 4, 10) = 9"),
    pytest.param(rules((PODS, 4, 15), select=SelectPolicy.DISABLED), 5, (), (), 5,
                 id="selectPolicy Disabled up: current"),
    pytest.param(rules((PODS, 4, 15)), 8, ((NOW - 10, 4),), (), 8,
                 id="getReplicasChangePerPeriod: 4 added 10 s ago, start 4, limit 8"),
    pytest.param(rules((PODS, 4, 15)), 8, ((NOW - 15, 4),), (), 12,
                 id="an event exactly one period old is out (After(cutoff)): limit 12"),
    pytest.param(rules((PODS, 4, 15)), 6, (), ((NOW - 5, 2),), 12,
                 id="a recent scale-down raises the period start: 6 + 2 = 8, limit 12"),
    pytest.param(rules((PCT, 100, 60), (PODS, 1, 15)), 8, ((NOW - 30, 4),), (), 9,
                 id="per-policy periods: Percent start 4 -> 8, Pods start 8 -> 9: max 9"),
]


@pytest.mark.parametrize(("r", "current", "ups", "downs", "expected"), UP_CASES)
def test_scale_up_limit(r: ScalingRules, current: int, ups: tuple[tuple[float, int], ...],
                        downs: tuple[tuple[float, int], ...], expected: int) -> None:
    state = State(scale_up_events=ups, scale_down_events=downs)
    assert scale_up_limit(current, state, r, NOW) == expected


DOWN_CASES = [
    pytest.param(rules((PCT, 50, 60)), 3, (), (), 1,
                 id="Percent down truncates: int(3 x 0.5) = int(1.5) = 1"),
    pytest.param(rules((PCT, 10, 60)), 15, (), (), 13,
                 id="Percent down: int(15 x 0.9) = int(13.5) = 13"),
    pytest.param(default_scale_down_rules(), 10, (), (), 0, id="default down: 100% -> 0"),
    pytest.param(rules((PODS, 1, 60), (PCT, 50, 60)), 10, (), (), 5,
                 id="selectPolicy Max down: the lowest, min(9, 5) = 5"),
    pytest.param(rules((PODS, 1, 60), (PCT, 50, 60), select=SelectPolicy.MIN), 10, (), (), 9,
                 id="selectPolicy Min down: the highest, max(9, 5) = 9"),
    pytest.param(rules((PODS, 1, 60), select=SelectPolicy.DISABLED), 10, (), (), 10,
                 id="selectPolicy Disabled down: current"),
    pytest.param(rules((PODS, 2, 60)), 8, (), ((NOW - 30, 2),), 8,
                 id="2 removed 30 s ago: start 10, limit 8"),
    pytest.param(rules((PODS, 2, 60)), 8, (), ((NOW - 60, 2),), 6,
                 id="removed exactly 60 s ago: out, limit 6"),
    pytest.param(rules((PODS, 1, 600)), 12, ((NOW - 100, 10),), (), 1,
                 id="a scale-up inside the down period lowers its start: 12 - 10 = 2, -> 1"),
]


@pytest.mark.parametrize(("r", "current", "ups", "downs", "expected"), DOWN_CASES)
def test_scale_down_limit(r: ScalingRules, current: int, ups: tuple[tuple[float, int], ...],
                          downs: tuple[tuple[float, int], ...], expected: int) -> None:
    state = State(scale_up_events=ups, scale_down_events=downs)
    assert scale_down_limit(current, state, r, NOW) == expected


def test_replicas_changed_in_period_excludes_the_boundary() -> None:
    events = ((NOW - 15.0, 1), (NOW - 14.999, 2), (NOW, 4))
    assert replicas_changed_in_period(events, 15, NOW) == 6


# --- convertDesiredReplicasWithBehaviorRate / convertDesiredReplicasWithRules ------------

@pytest.mark.parametrize(
    ("behavior", "min_r", "max_r", "current", "rec", "expected", "reason"),
    [
        pytest.param(DEFAULT, 1, 100, 5, 20, 10, Reason.SCALE_UP_LIMIT,
                     id="behaviour: default up limit 10 < maxReplicas: ScaleUpLimit"),
        pytest.param(DEFAULT, 1, 8, 5, 20, 8, Reason.TOO_MANY_REPLICAS,
                     id="behaviour: maxReplicas 8 below the rate limit 10: TooManyReplicas"),
        pytest.param(Behavior(scale_down=rules((PCT, 100, 15))), 2, 100, 5, 0, 2,
                     Reason.TOO_FEW_REPLICAS,
                     id="behaviour: rate allows 0, minReplicas 2: TooFewReplicas"),
        pytest.param(Behavior(scale_down=rules((PODS, 1, 15))), 1, 100, 5, 2, 4,
                     Reason.SCALE_DOWN_LIMIT,
                     id="behaviour: Pods 1 down: 5 -> 4, ScaleDownLimit"),
        pytest.param(Behavior(scale_up=rules((PODS, 4, 15), select=SelectPolicy.DISABLED)),
                     1, 100, 5, 20, 5, Reason.SCALE_UP_LIMIT,
                     id="behaviour: scale-up Disabled holds 5"),
        pytest.param(DEFAULT, 1, 100, 5, 7, 7, None, id="behaviour: within range"),
        pytest.param(LEGACY, 1, 100, 3, 20, 6, Reason.SCALE_UP_LIMIT,
                     id="legacy calculateScaleUpLimit: max(2 x 3, 4) = 6"),
        pytest.param(LEGACY, 1, 100, 1, 20, 4, Reason.SCALE_UP_LIMIT,
                     id="legacy from 1: max(2, 4) = 4"),
        pytest.param(LEGACY, 1, 5, 3, 20, 5, Reason.TOO_MANY_REPLICAS,
                     id="legacy: maxReplicas 5 below 6: TooManyReplicas"),
        pytest.param(LEGACY, 3, 100, 5, 1, 3, Reason.TOO_FEW_REPLICAS,
                     id="legacy: below minReplicas: TooFewReplicas"),
        pytest.param(LEGACY, 1, 100, 5, 2, 2, None,
                     id="legacy: scale-down not rate-limited (empty history)"),
    ],
)
def test_rate_limits_and_bounds(behavior: Behavior | None, min_r: int, max_r: int,
                                current: int, rec: int, expected: int,
                                reason: Reason | None) -> None:
    # Stabilisation windows are made irrelevant by a history that holds only ``rec``.
    state = State(recommendations=((NOW - 1, rec),))
    if behavior is not None:
        behavior = Behavior(
            scale_up=ScalingRules(0, behavior.scale_up.policies, behavior.scale_up.select_policy),
            scale_down=ScalingRules(0, behavior.scale_down.policies,
                                    behavior.scale_down.select_policy))
        state = State(recommendations=((NOW - 1, current),))
    out = apply_behavior(rec, current=current, state=state,
                         spec=spec(behavior, min_r=min_r, max_r=max_r), now=NOW)
    assert out.replicas == expected
    assert out.reason == reason


# --- storeScaleEvent -------------------------------------------------------------------

def test_scale_events_are_stored_only_with_behavior() -> None:
    legacy = apply_behavior(8, current=5, state=State(), spec=spec(LEGACY), now=NOW)
    assert legacy.replicas == 8
    assert legacy.state.scale_up_events == ()
    with_b = apply_behavior(8, current=5, state=State(), spec=spec(DEFAULT), now=NOW)
    assert with_b.state.scale_up_events == ((NOW, 3),)


def test_store_scale_event_replaces_the_last_outdated_event_like_upstream() -> None:
    # Scale-up policies of 15 s. Events at t = 0 and t = 15 (+4 each): at t = 15 the
    # first is exactly 15 s old, not older, so it is kept and the second appended. At
    # t = 60 both are older than 45 s; only the later in the list is replaced.
    b = Behavior(scale_down=rules((PODS, 1, 600), window=0))
    s = store_scale_event(State(), b, 2, 6, 0.0)
    s = store_scale_event(s, b, 6, 10, 15.0)
    assert s.scale_up_events == ((0.0, 4), (15.0, 4))
    s = store_scale_event(s, b, 10, 12, 60.0)
    assert s.scale_up_events == ((0.0, 4), (60.0, 2))
    # The consequence upstream has: at t = 100 the 600 s scale-down policy sees only
    # 4 + 2 = 6 replicas added (not 10), so its period start is 12 - 6 = 6 and it allows
    # down to 5.
    assert scale_down_limit(12, s, b.scale_down, 100.0) == 5


def test_no_event_is_stored_when_nothing_changes() -> None:
    assert store_scale_event(State(), DEFAULT, 5, 5, NOW) == State()
    assert store_scale_event(State(), None, 5, 9, NOW) == State()
