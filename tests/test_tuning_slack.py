"""``predictive.scaleDownSlackLoad``: the slack rule's load line as a spec field the tuner
searches (default 0.5, the capacity learner's probe line; (0, 1]).

A release to n replicas needs a slack reading (the fleet's TTFT tail and queue) unless the
plan loads each of the n replicas no more than this fraction of its capacity
(``release.slack_floor``'s ``loose``)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import yaml

from autoscaler.config import parse_spec, spec_to_dict
from autoscaler.core import capacity as cap_mod
from autoscaler.core import release
from autoscaler.core.decide import decide
from autoscaler.core.policies.predictive import PredictiveState
from autoscaler.core.spec import Capacity, PolicyKind, Spec
from autoscaler.core.types import MetricValue, Signal, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.tuning.spaces import apply_params, default_params, distance, space_for

BASE = """\
policy: predictive
maxReplicas: 10
capacity: {requestsPerSecond: 4, concurrency: 20}
"""
NAN = math.nan
SYNC = 15.0


def _yaml(value: str) -> str:
    return BASE + f"predictive:\n  scaleDownSlackLoad: {value}\n"


def test_the_default_is_half_of_capacity() -> None:
    assert parse_spec(BASE).predictive.scale_down_slack_load == 0.5
    assert _base().predictive.scale_down_slack_load == 0.5


@pytest.mark.parametrize(("text", "value"), [
    pytest.param("0.8", 0.8, id="0.8"), pytest.param("1", 1.0, id="1: the rule off"),
    pytest.param("0.01", 0.01, id="0.01"),
])
def test_the_field_reaches_the_core_and_survives_the_emitted_form(text: str,
                                                                  value: float) -> None:
    spec = parse_spec(_yaml(text))
    assert spec.predictive.scale_down_slack_load == value
    again = parse_spec(yaml.safe_dump(spec_to_dict(spec)))
    assert again.predictive.scale_down_slack_load == value


@pytest.mark.parametrize("text", [
    pytest.param("0", id="0: no load is free, and the plan would divide by it"),
    pytest.param("-0.1", id="negative"), pytest.param("1.2", id="above capacity"),
])
def test_a_bad_value_names_the_field_and_its_range(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_yaml(text), source="s.yaml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("s.yaml:5: predictive.scaleDownSlackLoad"), msg
    assert "> 0" in msg and "<= 1" in msg, msg


def test_the_core_check_names_the_field() -> None:
    bad = replace(_base().predictive, scale_down_slack_load=0.0)
    with pytest.raises(SpecError, match=r"predictive.scaleDownSlackLoad.*> 0 and <= 1"):
        bad.validate()


# --- the tuner owns it ------------------------------------------------------------------

def _base() -> Spec:
    return Spec(max_replicas=10, policy=PolicyKind.PREDICTIVE,
                capacity=Capacity(requests_per_second=4.0, concurrency=20.0))


def test_the_space_holds_the_default_and_apply_sets_it() -> None:
    knob = next(p for p in space_for(PolicyKind.PREDICTIVE) if p.name == "slack_load")
    assert (knob.low, knob.high) == (0.25, 1.0)
    params = default_params(_base())
    assert params["slack_load"] == 0.5
    tuned = apply_params(_base(), {**params, "slack_load": 0.8})
    assert tuned.predictive.scale_down_slack_load == 0.8
    # (0.8 - 0.5) / (1.0 - 0.25) = 0.4 in the unit cube, alone.
    assert distance(PolicyKind.PREDICTIVE, {**params, "slack_load": 0.8}, params) == (
        pytest.approx(0.4))


# --- the decision reads it --------------------------------------------------------------

def _spec(slack_load: float) -> Spec:
    """10 req/s per replica; the learner off so the estimate stays the one given."""
    base = Spec(max_replicas=50, min_replicas=1,
                capacity=Capacity(requests_per_second=10.0, concurrency=20.0),
                policy=PolicyKind.PREDICTIVE, sync_period_s=SYNC)
    return replace(base, predictive=replace(base.predictive, learn_capacity=False,
                                            scale_down_slack_load=slack_load))


def _reading(at: float, current: int) -> Snapshot:
    return Snapshot(current_replicas=current, ready_replicas=current, metrics={
        Signal.REQUEST_RATE: MetricValue(6.0, at), Signal.QUEUE_DEPTH: MetricValue(0.0, at),
        Signal.TTFT_P99: MetricValue(0.4, at)})


@pytest.mark.parametrize(("slack_load", "final"), [
    # 6 req/s on 2 replicas of 10, p99 0.4 s over a 0.02-s floor: no slack for 1 replica
    # (the wait grows to 0.38 x 2 x 0.7 / 0.4 = 1.33 s >= 0.5 x (2 - 0.02) = 0.99 s), and
    # the plan releases to ceil(6 / (10 x 0.7225)) = 1. One replica is free of the
    # reading when 6 <= slack_load x 10: loose = ceil(6 / (10 x slack_load)).
    pytest.param(0.5, 2, id="0.5: loose = ceil(6 / 5) = 2, kept at 2"),
    pytest.param(0.55, 2, id="0.55: loose = ceil(6 / 5.5) = 2, kept at 2"),
    pytest.param(0.6, 1, id="0.6: loose = ceil(6 / 6) = 1, released"),
    pytest.param(1.0, 1, id="1.0: loose = 1, released"),
])
def test_the_decision_reads_the_slack_load_from_the_spec(
        monkeypatch: pytest.MonkeyPatch, slack_load: float, final: int) -> None:
    monkeypatch.setattr(release, "RELEASE_ON_SLACK", True)
    spec = _spec(slack_load)
    est = cap_mod.LearnedCapacity(capacity=(NAN, NAN, 10.0), prior=(NAN, NAN, 10.0))
    state = State(policy=PredictiveState(capacity=est, ttft_floor=(0.0, 0.02)))
    current, counts = 2, []
    for i in range(24):  # 6 minutes: past the 300-s scale-down stabilisation
        t = SYNC * (i + 1)
        d, state = decide(_reading(t, current), state, spec, t)
        current = d.replicas
        counts.append(current)
    assert counts[-1] == final
    assert min(counts) == final
