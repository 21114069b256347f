"""The learned capacity, with its uncertainty, where an operator looks: the CR status, the
controller's ``/metrics`` and the decision log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import generate_latest

from autoscaler.controller import status as st
from autoscaler.controller.crd import status_schema
from autoscaler.controller.loop import Outcome
from autoscaler.controller.main import Metrics
from autoscaler.controller.resource import Mode
from autoscaler.core.types import Decision, Reason
from tests.test_controller_loop import NS, run, world
from tests.test_deploy import schema_errors


def _decision(rps: float | None, sd: float | None, unit: str | None = "prompt_tokens_per_s",
              per: float | None = 4000.0) -> Decision:
    return Decision(replicas=3, reason=Reason.FORECAST, message="m", capacity_rps=rps,
                    capacity_uncertainty=sd, capacity_unit=unit, capacity_per_replica=per)


def _doc(decision: Decision | None) -> dict[str, Any]:
    return st.status_document(generation=1, current=3, desired=3, reason="Forecast",
                              message="m", conditions=[], last_scale_time=None,
                              decision=decision)


@pytest.mark.parametrize(("decision", "expected"), [
    # 90 % band: 4 x (1 -+ 1.645 x 0.1) = 3.342 .. 4.658.
    pytest.param(_decision(4.0, 0.1), {
        "requestsPerSecond": 4.0, "lowerRequestsPerSecond": 3.342,
        "upperRequestsPerSecond": 4.658, "relativeStdDev": 0.1,
        "unit": "prompt_tokens_per_s", "perReplica": 4000.0}, id="4 req/s +-10%"),
    # 1.645 x 0.8 x 4 = 5.264 > 4: the lower end stops at 0; upper 9.264.
    pytest.param(_decision(4.0, 0.8, None, None), {
        "requestsPerSecond": 4.0, "lowerRequestsPerSecond": 0.0,
        "upperRequestsPerSecond": 9.264, "relativeStdDev": 0.8}, id="wide band, no unit"),
    pytest.param(_decision(None, None), None, id="a policy that learns nothing"),
    pytest.param(_decision(float("inf"), 0.1), None, id="no finite capacity"),
    pytest.param(None, None, id="no decision"),
])
def test_the_status_shows_the_learned_capacity_with_its_band(
        decision: Decision | None, expected: dict[str, Any] | None) -> None:
    doc = _doc(decision)
    assert doc.get("learnedCapacity") == expected
    assert schema_errors(doc, status_schema(), "status") == []


def test_a_moving_capacity_waits_for_the_periodic_status_refresh() -> None:
    # Like the forecast figures: a new estimate every cycle must not be a PATCH every cycle.
    assert st.material(_doc(_decision(4.0, 0.1))) == st.material(_doc(_decision(4.4, 0.2)))


def _outcome(decision: Decision | None) -> Outcome:
    return Outcome(NS, "chat", Mode.SCALE, 3, 3, "Forecast", True, False, decision, 0.0)


def _series(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return line
    return None


def test_the_metrics_endpoint_has_a_gauge_per_autoscaler_with_the_band() -> None:
    metrics = Metrics()
    metrics.decision(_outcome(_decision(4.0, 0.1)))
    text = generate_latest(metrics.registry).decode()
    for name, value in (("autoscaler_learned_capacity_rps", 4.0),
                        ("autoscaler_learned_capacity_lower_rps", 3.342),
                        ("autoscaler_learned_capacity_upper_rps", 4.658),
                        ("autoscaler_learned_capacity_relative_sd", 0.1)):
        line = _series(text, name)
        assert line is not None, name
        assert f'namespace="{NS}"' in line and 'autoscaler="chat"' in line
        assert float(line.rsplit(" ", 1)[1]) == pytest.approx(value), line
    # A policy change to one that learns nothing removes the series (no fake zero).
    metrics.decision(_outcome(_decision(None, None)))
    text = generate_latest(metrics.registry).decode()
    assert _series(text, "autoscaler_learned_capacity_rps") is None


def test_the_decision_log_carries_the_learned_capacity(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    # The CR's capacity (4 req/s) is the estimate before any settled step, at the prior's
    # relative SD (0.5): band 4 x (1 -+ 1.645 x 0.5) = 0.71 .. 7.29.
    kube, prom, ctrl = world(rate=6.0, replicas=2)
    with caplog.at_level(logging.INFO, logger="autoscaler.decisions"):
        run(ctrl, prom, 1_000_000.0, 1)
    records = [r for r in caplog.records if r.name == "autoscaler.decisions"]
    assert len(records) == 1
    rec = records[0].__dict__
    assert (rec["namespace"], rec["autoscaler"]) == (NS, "chat")
    assert rec["capacity_rps"] == 4.0
    assert rec["capacity_relative_sd"] == 0.5
    assert (rec["capacity_lower_rps"], rec["capacity_upper_rps"]) == (0.71, 7.29)
    assert rec["capacity_unit"] == "requests_per_s"
    assert rec["desired"] == kube.deployments["chat"][0]


def test_the_decision_log_writes_info_only_when_the_decision_changes(
        caplog: pytest.LogCaptureFixture) -> None:
    # 2 req/s on 2 replicas at 4 x 0.85 per replica needs 1, held by the policy's windows:
    # the same (desired, reason) cycle after cycle is logged once at INFO.
    _, prom, ctrl = world(rate=2.0, replicas=2)
    with caplog.at_level(logging.INFO, logger="autoscaler.decisions"):
        run(ctrl, prom, 1_000_000.0, 4)
    infos = [(r.__dict__["desired"], r.__dict__["reason"]) for r in caplog.records
             if r.name == "autoscaler.decisions"]
    assert infos and len(infos) == len(set(infos)) < 4
