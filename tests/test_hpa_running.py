"""The HPA on running requests (``hpa-running``): vLLM ``num_requests_running`` per replica,
the "batch size" metric of GKE's LLM autoscaling guide, at its documented target."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.config import parse_spec
from autoscaler.core import decide
from autoscaler.core.spec import (
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
from autoscaler.core.types import MetricValue, Reason, Signal, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.replaying import ReplayOptions, default_specs
from autoscaler.sim.profiles import load_profile
from autoscaler.traces.synthetic import default_workload

NO_DOWN_STABILIZATION = Behavior(scale_down=ScalingRules(
    stabilization_window_seconds=0, policies=(ScalingPolicy(ScalingPolicyType.PERCENT, 100, 15),)))
RUNNING_10 = (MetricTarget(Signal.RUNNING.value, MetricTargetType.AVERAGE_VALUE, 10.0),)


def spec(**kw: object) -> Spec:
    base = Spec(max_replicas=50, capacity=Capacity(4.0, 40.0), policy=PolicyKind.HPA_RUNNING,
                behavior=NO_DOWN_STABILIZATION, metrics=RUNNING_10)
    return replace(base, **kw)  # type: ignore[arg-type]


def snap(current: int, at: float = 0.0, **values: float) -> Snapshot:
    return Snapshot(current_replicas=current, ready_replicas=current,
                    metrics={k: MetricValue(v, at) for k, v in values.items()})


def test_it_needs_a_metric() -> None:
    with pytest.raises(SpecError, match="metrics"):
        spec(metrics=())


@pytest.mark.parametrize(("current", "running", "recommended", "replicas"), [
    # 4 replicas, 60 running against 10 each: ceil(60 / 10) = 6, within max(4 x 2, 4 + 4).
    pytest.param(4, 60.0, 6, 6, id="60 running on 4 -> 6"),
    # 3 replicas, 150 running: ceil(15) = 15, the scale-up rate allows max(6, 7) = 7.
    pytest.param(3, 150.0, 15, 7, id="150 running on 3 -> 15, rate-limited to 7"),
    # 8 replicas, 20 running: ceil(2) = 2 (no stabilization window in this spec).
    pytest.param(8, 20.0, 2, 2, id="20 running on 8 -> 2"),
    # 5 replicas, 52 running: ratio 52 / 50 = 1.04, inside the 10 % tolerance: hold.
    pytest.param(5, 52.0, 5, 5, id="inside the tolerance -> hold"),
])
def test_it_asks_for_running_requests_over_the_target(current: int, running: float,
                                                      recommended: int, replicas: int) -> None:
    d, _ = decide(snap(current, running_requests=running), State(), spec(), 0.0)
    assert (d.recommendation, d.replicas) == (recommended, replicas)


def test_without_the_running_signal_it_holds() -> None:
    d, _ = decide(snap(4, queue_depth=100.0), State(), spec(), 0.0)
    assert d.replicas == 4 and not d.valid
    assert d.reason in (Reason.METRICS_MISSING, Reason.METRICS_STALE)


def test_the_replay_runs_it_at_the_documented_target_of_10_per_replica() -> None:
    trace = default_workload()
    s = default_specs(trace, load_profile(), Capacity(4.0, 40.0), ReplayOptions())[
        PolicyKind.HPA_RUNNING]
    assert s.metrics == (MetricTarget("running_requests", MetricTargetType.AVERAGE_VALUE, 10.0),)


def test_the_spec_file_accepts_it() -> None:
    s = parse_spec("policy: hpa-running\nmaxReplicas: 10\n"
                   "capacity: {requestsPerSecond: 4, concurrency: 20}\nmetrics:\n"
                   "- metric: running_requests\n"
                   "  target: {type: AverageValue, value: 10}\n")
    assert s.policy == PolicyKind.HPA_RUNNING
