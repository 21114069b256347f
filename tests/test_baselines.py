"""Baselines users run: the HPA on queue and KV cache, KEDA on the queue, llm-d WVA."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.core import decide
from autoscaler.core.policies import keda, wva
from autoscaler.core.spec import (
    Behavior,
    Capacity,
    KedaParams,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    Spec,
)
from autoscaler.core.types import MetricValue, Reason, Signal, Snapshot, State
from autoscaler.errors import SpecError

NO_DOWN_STABILIZATION = Behavior(scale_down=ScalingRules(
    stabilization_window_seconds=0, policies=(ScalingPolicy(ScalingPolicyType.PERCENT, 100, 15),)))
QUEUE_5 = (MetricTarget(Signal.QUEUE_DEPTH.value, MetricTargetType.AVERAGE_VALUE, 5.0),)


def snap(current: int, at: float = 0.0, ready: int | None = None, **values: float) -> Snapshot:
    return Snapshot(current_replicas=current,
                    ready_replicas=current if ready is None else ready,
                    metrics={k: MetricValue(v, at) for k, v in values.items()})


def spec(policy: PolicyKind, **kw: object) -> Spec:
    base = Spec(max_replicas=50, capacity=Capacity(4.0, 40.0), policy=PolicyKind.STATIC,
                behavior=NO_DOWN_STABILIZATION)
    return replace(base, policy=policy, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", [PolicyKind.HPA_QUEUE, PolicyKind.HPA_KV, PolicyKind.KEDA])
def test_hpa_family_needs_a_metric(policy: PolicyKind) -> None:
    with pytest.raises(SpecError, match="metrics"):
        spec(policy)


def test_hpa_on_the_queue_asks_for_the_queue_over_the_target() -> None:
    # 3 replicas, 42 waiting against 5 per replica: ratio 42 / 15 = 2.8, ceil(42 / 5) = 9,
    # which the default scale-up rate allows only to max(3 x 2, 3 + 4) = 7 in one period.
    d, _ = decide(snap(3, queue_depth=42.0), State(), spec(PolicyKind.HPA_QUEUE, metrics=QUEUE_5),
                  0.0)
    assert d.recommendation == 9 and d.replicas == 7


def test_hpa_on_kv_cache_scales_the_ready_fleet_by_the_usage_ratio() -> None:
    # Mean KV use 0.96 on 4 ready against a 0.8 Value target: ceil(4 x 1.2) = 5.
    s = spec(PolicyKind.HPA_KV, metrics=(
        MetricTarget(Signal.KV_CACHE_USAGE.value, MetricTargetType.VALUE, 0.8),))
    d, _ = decide(snap(4, kv_cache_usage=0.96), State(), s, 0.0)
    assert d.replicas == 5


def test_keda_with_min_zero_scales_to_zero_after_the_cooldown_and_back_on_activation() -> None:
    s = spec(PolicyKind.KEDA, metrics=QUEUE_5, min_replicas=0, keda=KedaParams(cooldown_s=300.0))
    state = State()
    d, state = keda.decide(snap(2, at=0.0, queue_depth=3.0), state, s, 0.0)
    assert d.replicas == 1  # active: the HPA's ceil(3 / 5) = 1
    t = 0.0
    for t in (15.0, 150.0, 299.0):
        d, state = keda.decide(snap(1, at=t, queue_depth=0.0), state, s, t)
        assert d.replicas >= 1  # inactive for less than the cooldown (300 s)
    d, state = keda.decide(snap(1, at=300.0, queue_depth=0.0), state, s, 300.0)
    assert d.replicas == 0
    d, state = keda.decide(snap(0, at=315.0, queue_depth=0.0), state, s, 315.0)
    assert d.replicas == 0
    d, _ = keda.decide(snap(0, at=330.0, queue_depth=2.0), state, s, 330.0)
    assert d.replicas == 1


def test_keda_with_min_one_is_the_hpa_on_the_queue() -> None:
    s_k = spec(PolicyKind.KEDA, metrics=QUEUE_5)
    s_h = spec(PolicyKind.HPA_QUEUE, metrics=QUEUE_5)
    for queue, current in ((0.0, 4), (12.0, 2), (80.0, 3)):
        dk, _ = keda.decide(snap(current, queue_depth=queue), State(), s_k, 0.0)
        dh, _ = decide(snap(current, queue_depth=queue), State(), s_h, 0.0)
        assert dk.replicas == dh.replicas


@pytest.mark.parametrize(("metrics", "current", "want"), [
    # Compute bound: 40 in flight per replica (capacity.concurrency). 4 ready carrying 150
    # (u = 150 / 160 = 0.94 > 0.85): ceil(150 / (0.85 x 40)) = ceil(4.41) = 5.
    pytest.param({"concurrency": 150.0, "running_requests": 150.0, "kv_cache_usage": 0.3},
                 4, 5, id="compute-bound scale-up"),
    # KV bound: 30 running per replica fill 60 % of the cache, so 0.8 x 30 / 0.6 = 40... use
    # 0.9: 0.8 x 30 / 0.9 = 26.7 per replica < 40. 4 ready, 120 in flight: u = 120 / 106.7 =
    # 1.125 > 0.85: ceil(120 / (0.85 x 26.67)) = ceil(5.29) = 6.
    pytest.param({"concurrency": 120.0, "running_requests": 120.0, "kv_cache_usage": 0.9},
                 4, 6, id="KV-bound scale-up"),
    # u = 60 / 160 = 0.375 < 0.70 and 3 replicas would be at 60 / 120 = 0.5 <= 0.85: one down.
    pytest.param({"concurrency": 60.0, "running_requests": 60.0, "kv_cache_usage": 0.1},
                 4, 3, id="one replica down below 0.70"),
    # u = 120 / 160 = 0.75: inside the band, hold.
    pytest.param({"concurrency": 120.0, "running_requests": 120.0, "kv_cache_usage": 0.2},
                 4, 4, id="inside the band holds"),
])
def test_wva_saturation(metrics: dict[str, float], current: int, want: int) -> None:
    d, _ = wva.decide(snap(current, **metrics), State(), spec(PolicyKind.WVA), 0.0)
    assert d.replicas == want


def test_wva_holds_without_demand() -> None:
    d, _ = wva.decide(snap(3, kv_cache_usage=0.5), State(), spec(PolicyKind.WVA), 0.0)
    assert not d.valid and d.reason == Reason.METRICS_MISSING and d.replicas == 3
