"""A spec without ``behavior`` runs the same scaling rules live and in the replay.

The replay used to give the predictive policy a 0-s scale-down window while a live spec
without ``behavior`` took the HPA's legacy path (a 300-s window, and scale-ups capped at
max(2 x current, 4) rather than the default rules' max(+100 %, +4 pods) per 15 s). So what
was replayed and tuned was not what ran.
"""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.config import parse_spec
from autoscaler.core.spec import Capacity, PolicyKind
from autoscaler.replaying import ReplayOptions, default_specs
from autoscaler.sim.profiles import load_profile
from autoscaler.traces.model import Trace

_BASE = "maxReplicas: 20\ncapacity: {requestsPerSecond: 4, concurrency: 24}\n"


_HPA_METRIC = "metrics: [{metric: request_rate, target: {type: AverageValue, value: 3}}]\n"


@pytest.mark.parametrize(("policy", "extra", "window_s"), [
    pytest.param("predictive", "", 0, id="predictive-own-window"),
    pytest.param("hpa", _HPA_METRIC, None, id="hpa-legacy-path"),
    pytest.param("kpa", "", None, id="kpa-legacy-path"),
])
def test_a_spec_without_behavior_gets_its_policys_default(policy: str, extra: str,
                                                          window_s: int | None) -> None:
    spec = parse_spec(f"policy: {policy}\n" + _BASE + extra)
    if window_s is None:
        assert spec.behavior is None  # the HPA with no behavior field
    else:
        assert spec.behavior is not None
        assert spec.behavior.scale_down.stabilization_window_seconds == window_s
        # the rest are the HPA's defaults: +100 % or +4 pods per 15 s up, 100 % per 15 s down
        up = spec.behavior.scale_up
        assert sorted((p.value, p.period_seconds) for p in up.policies) == [(4, 15), (100, 15)]
        assert [(p.value, p.period_seconds) for p in spec.behavior.scale_down.policies] == [
            (100, 15)]


@pytest.mark.parametrize(("side", "down_window_s"), [
    pytest.param("scaleUp: {stabilizationWindowSeconds: 30}", 0, id="left-out-down-is-ours"),
    pytest.param("scaleDown: {stabilizationWindowSeconds: 600}", 600, id="stated-down-kept"),
])
def test_a_left_out_side_gets_the_policys_rules(side: str, down_window_s: int) -> None:
    spec = parse_spec("policy: predictive\n" + _BASE + "behavior: {" + side + "}\n")
    assert spec.behavior is not None
    assert spec.behavior.scale_down.stabilization_window_seconds == down_window_s


def test_the_replay_runs_the_behavior_a_live_spec_gets() -> None:
    trace = Trace(name="flat", duration_s=3600.0, rates_rps=np.full(60, 10.0),
                  resolution_s=60.0)
    replayed = default_specs(trace, load_profile("llama3-8b-h100"), Capacity(4.0, 24.0),
                             ReplayOptions())[PolicyKind.PREDICTIVE]
    live = parse_spec("policy: predictive\nmaxReplicas: 20\n")
    assert replayed.behavior == live.behavior
