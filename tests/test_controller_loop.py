"""The control loop's safety rules, with a fake cluster and a fake Prometheus in memory.

The fakes keep real state (a workload's replicas and resourceVersion, written statuses,
recorded Events) so each test reads like an operator's story. The same rules are proven
again against a real API server in tests/e2e.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from promfake import MeaningPrometheus

from autoscaler.controller.kube import Conflict, NotFound, ScaleInfo
from autoscaler.controller.loop import Controller
from autoscaler.controller.resource import TargetRef
from autoscaler.metrics.source import RangeSeries, Sample

NS = "llm"


@dataclass
class FakeKube:
    autoscalers: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, list[int]] = field(default_factory=dict)
    """name -> [replicas, ready, resourceVersion]."""
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    scale_writes: list[tuple[str, int]] = field(default_factory=list)

    def list_autoscalers(self, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self.autoscalers.values()]

    def list_workloads(self, kind: str, namespace: str | None
                       ) -> dict[tuple[str, str], ScaleInfo]:
        return {(NS, n): ScaleInfo(r, ready, str(rv))
                for n, (r, ready, rv) in self.deployments.items()}

    def get_scale(self, namespace: str, ref: TargetRef) -> ScaleInfo:
        raise NotFound("no such kind", 404)

    def update_scale(self, namespace: str, ref: TargetRef, replicas: int,
                     resource_version: str) -> None:
        d = self.deployments[ref.name]
        if str(d[2]) != resource_version:
            raise Conflict("the object has been modified", 409)
        d[0], d[2] = replicas, d[2] + 1
        self.scale_writes.append((ref.name, replicas))

    def scale_by_hand(self, name: str, replicas: int) -> None:
        d = self.deployments[name]
        d[0], d[2] = replicas, d[2] + 1

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.statuses.setdefault(name, []).append(dict(status))

    def create_event(self, namespace: str, involved: Mapping[str, str], event_type: str,
                     reason: str, message: str) -> None:
        self.events.append((involved["name"], reason, message))


@dataclass
class FakePrometheus:
    """Two pods per workload, scraped every 15 s up to 1 s ago: each counts first tokens
    (``vllm:time_to_first_token_seconds_count``) at half the workload's rate and shows an
    empty queue; other signals are absent (the policy must cope). Queries are answered by
    metric name and labels (``promfake``), not by their text."""

    rates: dict[str, float] = field(default_factory=dict)
    up: bool = True
    now: float = 0.0
    queries: int = 0

    def _store(self, t: float) -> MeaningPrometheus:
        store = MeaningPrometheus(up=self.up)
        times = [t - 1.0 - 15.0 * k for k in range(8)][::-1]
        for wl, rate in self.rates.items():
            for pod in (f"{wl}-0", f"{wl}-1"):
                labels = {"namespace": NS, "workload": wl, "pod": pod}
                store.add("vllm:time_to_first_token_seconds_count", labels,
                          [(x, 1000.0 + rate / 2 * x) for x in times])
                store.add("vllm:num_requests_waiting", labels, [(x, 0.0) for x in times])
        return store

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self.queries += 1
        t = at if at is not None else self.now
        return self._store(t).query(promql, t)

    def query_series(self, promql: str, at: float | None = None) -> list[RangeSeries]:
        self.queries += 1
        t = at if at is not None else self.now
        return self._store(t).query_series(promql, t)

    def query_range(self, promql: str, start: float, end: float,
                    step_s: float) -> list[RangeSeries]:
        return []


def autoscaler(name: str, *, mode: str = "Scale", generation: int = 1,
               **spec: Any) -> dict[str, Any]:
    body = {"policy": "predictive", "minReplicas": 1, "maxReplicas": 20,
            "capacity": {"requestsPerSecond": 4.0, "concurrency": 24},
            "coldStartSeconds": 60, "syncPeriodSeconds": 15,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "mode": mode, **spec}
    return {"apiVersion": "inference.autoscaler.dev/v1alpha1", "kind": "InferenceAutoscaler",
            "metadata": {"namespace": NS, "name": name, "uid": f"uid-{name}",
                         "generation": generation}, "spec": body}


def world(mode: str = "Scale", replicas: int = 2, rate: float = 20.0,
          **spec: Any) -> tuple[FakeKube, FakePrometheus, Controller]:
    kube = FakeKube(autoscalers={"chat": autoscaler("chat", mode=mode, **spec)},
                    deployments={"chat": [replicas, replicas, 1]})
    prom = FakePrometheus(rates={"chat": rate})
    return kube, prom, Controller(kube, prom)


def run(ctrl: Controller, prom: FakePrometheus, start: float, cycles: int,
        step: float = 15.0) -> float:
    t = start
    for _ in range(cycles):
        prom.now = t
        ctrl.cycle(t)
        t += step
    return t


def test_scale_mode_scales_up_to_the_demand_and_says_why() -> None:
    # 20 req/s at 4 req/s x 0.85 per replica needs ceil(5.88) = 6; the predictive
    # behaviour lets the count at most double per 15-s period: 2 -> 4 -> 6.
    kube, prom, ctrl = world(rate=20.0)
    run(ctrl, prom, 1_000_000.0, 1)
    assert kube.scale_writes == [("chat", 4)]
    assert kube.statuses["chat"][-1]["reason"] == "ScaleUpLimit"
    run(ctrl, prom, 1_000_015.0, 2)
    assert kube.deployments["chat"][0] == 6
    assert kube.scale_writes == [("chat", 4), ("chat", 6)]
    status = kube.statuses["chat"][-1]
    assert status["desiredReplicas"] == 6 and status["currentReplicas"] == 6
    assert [r for _, r, _ in kube.events] == ["SuccessfulRescale"] * 2


@pytest.mark.parametrize("mode", [pytest.param("Shadow", id="shadow"),
                                  pytest.param("Metrics", id="metrics")])
def test_modes_other_than_scale_never_write_the_scale(mode: str) -> None:
    kube, prom, ctrl = world(mode=mode, rate=20.0)
    run(ctrl, prom, 1_000_000.0, 4)
    assert kube.scale_writes == []
    assert kube.deployments["chat"][0] == 2
    assert kube.statuses["chat"][-1]["desiredReplicas"] == 4  # decided (2 -> 4) and reported


def test_prometheus_down_holds_the_count_and_reports_why() -> None:
    kube, prom, ctrl = world(replicas=8, rate=4.0)
    prom.up = False
    run(ctrl, prom, 1_000_000.0, 6)
    assert kube.scale_writes == []  # 4 req/s needs 2, but no data is not low load
    status = kube.statuses["chat"][-1]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["MetricsAvailable"]["status"] == "False"
    assert conds["ScalingActive"]["status"] == "False"
    warnings = [r for _, r, _ in kube.events if r == "MetricsUnavailable"]
    assert warnings == ["MetricsUnavailable"]  # one Event per outage, not one per cycle


def test_the_fallback_raises_but_never_lowers_on_missing_data() -> None:
    kube, prom, ctrl = world(replicas=2, rate=4.0,
                             fallback={"failureThreshold": 3, "replicas": 5})
    prom.up = False
    run(ctrl, prom, 1_000_000.0, 2)
    assert kube.deployments["chat"][0] == 2  # below the threshold: hold
    run(ctrl, prom, 1_000_030.0, 1)
    assert kube.deployments["chat"][0] == 5
    assert kube.statuses["chat"][-1]["reason"] == "Fallback"

    kube2, prom2, ctrl2 = world(replicas=9, rate=4.0,
                                fallback={"failureThreshold": 1, "replicas": 5})
    prom2.up = False
    run(ctrl2, prom2, 1_000_000.0, 3)
    assert kube2.scale_writes == []  # already above the fallback: not lowered to it


def test_a_racing_writer_causes_a_conflict_not_an_overwrite() -> None:
    kube, prom, ctrl = world(rate=20.0)

    def racing_update(namespace: str, ref: TargetRef, replicas: int, rv: str) -> None:
        kube.scale_by_hand("chat", 3)  # someone writes between our read and our write
        FakeKube.update_scale(kube, namespace, ref, replicas, rv)

    kube.update_scale = racing_update  # type: ignore[method-assign]
    run(ctrl, prom, 1_000_000.0, 1)
    assert kube.deployments["chat"][0] == 3  # their write stands; we decide again next cycle
    assert kube.scale_writes == []


def test_a_writer_that_keeps_changing_the_scale_is_not_fought() -> None:
    kube, prom, ctrl = world(rate=20.0)
    t = run(ctrl, prom, 1_000_000.0, 1)
    for hand in (2, 3, 2):  # an HPA (or a person) keeps resetting it
        kube.scale_by_hand("chat", hand)
        t = run(ctrl, prom, t, 1)
    writes_before = len(kube.scale_writes)
    kube.scale_by_hand("chat", 2)
    t = run(ctrl, prom, t, 4)
    assert len(kube.scale_writes) == writes_before  # backing off, not a tug-of-war
    assert any(r == "ConflictingWriter" for _, r, _ in kube.events)
    conds = {c["type"]: c for c in kube.statuses["chat"][-1]["conditions"]}
    assert conds["ScalingActive"]["reason"] == "ConflictingWriter"


@pytest.mark.parametrize("n", [pytest.param(1, id="one autoscaler"),
                               pytest.param(40, id="forty autoscalers")])
def test_a_cycle_costs_the_same_queries_however_many_autoscalers(n: int) -> None:
    kube = FakeKube(autoscalers={f"m{i}": autoscaler(f"m{i}") for i in range(n)},
                    deployments={f"m{i}": [2, 2, 1] for i in range(n)})
    prom = FakePrometheus(rates={f"m{i}": 5.0 for i in range(n)})
    ctrl = Controller(kube, prom, backfill_s=0)
    run(ctrl, prom, 1_000_000.0, 1)
    # The pods' series (samples over the window, instant count) + the vLLM preset's 8
    # signal queries (p50/p95/p99 share one bucket query): 2 + 8.
    assert prom.queries == 10
    assert len(kube.statuses) == n


def test_an_invalid_spec_is_reported_once_per_generation() -> None:
    kube, prom, ctrl = world()
    kube.autoscalers["chat"] = autoscaler("chat", minReplicas=9, maxReplicas=3)
    run(ctrl, prom, 1_000_000.0, 3)
    invalid = [m for _, r, m in kube.events if r == "InvalidSpec"]
    assert len(invalid) == 1 and "minReplicas must be <= maxReplicas" in invalid[0]
    assert kube.statuses["chat"][-1]["conditions"][0]["reason"] == "InvalidSpec"
    kube.autoscalers["chat"] = autoscaler("chat", generation=2, minReplicas=9, maxReplicas=4)
    run(ctrl, prom, 1_000_100.0, 1)
    assert len([r for _, r, _ in kube.events if r == "InvalidSpec"]) == 2


def test_an_unchanged_status_is_not_rewritten() -> None:
    kube, prom, ctrl = world(replicas=6, rate=20.0)
    run(ctrl, prom, 1_000_000.0, 10)
    # Steady for 135 s: the first write only (the figures are refreshed every 5 minutes),
    # not one PATCH per cycle (which would be 10). Allow one more for the first cycle's
    # reason settling.
    assert len(kube.statuses["chat"]) <= 2


def test_a_missing_workload_is_reported_not_crashed_on() -> None:
    kube, prom, ctrl = world()
    del kube.deployments["chat"]
    run(ctrl, prom, 1_000_000.0, 2)
    assert [r for _, r, _ in kube.events] == ["FailedGetScale"]
    assert kube.statuses["chat"][-1]["reason"] == "FailedGetScale"


def test_an_edited_autoscaler_is_read_again() -> None:
    kube, prom, ctrl = world(replicas=2, rate=20.0)
    run(ctrl, prom, 1_000_000.0, 1)
    assert kube.deployments["chat"][0] == 4
    kube.autoscalers["chat"] = autoscaler("chat", generation=2, maxReplicas=3)
    run(ctrl, prom, 1_000_015.0, 1)
    assert kube.deployments["chat"][0] == 3  # the new maxReplicas holds at once
    assert kube.statuses["chat"][-1]["observedGeneration"] == 2
