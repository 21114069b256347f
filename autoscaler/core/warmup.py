"""Warm a policy's memory from history, so a new controller forecasts from its first cycle.

A controller that starts (or fails over) has no state; the predictive policy would need
``history_s`` of samples before its trend is meaningful and six hours of bins before a
seasonal model stands in. The past request rates are in Prometheus, though: the caller
backfills them with a range query and ``warm_up`` replays them through the very same
``decide`` the live loop calls, keeping only the policy's own memory (forecaster history,
fitted model, KPA windows). Stabilisation windows and rate-limit events are dropped, because
the replayed decisions were never acted on.
"""

from __future__ import annotations

from collections.abc import Iterable

from autoscaler.core.decide import decide
from autoscaler.core.spec import Spec
from autoscaler.core.types import MetricValue, Signal, Snapshot, State


def warm_up(spec: Spec, history: Iterable[tuple[float, float]], replicas: int) -> State:
    """The state after feeding ``(time, request rate)`` samples, oldest first, through
    ``decide`` with ``replicas`` current and ready. NaN samples (gaps) are passed as absent
    data, the way the live loop would have seen them."""
    state = State()
    for t, rate in history:
        metrics = {} if rate != rate else {Signal.REQUEST_RATE.value: MetricValue(rate, t)}
        snap = Snapshot(current_replicas=replicas, ready_replicas=replicas, metrics=metrics)
        _, state = decide(snap, state, spec, t)
    return State(policy=state.policy)
