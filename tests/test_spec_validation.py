"""Spec validation: every bad field is named, with its value and the allowed range."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.core.spec import (
    SLO,
    Behavior,
    Capacity,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    Spec,
)
from autoscaler.errors import SpecError

CAP = Capacity(requests_per_second=4.0, concurrency=20.0)


def _spec(**kw: object) -> Spec:
    base: dict[str, object] = {"max_replicas": 10, "capacity": CAP}
    base.update(kw)
    return Spec(**base)  # type: ignore[arg-type]


def _rules(**kw: object) -> ScalingRules:
    base: dict[str, object] = {
        "stabilization_window_seconds": 0,
        "policies": (ScalingPolicy(ScalingPolicyType.PODS, 4, 15),),
    }
    base.update(kw)
    return ScalingRules(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed_fragment"),
    [
        pytest.param({"min_replicas": 11}, "minReplicas", "<= maxReplicas (10)",
                     id="min above max"),
        pytest.param({"min_replicas": -1}, "minReplicas", ">= 0", id="negative min"),
        pytest.param({"max_replicas": 0}, "maxReplicas", ">= 1", id="zero max"),
        pytest.param({"cold_start_s": -5.0}, "coldStartSeconds", ">= 0", id="negative cold start"),
        pytest.param({"sync_period_s": 0.5}, "syncPeriodSeconds", ">= 1", id="sync too fast"),
        pytest.param({"slo": SLO(ttft_seconds=0.0)}, "slo.ttftSeconds", "> 0", id="zero SLO"),
        pytest.param({"slo": SLO(target_attainment=1.5)}, "slo.targetAttainment", "<= 1",
                     id="attainment above one"),
        pytest.param({"capacity": Capacity(0.0, 1.0)}, "capacity.requestsPerSecond", "> 0",
                     id="zero capacity"),
        pytest.param({"policy": PolicyKind.HPA}, "metrics", "at least one metric",
                     id="hpa without metrics"),
        pytest.param({"metrics": (MetricTarget("concurrency", MetricTargetType.VALUE, 0.0),)},
                     "metrics[0].target.value", "> 0", id="zero metric target"),
        pytest.param({"behavior": Behavior(scale_up=_rules(stabilization_window_seconds=3601))},
                     "behavior.scaleUp.stabilizationWindowSeconds", "<= 3600",
                     id="window above an hour"),
        pytest.param({"behavior": Behavior(scale_down=_rules(
            policies=(ScalingPolicy(ScalingPolicyType.PERCENT, 50, 0),)))},
                     "behavior.scaleDown.policies[0].periodSeconds", "> 0", id="zero period"),
        pytest.param({"behavior": Behavior(scale_down=_rules(
            policies=(ScalingPolicy(ScalingPolicyType.PODS, 1, 1801),)))},
                     "behavior.scaleDown.policies[0].periodSeconds", "<= 1800",
                     id="period above 30 minutes"),
        pytest.param({"behavior": Behavior(scale_up=_rules(policies=()))},
                     "behavior.scaleUp.policies", "at least one policy", id="no policies"),
        pytest.param({"behavior": Behavior(scale_up=_rules(tolerance=1.5))},
                     "behavior.scaleUp.tolerance", "<= 1", id="tolerance above one"),
        pytest.param({"static_replicas": 11}, "staticReplicas", "<= 10", id="static above max"),
    ],
)
def test_an_invalid_spec_names_the_field_value_and_allowed_range(
    kwargs: dict[str, object], field: str, allowed_fragment: str
) -> None:
    with pytest.raises(SpecError) as info:
        _spec(**kwargs)
    assert info.value.field == field
    assert allowed_fragment in info.value.allowed
    assert field in str(info.value)


def test_a_valid_spec_keeps_the_hpa_default_behavior() -> None:
    spec = _spec()
    assert spec.behavior is not None
    up, down = spec.behavior.scale_up, spec.behavior.scale_down
    assert (up.stabilization_window_seconds, down.stabilization_window_seconds) == (0, 300)
    assert {(p.type, p.value, p.period_seconds) for p in up.policies} == {
        (ScalingPolicyType.PERCENT, 100, 15), (ScalingPolicyType.PODS, 4, 15)}
    assert [(p.type, p.value, p.period_seconds) for p in down.policies] == [
        (ScalingPolicyType.PERCENT, 100, 15)]


def test_a_spec_is_immutable() -> None:
    spec = _spec()
    with pytest.raises(AttributeError):
        spec.max_replicas = 3  # type: ignore[misc]
    assert replace(spec, max_replicas=3).max_replicas == 3
