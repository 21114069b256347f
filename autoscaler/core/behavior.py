"""HPA-style behaviour: stabilisation windows, rate limits and replica bounds.

This follows the semantics kube-controller-manager applies in autoscaling/v2
(``pkg/controller/podautoscaler/horizontal.go``), re-expressed as pure functions of explicit
state. Time is the caller's ``now`` (seconds); nothing here reads a clock.

With ``behavior`` set (``normalizeDesiredReplicasWithBehaviors``):

1. Stabilise: ``up`` is the *lowest* of the new recommendation and the recommendations
   strictly newer than ``now - scaleUp.stabilizationWindowSeconds``; ``down`` is the
   *highest* of the new one and those strictly newer than ``now - scaleDown.window``. The
   current count is then clamped into ``[up, down]``. Worked example: current 5, new
   recommendation 8, an earlier one of 6 inside a 60 s up window: up = min(8, 6) = 6,
   down = 8, so the stabilised count is clamp(5, 6, 8) = 6.
2. Rate-limit with the Pods/Percent policies over their periods, each policy starting
   from the count at the start of its period (current minus the replicas added plus the
   replicas removed by events strictly newer than ``now - periodSeconds``).
3. Bound by min/max. Scale events are remembered only on this path.

Without ``behavior`` (``normalizeDesiredReplicas``, the legacy path): the highest
recommendation at or after ``now - 300 s`` (note: *not* strictly after), then at most
``max(2 x current, 4)``, then min/max. No scale events are kept.

A target seen for the first time seeds the recommendation history with its current count
(``recordInitialRecommendation``), so a freshly started autoscaler does not scale down
before one scale-down window has passed.

Worked Percent rounding: with 3 replicas at the start of the period, a scale-up Percent
policy of 50 allows ceil(3 x 1.5) = ceil(4.5) = 5 replicas (rounded *up*, so that a small
count can still grow: 1 replica at 10% still gets ceil(1.1) = 2); a scale-down Percent
policy of 50 allows int(3 x 0.5) = int(1.5) = 1 replica (truncated toward zero, which lets
the count fall *further*).

History is kept the way upstream keeps it, because what is kept changes the answers:

* A new recommendation *replaces* the last sample older than both windows, else it is
  appended. Samples never count once outside their window, so this only bounds the list.
* A new scale event *replaces* the last event of its direction older than that direction's
  longest policy period, else it is appended. Events of one direction are also read with
  the *other* direction's periods (a scale-up inside a scale-down period lowers that
  period's starting count), so when the other direction has a longer period, an event that
  upstream has overwritten no longer counts there. We reproduce that exactly rather than
  keep a complete log (see ``store_scale_event``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from autoscaler.core import defaults as d
from autoscaler.core.spec import (
    Behavior,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
    Spec,
)
from autoscaler.core.types import Reason, State

_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)

Events = tuple[tuple[float, int], ...]

_MSG_WITHIN = "the desired count is within the acceptable range"
_MSG_UP_LIMIT = "the desired replica count is increasing faster than the maximum scale rate"
_MSG_DOWN_LIMIT = "the desired replica count is decreasing faster than the maximum scale rate"
_MSG_TOO_MANY = "the desired replica count is more than the maximum replica count"
_MSG_TOO_FEW = "the desired replica count is less than the minimum replica count"
_MSG_UP_STABILIZED = ("recent recommendations were lower than current one, "
                      "applying the lowest recent recommendation")
_MSG_DOWN_STABILIZED = ("recent recommendations were higher than current one, "
                        "applying the highest recent recommendation")


@dataclass(frozen=True, slots=True)
class BehaviorOutcome:
    """Result of applying behaviour to one raw recommendation."""

    replicas: int
    reason: Reason | None
    """Why the result differs from the raw recommendation (None: it does not)."""
    message: str
    state: State
    stabilized: int
    """The recommendation after stabilisation, before rate limits and bounds."""


def replicas_changed_in_period(events: Events, period_s: float, now: float) -> int:
    """Replicas added (or removed) by events strictly newer than ``now - period_s``.

    An event exactly ``period_s`` old no longer counts: with a 15 s period, a scale-up at
    t = 0 limits the decision at t = 14.9 but not the one at t = 15.
    """
    cutoff = now - period_s
    return sum(change for t, change in events if t > cutoff)


def _period_start(current: int, state: State, period_s: int, now: float) -> int:
    added = replicas_changed_in_period(state.scale_up_events, period_s, now)
    removed = replicas_changed_in_period(state.scale_down_events, period_s, now)
    return current - added + removed


def scale_up_limit(current: int, state: State, rules: ScalingRules, now: float) -> int:
    """Highest replica count the scale-up policies allow now. Depends on nothing else.

    ``Max`` takes the most permissive policy, ``Min`` the strictest, ``Disabled`` allows
    no change. The result may be below ``current`` (the caller then holds at current).
    """
    if rules.select_policy == SelectPolicy.DISABLED:
        return current
    pick: Callable[[int, int], int]
    if rules.select_policy == SelectPolicy.MIN:
        result, pick = _INT32_MAX, min
    else:
        result, pick = _INT32_MIN, max
    for policy in rules.policies:
        start = _period_start(current, state, policy.period_seconds, now)
        if policy.type == ScalingPolicyType.PODS:
            proposed = start + policy.value
        else:
            proposed = math.ceil(start * (1 + policy.value / 100))
        result = pick(result, proposed)
    return result


def scale_down_limit(current: int, state: State, rules: ScalingRules, now: float) -> int:
    """Lowest replica count the scale-down policies allow now. Depends on nothing else.

    ``Max`` selects the policy allowing the biggest change, i.e. the *lowest* count;
    ``Min`` the smallest change, i.e. the highest count.
    """
    if rules.select_policy == SelectPolicy.DISABLED:
        return current
    pick: Callable[[int, int], int]
    if rules.select_policy == SelectPolicy.MIN:
        result, pick = _INT32_MIN, max
    else:
        result, pick = _INT32_MAX, min
    for policy in rules.policies:
        start = _period_start(current, state, policy.period_seconds, now)
        if policy.type == ScalingPolicyType.PODS:
            proposed = start - policy.value
        else:
            # int() truncates toward zero like Go's int32(float64) conversion.
            proposed = int(start * (1 - policy.value / 100))
        result = pick(result, proposed)
    return result


def record_initial_recommendation(state: State, current: int, now: float) -> State:
    """First sight of a target: remember its current count as a recommendation.

    Upstream does this at the start of every reconciliation, before reading metrics, so a
    target whose metrics are missing at start-up is seeded too.
    """
    if state.recommendations:
        return state
    return replace(state, recommendations=((now, current),))


def _store_sample(samples: Events, is_old: Callable[[float], bool], sample: tuple[float, int]
                  ) -> Events:
    """Replace the last sample for which ``is_old`` holds, else append."""
    for i in range(len(samples) - 1, -1, -1):
        if is_old(samples[i][0]):
            return (*samples[:i], sample, *samples[i + 1:])
    return (*samples, sample)


def _longest_period(rules: ScalingRules) -> int:
    return max((p.period_seconds for p in rules.policies), default=0)


def store_scale_event(
    state: State, behavior: Behavior | None, previous: int, new: int, now: float
) -> State:
    """Remember a rescale from ``previous`` to ``new`` replicas (``storeScaleEvent``).

    Nothing is stored without ``behavior`` (the legacy path never reads events) or when the
    count did not change. The event replaces the last one of its direction that is older
    than that direction's longest policy period (strictly: ``t < now - longest``), else it
    is appended. Worked example, scale-up policies of 15 s: events at t = 0 and t = 15
    (+4 each) and a new one at t = 60: both old ones are older than 45 s, only the later in
    the list (t = 15) is replaced, so t = 0 survives and still counts for a scale-down
    policy with a 600 s period.
    """
    if behavior is None or new == previous:
        return state
    if new > previous:
        cutoff = now - _longest_period(behavior.scale_up)
        ups = _store_sample(state.scale_up_events, lambda t: t < cutoff, (now, new - previous))
        return replace(state, scale_up_events=ups)
    cutoff = now - _longest_period(behavior.scale_down)
    downs = _store_sample(state.scale_down_events, lambda t: t < cutoff, (now, previous - new))
    return replace(state, scale_down_events=downs)


def _stabilize_with_behavior(
    desired: int, current: int, state: State, behavior: Behavior, now: float
) -> tuple[int, State]:
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    up_rec = desired
    down_rec = desired
    for t, rec in state.recommendations:
        if t > up_cutoff:
            up_rec = min(up_rec, rec)
        if t > down_cutoff:
            down_rec = max(down_rec, rec)
    # Clamp current into [up_rec, down_rec]; up_rec <= desired <= down_rec always.
    stabilized = min(max(current, up_rec), down_rec)
    recs = _store_sample(state.recommendations,
                         lambda t: t < up_cutoff and t < down_cutoff, (now, desired))
    return stabilized, replace(state, recommendations=recs)


def _stabilize_legacy(desired: int, state: State, window_s: float, now: float
                      ) -> tuple[int, State]:
    # The legacy path counts samples at or after the cutoff (upstream: not Before(cutoff)).
    cutoff = now - window_s
    highest = desired
    for t, rec in state.recommendations:
        if t >= cutoff:
            highest = max(highest, rec)
    recs = _store_sample(state.recommendations, lambda t: t < cutoff, (now, desired))
    return highest, replace(state, recommendations=recs)


def _limit_with_behavior(
    desired: int, current: int, state: State, spec: Spec, behavior: Behavior, now: float
) -> tuple[int, Reason, str]:
    if desired > current:
        # A limit below current (replicas still being counted from a recent burst) holds.
        limit = max(scale_up_limit(current, state, behavior.scale_up, now), current)
        if spec.max_replicas > limit:
            allowed, reason, msg = limit, Reason.SCALE_UP_LIMIT, _MSG_UP_LIMIT
        else:
            allowed, reason, msg = spec.max_replicas, Reason.TOO_MANY_REPLICAS, _MSG_TOO_MANY
        if desired > allowed:
            return allowed, reason, msg
    elif desired < current:
        limit = min(scale_down_limit(current, state, behavior.scale_down, now), current)
        if spec.min_replicas < limit:
            allowed, reason, msg = limit, Reason.SCALE_DOWN_LIMIT, _MSG_DOWN_LIMIT
        else:
            allowed, reason, msg = spec.min_replicas, Reason.TOO_FEW_REPLICAS, _MSG_TOO_FEW
        if desired < allowed:
            return allowed, reason, msg
    return desired, Reason.DESIRED_WITHIN_RANGE, _MSG_WITHIN


def legacy_scale_up_limit(current: int) -> int:
    """Legacy path: at most ``max(2 x current, 4)`` in one step.

    From 3 replicas that is max(6, 4) = 6; from 1 replica still max(2, 4) = 4.
    """
    return int(max(d.HPA_SCALE_UP_LIMIT_FACTOR * current, d.HPA_SCALE_UP_LIMIT_MINIMUM))


def _limit_legacy(desired: int, current: int, spec: Spec) -> tuple[int, Reason, str]:
    up_limit = legacy_scale_up_limit(current)
    if spec.max_replicas > up_limit:
        maximum, max_reason, max_msg = up_limit, Reason.SCALE_UP_LIMIT, _MSG_UP_LIMIT
    else:
        maximum, max_reason, max_msg = spec.max_replicas, Reason.TOO_MANY_REPLICAS, _MSG_TOO_MANY
    if desired < spec.min_replicas:
        return spec.min_replicas, Reason.TOO_FEW_REPLICAS, _MSG_TOO_FEW
    if desired > maximum:
        return maximum, max_reason, max_msg
    return desired, Reason.DESIRED_WITHIN_RANGE, _MSG_WITHIN


def apply_behavior(
    recommendation: int, *, current: int, state: State, spec: Spec, now: float
) -> BehaviorOutcome:
    """Turn a raw recommendation into the replica count to ask for, as the HPA would.

    ``current`` is the scale target's current ``spec.replicas``, assumed already within
    [minReplicas, maxReplicas] (the HPA's pre-checks handle a count outside them; see the
    ``hpa`` policy). The returned state has the recommendation recorded and, when the count
    changes and ``behavior`` is set, the scale event.

    The reason is the rate-limit/bound reason when that changed the stabilised count, else
    the stabilisation reason when that changed the recommendation, else None.
    """
    state = record_initial_recommendation(state, current, now)
    behavior = spec.behavior
    if behavior is None:
        stabilized, state = _stabilize_legacy(
            recommendation, state, d.HPA_DOWNSCALE_STABILIZATION_S, now)
        stab_reason, stab_msg = Reason.SCALE_DOWN_STABILIZED, _MSG_DOWN_STABILIZED
        final, limit_reason, limit_msg = _limit_legacy(stabilized, current, spec)
    else:
        stabilized, state = _stabilize_with_behavior(recommendation, current, state, behavior,
                                                     now)
        if recommendation >= current:
            stab_reason, stab_msg = Reason.SCALE_UP_STABILIZED, _MSG_UP_STABILIZED
        else:
            stab_reason, stab_msg = Reason.SCALE_DOWN_STABILIZED, _MSG_DOWN_STABILIZED
        final, limit_reason, limit_msg = _limit_with_behavior(
            stabilized, current, state, spec, behavior, now)
        state = store_scale_event(state, behavior, current, final, now)
    if final != stabilized:
        return BehaviorOutcome(final, limit_reason, limit_msg, state, stabilized)
    if stabilized != recommendation:
        return BehaviorOutcome(final, stab_reason, stab_msg, state, stabilized)
    return BehaviorOutcome(final, None, _MSG_WITHIN, state, stabilized)


def scale_up_ceiling(current: int, state: State, spec: Spec, now: float) -> int:
    """The most replicas one decision may reach now: ``maxReplicas`` and the scale-up
    rate limit (``behavior.scaleUp`` policies, or the legacy ``max(2 x current, 4)``),
    never below ``current``. What ``apply_behavior`` would let a higher recommendation
    through to, for a plan that must choose a count within what can be asked. Worked
    number: the HPA's default scale-up (100 % or 4 pods per 15 s, the larger) from 2
    replicas with none added in the last 15 s allows max(4, 6) = 6; maxReplicas 5 makes
    it 5."""
    behavior = spec.behavior
    if behavior is None:
        limit = legacy_scale_up_limit(current)
    else:
        limit = scale_up_limit(current, state, behavior.scale_up, now)
    return max(current, min(spec.max_replicas, limit))
