"""``controller/status.py``: a decision and what was observed, turned into the custom
resource's conditions and status, without a cluster."""

from __future__ import annotations

import pytest

from autoscaler.controller import status as st
from autoscaler.core.types import Decision, Reason, Signal
from autoscaler.metrics.collect import Observation, SignalReading, Status

OK = st.MetricsVerdict(True, "3 signals ok, 2 pods reporting", "ok")
MISSING = st.MetricsVerdict(False, "metrics source did not answer within 6 s",
                            "metrics source did not answer within 6 s")


def observation(age_s: float, pods: int = 2) -> Observation:
    """request_rate stale (newest sample ``age_s`` old), queue_depth fine."""
    return Observation(
        newest_sample=1_000.0 - age_s, pods_reporting=pods,
        readings={
            Signal.REQUEST_RATE: SignalReading(Status.STALE, 4.0, 1_000.0 - age_s,
                                               f"newest sample {age_s:.0f} s old > 60 s"),
            Signal.QUEUE_DEPTH: SignalReading(Status.OK, 0.0, 1_000.0)})


@pytest.mark.parametrize(("kw", "expected"), [
    pytest.param(dict(valid=True, reason="DesiredWithinRange", message="m",
                      decision_reason=Reason.DESIRED_WITHIN_RANGE, metrics=OK, blocked=None),
                 {"ScalingActive": ("True", "DesiredWithinRange", "m"),
                  "ScalingLimited": ("False", "DesiredWithinRange",
                                     "desired count within limits"),
                  "MetricsAvailable": ("True", "MetricsOK", OK.message)},
                 id="a normal decision"),
    pytest.param(dict(valid=True, reason="ScaleUpLimit", message="at most 4",
                      decision_reason=Reason.SCALE_UP_LIMIT, metrics=OK, blocked=None),
                 {"ScalingActive": ("True", "ScaleUpLimit", "at most 4"),
                  "ScalingLimited": ("True", "ScaleUpLimit", "at most 4"),
                  "MetricsAvailable": ("True", "MetricsOK", OK.message)},
                 id="a rate-limited decision"),
    pytest.param(dict(valid=False, reason="MetricsMissing", message="no rate",
                      decision_reason=Reason.METRICS_MISSING, metrics=MISSING, blocked=None),
                 {"ScalingActive": ("False", "MetricsMissing", "no rate"),
                  "ScalingLimited": ("False", "MetricsMissing", "desired count within limits"),
                  "MetricsAvailable": ("False", "MetricsUnavailable", MISSING.message)},
                 id="missing metrics: not active"),
    pytest.param(dict(valid=False, reason="Fallback", message="3 cycles",
                      decision_reason=Reason.METRICS_MISSING, metrics=MISSING, blocked=None),
                 {"ScalingActive": ("True", "Fallback", "3 cycles"),
                  "ScalingLimited": ("False", "MetricsMissing", "desired count within limits"),
                  "MetricsAvailable": ("False", "MetricsUnavailable", MISSING.message)},
                 id="the fallback acts on missing metrics"),
    pytest.param(dict(valid=True, reason="DesiredWithinRange", message="m",
                      decision_reason=Reason.DESIRED_WITHIN_RANGE, metrics=OK,
                      blocked=("False", "ConflictingAutoscaler", "HPA x")),
                 {"ScalingActive": ("False", "ConflictingAutoscaler", "HPA x"),
                  "ScalingLimited": ("False", "DesiredWithinRange",
                                     "desired count within limits"),
                  "MetricsAvailable": ("True", "MetricsOK", OK.message)},
                 id="a competing autoscaler blocks"),
])
def test_conditions_of_a_decision(kw: dict[str, object],
                                  expected: dict[str, st.Condition]) -> None:
    got = st.conditions(mode="Scale", **kw)  # type: ignore[arg-type]
    assert got == {"Ready": ("True", "Reconciled", "mode Scale"), **expected}


def test_the_metrics_event_is_the_same_however_old_the_sample() -> None:
    a, b = st.metrics_verdict(observation(61), 2), st.metrics_verdict(observation(91), 2)
    assert not a.usable and not b.usable
    assert a.message != b.message  # the status says how old
    assert "61 s old" in a.message
    assert st.metrics_event_message(a) == st.metrics_event_message(b) == (
        "metrics unusable (request_rate: stale): holding, no scale-down on missing data")


def test_fewer_pods_reporting_than_ready_marks_sums_partial() -> None:
    fresh = Observation({
        Signal.REQUEST_RATE: SignalReading(Status.OK, 4.0, 1_000.0)}, 1_000.0, 2)
    assert st.metrics_verdict(fresh, 2).usable
    v = st.metrics_verdict(fresh, 3)  # 2 of 3 ready pods report: the rate undercounts
    assert not v.usable and v.key == "request_rate: partial"


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = st.merge_conditions({}, {"Ready": ("True", "Reconciled", "x")}, 1_000.0)
    prev = {c["type"]: c for c in first}
    same = st.merge_conditions(prev, {"Ready": ("True", "Other", "y")}, 2_000.0)
    flipped = st.merge_conditions(prev, {"Ready": ("False", "FailedGetScale", "z")}, 3_000.0)
    assert same[0]["lastTransitionTime"] == st.rfc3339(1_000.0) == "1970-01-01T00:16:40Z"
    assert flipped[0]["lastTransitionTime"] == st.rfc3339(3_000.0) == "1970-01-01T00:50:00Z"


def test_only_counts_reason_and_condition_states_are_material() -> None:
    decision = Decision(replicas=4, reason=Reason.FORECAST, message="m", forecast_rps=12.3456,
                        demand_rps=10.0, forecast_model="trend")
    conds = st.merge_conditions({}, {"Ready": ("True", "Reconciled", "x")}, 0.0)
    doc = st.status_document(generation=3, current=2, desired=4, reason="Forecast",
                             message="m", conditions=conds, last_scale_time=60.0,
                             decision=decision)
    assert doc["forecastRps"] == 12.346 and doc["lastScaleTime"] == "1970-01-01T00:01:00Z"
    other = st.status_document(generation=3, current=2, desired=4, reason="Forecast",
                               message="another message", conditions=conds,
                               last_scale_time=60.0, decision=None)
    assert st.material(doc) == st.material(other)
    assert st.material(doc)["conditions"] == [("Ready", "True", "Reconciled")]
