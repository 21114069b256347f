"""The control loop's safety rules, with a fake cluster and a fake Prometheus in memory.

The fakes keep real state (a workload's replicas and resourceVersion, written statuses,
recorded Events) so each test reads like an operator's story. The same rules are proven
again against a real API server in tests/e2e.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from autoscaler.controller.kube import ApiUnavailable, Competitor, Conflict, NotFound, ScaleInfo
from autoscaler.controller.loop import Controller
from autoscaler.controller.resource import TargetRef
from autoscaler.controller.settings import Limits
from autoscaler.metrics.source import QueryError, RangeSeries, Sample
from tests.support.promfake import MeaningPrometheus

NS = "llm"


@dataclass
class FakeKube:
    autoscalers: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, list[int]] = field(default_factory=dict)
    """name -> [replicas, ready, resourceVersion]."""
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    scale_writes: list[tuple[str, int]] = field(default_factory=list)
    competitors: list[Competitor] = field(default_factory=list)
    competitor_lists: int = 0
    gpus: int | None = None
    """A GPU pool of this many GPUs (one per pod) behind every workload: pods beyond it stay
    Pending as unschedulable, the first ``gpus`` are ready at once. None: no such limit (the
    ready counts are what the test sets)."""
    starting: int = 0
    """Of the scheduled pods, this many are Running but not yet Ready (a cold start)."""
    pod_lists: int = 0
    pods_fail: bool = False
    """Pod LISTs fail as a flaky API server does (ApiUnavailable)."""

    def _ready(self, name: str) -> int:
        replicas, ready, _ = self.deployments[name]
        if self.gpus is None:
            return ready
        return max(0, min(replicas, self.gpus) - self.starting)

    def list_autoscalers(self, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self.autoscalers.values()]

    def list_workloads(self, kind: str, namespace: str | None
                       ) -> dict[tuple[str, str], ScaleInfo]:
        return {(NS, n): ScaleInfo(r, self._ready(n), str(rv), selector=f"app={n}")
                for n, (r, _, rv) in self.deployments.items()}

    def list_pods(self, namespace: str, selector: str) -> list[Any]:
        self.pod_lists += 1
        if self.pods_fail:
            raise ApiUnavailable("GET pods: HTTP 503: the server is currently unable")
        name = selector.removeprefix("app=")
        replicas = self.deployments[name][0]
        placed = replicas if self.gpus is None else min(replicas, self.gpus)
        ready = self._ready(name)
        pods: list[dict[str, Any]] = []
        for i in range(replicas):
            meta = {"name": f"{name}-{i}", "namespace": namespace}
            if i >= placed:
                pods.append({"metadata": meta, "status": {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": f"0/{self.gpus} nodes are available: {self.gpus} "
                                "Insufficient nvidia.com/gpu."}]}})
            else:
                pods.append({"metadata": meta, "status": {"phase": "Running", "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True" if i < ready else "False"}]}})
        return pods


    def get_scale(self, namespace: str, ref: TargetRef) -> ScaleInfo:
        if ref.name not in self.deployments:
            raise NotFound("no such kind", 404)
        r, _, rv = self.deployments[ref.name]
        return ScaleInfo(r, self._ready(ref.name), str(rv), selector=f"app={ref.name}")

    def set_scale(self, namespace: str, ref: TargetRef, replicas: int, *,
                  expected: int) -> None:
        d = self.deployments[ref.name]
        if d[0] != expected:  # the JSON patch's test of spec.replicas fails
            raise Conflict("testing value /spec/replicas failed: test failed", 409)
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

    def list_competitors(self, namespace: str) -> list[Competitor]:
        self.competitor_lists += 1
        return list(self.competitors)


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
    newest_sample: float | None = None
    """Time of every target's newest sample (None: one second before the query)."""
    broken: str = "\0"
    """Queries containing this text are rejected as bad PromQL (HTTP 400)."""
    hang: threading.Event | None = None
    """While set to an unset Event, queries wait for it (a hung Prometheus)."""
    sent: list[str] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)
    max_in_flight_sources: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    reporting: Callable[[str], int] | None = None
    """Pods reporting per workload (None: two), e.g. its ready count in a fake cluster."""

    def _store(self, t: float) -> MeaningPrometheus:
        store = MeaningPrometheus(up=self.up)
        newest = t - 1.0 if self.newest_sample is None else self.newest_sample
        times = [newest - 15.0 * k for k in range(8)][::-1]
        for wl, rate in self.rates.items():
            n = 2 if self.reporting is None else self.reporting(wl)
            for pod in (f"{wl}-{i}" for i in range(n)):
                labels = {"namespace": NS, "workload": wl, "pod": pod}
                store.add("vllm:time_to_first_token_seconds_count", labels,
                          [(x, 1000.0 + rate / n * x) for x in times])
                store.add("vllm:num_requests_waiting", labels, [(x, 0.0) for x in times])
        return store

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self._fault(promql)
        t = at if at is not None else self.now
        return self._store(t).query(promql, t)

    def query_series(self, promql: str, at: float | None = None) -> list[RangeSeries]:
        self._fault(promql)
        t = at if at is not None else self.now
        return self._store(t).query_series(promql, t)

    def _fault(self, promql: str) -> None:
        """Count the query, then misbehave as told: hang, or reject it as bad PromQL."""
        with self.lock:
            self.queries += 1
            self.sent.append(promql)
        if self.hang is not None:
            selector = promql.partition("{")[2].partition("}")[0]
            with self.lock:
                self.in_flight.add(selector)
                self.max_in_flight_sources = max(self.max_in_flight_sources,
                                                 len(self.in_flight))
            self.hang.wait()
        if self.broken in promql:
            raise QueryError(promql, "1:12: parse error: unexpected identifier")

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
    # 40 req/s at 4 req/s x 0.85 per replica needs ceil(11.76) = 12. A predictive spec
    # without ``behavior`` runs the HPA's default scale-up rules (the larger of +100 % and
    # +4 pods per 15 s), live as in the replay: 2 -> max(4, 6) = 6 -> max(12, 10) = 12.
    kube, prom, ctrl = world(rate=40.0)
    run(ctrl, prom, 1_000_000.0, 1)
    assert kube.scale_writes == [("chat", 6)]
    assert kube.statuses["chat"][-1]["reason"] == "ScaleUpLimit"
    run(ctrl, prom, 1_000_015.0, 2)
    assert kube.deployments["chat"][0] == 12
    assert kube.scale_writes == [("chat", 6), ("chat", 12)]
    status = kube.statuses["chat"][-1]
    assert status["desiredReplicas"] == 12 and status["currentReplicas"] == 12
    assert [r for _, r, _ in kube.events] == ["SuccessfulRescale"] * 2


@pytest.mark.parametrize("mode", [pytest.param("Shadow", id="shadow"),
                                  pytest.param("Metrics", id="metrics")])
def test_modes_other_than_scale_never_write_the_scale(mode: str) -> None:
    kube, prom, ctrl = world(mode=mode, rate=20.0)
    run(ctrl, prom, 1_000_000.0, 4)
    assert kube.scale_writes == []
    assert kube.deployments["chat"][0] == 2
    # 20 req/s needs ceil(20 / 3.4) = 6, within one step of the default rules (2 -> 6)
    assert kube.statuses["chat"][-1]["desiredReplicas"] == 6  # decided and reported


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
    raced = []

    def racing_set(namespace: str, ref: TargetRef, replicas: int, *, expected: int) -> None:
        if not raced:
            raced.append(True)
            kube.scale_by_hand("chat", 7)  # someone writes between our read and our write
        FakeKube.set_scale(kube, namespace, ref, replicas, expected=expected)

    kube.set_scale = racing_set  # type: ignore[method-assign]
    run(ctrl, prom, 1_000_000.0, 1)
    # Their 7 was not overwritten with the 6 decided from 2: decided again from 7 (20 req/s
    # needs 6, but a scale-down from 7 waits out the stabilisation window), nothing written.
    assert kube.deployments["chat"][0] == 7
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
    assert kube.deployments["chat"][0] == 6  # 20 req/s / 3.4 per replica
    kube.autoscalers["chat"] = autoscaler("chat", generation=2, maxReplicas=3)
    run(ctrl, prom, 1_000_015.0, 1)
    assert kube.deployments["chat"][0] == 3  # the new maxReplicas holds at once
    assert kube.statuses["chat"][-1]["observedGeneration"] == 2


# --- faults (issue 14) ------------------------------------------------------------------------


def conditions_of(kube: FakeKube, name: str) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in kube.statuses[name][-1]["conditions"]}


def test_hung_sources_are_waited_for_together_and_only_until_the_deadline() -> None:
    # Three autoscalers on three distinct metrics sources (selectors), Prometheus hung.
    # They used to be queried one after another, each until its timeout; now together, and
    # the cycle stops waiting at the source deadline: every one holds, says why, and the
    # loop goes on.
    names = ("a", "b", "c")
    kube = FakeKube(
        autoscalers={n: autoscaler(n, metricsSource={"selector": f'job="{n}"'})
                     for n in names},
        deployments={n: [8, 8, 1] for n in names})
    prom = FakePrometheus(rates={n: 4.0 for n in names}, hang=threading.Event())
    ctrl = Controller(kube, prom, backfill_s=0,
                      limits=Limits(source_deadline_s=0.2, cycle_deadline_s=5.0))
    try:
        run(ctrl, prom, 1_000_000.0, 1)
        assert prom.max_in_flight_sources == 3  # all three sources asked at once
        assert kube.scale_writes == []  # 4 req/s needs 2 of 8, but no data is not low load
        for n in names:
            metrics = conditions_of(kube, n)["MetricsAvailable"]
            assert metrics["status"] == "False"
            assert metrics["message"] == "metrics source did not answer within 0.2 s"
        # Still hung next cycle: the round in flight is not sent again.
        sent = len(prom.sent)
        run(ctrl, prom, 1_000_015.0, 1)
        assert len(prom.sent) == sent
    finally:
        prom.hang.set()
        ctrl.close()


def test_stale_metrics_make_one_event_however_old_they_get() -> None:
    # The newest sample is stuck at t0 - 61 s: 61, 76, 91 ... s old. The status says how
    # old; the Event says only what is wrong, once.
    kube, prom, ctrl = world(replicas=8, rate=4.0)
    t0 = 1_000_000.0
    prom.newest_sample = t0 - 61.0
    run(ctrl, prom, t0, 5)
    warnings = [m for _, r, m in kube.events if r == "MetricsUnavailable"]
    assert len(warnings) == 1
    assert "s old" not in warnings[0] and "stale" in warnings[0]
    assert kube.scale_writes == []


def test_a_broken_source_is_backed_off_and_the_healthy_one_is_not() -> None:
    kube = FakeKube(autoscalers={
        "good": autoscaler("good"),
        "bad": autoscaler("bad", metricsSource={
            "selector": 'job="bad"',
            "queries": {"queue_depth": "sum by ($by) (broken_metric{$sel})"}})},
        deployments={"good": [2, 2, 1], "bad": [2, 2, 1]})
    prom = FakePrometheus(rates={"good": 20.0, "bad": 20.0}, broken="broken_metric")
    ctrl = Controller(kube, prom, backfill_s=0)
    run(ctrl, prom, 1_000_000.0, 10)  # t = 0, 15, ..., 135 s
    ctrl.close()
    bad = [q for q in prom.sent if 'job="bad"' in q]
    tries = [q for q in bad if "broken_metric" in q]
    good_rounds = [q for q in prom.sent if 'job="bad"' not in q and q.startswith("count by")]
    # Back-off 5, 10, 20, 40, 80 s after failures 1..5, counted from each try: tries at
    # t = 0, 15 (> 0 + 5), 30 (>= 15 + 10), 60 (>= 30 + 20), 105 (>= 60 + 40); the next
    # not before 105 + 80 = 185 s. Without back-off: 10 tries.
    assert len(tries) == 5
    # The first try is a whole round (the request counter's series, the pods count and the
    # vLLM preset's 8, the broken override among them); each retry sends the rejected
    # query alone: 10 + 4 x 1 = 14.
    assert len(bad) == 14
    assert len(good_rounds) == 10
    assert conditions_of(kube, "good")["MetricsAvailable"]["status"] == "True"
    bad = conditions_of(kube, "bad")["MetricsAvailable"]
    assert bad["status"] == "False" and "bad query" in bad["message"]
    assert len([r for n, r, _ in kube.events if n == "bad" and r == "MetricsUnavailable"]) == 1


@pytest.mark.parametrize(("target", "writes"), [
    pytest.param("chat", False, id="an HPA on our workload: no write at all"),
    pytest.param("other", True, id="an HPA on another workload: ours is scaled"),
])
def test_a_competing_autoscaler_is_found_before_the_first_write(target: str,
                                                                writes: bool) -> None:
    kube, prom, ctrl = world(rate=20.0)
    kube.competitors = [Competitor("HorizontalPodAutoscaler", "chat-hpa", "Deployment", target)]
    run(ctrl, prom, 1_000_000.0, 3)
    assert bool(kube.scale_writes) is writes
    active = conditions_of(kube, "chat")["ScalingActive"]
    if writes:
        assert active["status"] == "True"
    else:
        assert (active["status"], active["reason"]) == ("False", "ConflictingAutoscaler")
        assert "HorizontalPodAutoscaler llm/chat-hpa" in active["message"]
        assert [r for _, r, _ in kube.events] == ["ConflictingAutoscaler"]


def test_scaling_resumes_once_the_competitor_is_gone_within_the_list_ttl() -> None:
    kube, prom, ctrl = world(rate=20.0)
    kube.competitors = [Competitor("ScaledObject", "chat-keda", "Deployment", "chat")]
    run(ctrl, prom, 1_000_000.0, 2)  # t = 0, 15
    kube.competitors = []
    run(ctrl, prom, 1_000_030.0, 2)  # t = 30, 45: the list read at t = 0 is still used
    assert kube.scale_writes == []
    run(ctrl, prom, 1_000_060.0, 1)  # t = 60 >= 0 + 60 s TTL: read again, and write
    assert kube.scale_writes == [("chat", 6)]  # 20 req/s / 3.4 per replica
    assert kube.competitor_lists == 2


def test_no_write_once_the_lease_watchdog_says_no() -> None:
    kube, prom, _ = world(rate=20.0)
    ctrl = Controller(kube, prom, may_write=lambda: False)
    run(ctrl, prom, 1_000_000.0, 2)
    assert kube.scale_writes == []
    assert kube.statuses["chat"][-1]["desiredReplicas"] == 6  # decided, not written


def test_the_cycle_deadline_leaves_the_rest_due_for_the_next_cycle() -> None:
    kube = FakeKube(autoscalers={f"m{i}": autoscaler(f"m{i}") for i in range(4)},
                    deployments={f"m{i}": [2, 2, 1] for i in range(4)})
    prom = FakePrometheus(rates={f"m{i}": 5.0 for i in range(4)})
    ticks = iter([0.0, 0.0, 1.0, 2.0, 30.0] + [30.0] * 50)  # past the 20-s deadline at #3
    ctrl = Controller(kube, prom, backfill_s=0, monotonic=lambda: next(ticks))
    first = ctrl.cycle(1_000_000.0)
    assert len(first) < 4
    second = ctrl.cycle(1_000_001.0)  # 1 s later: only the ones the deadline cut off
    assert sorted(o.name for o in first + second) == ["m0", "m1", "m2", "m3"]


def test_the_back_off_survives_cycles_where_its_autoscaler_is_not_due() -> None:
    # "bad" decides every 30 s, "good" every 15 s: every other cycle only "good" is due,
    # and the broken source's back-off must not be forgotten in between.
    kube = FakeKube(autoscalers={
        "good": autoscaler("good"),
        "bad": autoscaler("bad", syncPeriodSeconds=30, metricsSource={
            "selector": 'job="bad"',
            "queries": {"queue_depth": "sum by ($by) (broken_metric{$sel})"}})},
        deployments={"good": [2, 2, 1], "bad": [2, 2, 1]})
    prom = FakePrometheus(rates={"good": 20.0, "bad": 20.0}, broken="broken_metric")
    ctrl = Controller(kube, prom, backfill_s=0)
    run(ctrl, prom, 1_000_000.0, 12)  # t = 0, 15, ..., 165 s; "bad" due at 0, 30, ..., 150
    ctrl.close()
    tries = [q for q in prom.sent if 'job="bad"' in q and "broken_metric" in q]
    full_rounds = [q for q in prom.sent if 'job="bad"' in q and q.startswith("count by")]
    # Due at t = 0, 30, 60, 90, 120, 150; back-off 5, 10, 20, 40, 80 s from each try:
    # tries at 0, 30 (>= 5), 60 (>= 40), 90 (>= 80), 150 (>= 90 + 40 = 130); not 120.
    assert len(tries) == 5
    assert len(full_rounds) == 1  # the first try was a whole round; the rest, one query


def test_a_failed_competitor_check_blocks_that_cycle_only() -> None:
    kube, prom, ctrl = world(rate=20.0)

    def unavailable(namespace: str) -> list[Competitor]:
        raise ApiUnavailable("GET horizontalpodautoscalers: ReadTimeoutError")

    kube.list_competitors = unavailable  # type: ignore[method-assign]
    run(ctrl, prom, 1_000_000.0, 1)
    assert kube.scale_writes == []  # could not look: did not write
    active = conditions_of(kube, "chat")["ScalingActive"]
    assert active["reason"] == "CompetitorCheckFailed" and "cannot check" in active["message"]
    del kube.list_competitors  # answers again
    run(ctrl, prom, 1_000_015.0, 1)
    assert kube.scale_writes == [("chat", 6)]  # 20 req/s / 3.4 per replica


# --- GPUs run out ---------------------------------------------------------------------------

def gpu_world(replicas: int, rate: float, gpus: int, starting: int = 0
              ) -> tuple[FakeKube, FakePrometheus, Controller]:
    """``world`` on a pool of ``gpus`` GPUs, where every ready pod reports metrics."""
    kube, prom, ctrl = world(replicas=replicas, rate=rate)
    kube.gpus, kube.starting = gpus, starting
    prom.reporting = kube._ready
    return kube, prom, ctrl


def capacity_of(kube: FakeKube, name: str) -> dict[str, str]:
    return conditions_of(kube, name)["CapacityAvailable"]


def test_pods_pending_for_gpus_stop_the_scale_up_until_capacity_appears() -> None:
    # 40 req/s at 4 x 0.85 = 3.4 req/s per replica needs ceil(11.8) = 12; the count may at
    # most double per period: 4 -> 8. With 6 GPUs, 6 pods run and 2 stay Pending.
    kube, prom, ctrl = gpu_world(replicas=4, rate=40.0, gpus=6)
    t = run(ctrl, prom, 1_000_000.0, 1)
    assert kube.scale_writes == [("chat", 8)]
    t = run(ctrl, prom, t, 6)
    assert kube.scale_writes == [("chat", 8)]  # 12 is asked for by the policy, not by us
    status = kube.statuses["chat"][-1]
    assert (status["currentReplicas"], status["desiredReplicas"]) == (8, 8)
    assert status["reason"] == "InsufficientGPU"
    cond = capacity_of(kube, "chat")
    assert (cond["status"], cond["reason"]) == ("False", "InsufficientGPU")
    assert "2 of 8 pods cannot be scheduled" in cond["message"]
    warnings = [(r, m) for _, r, m in kube.events if r == "InsufficientGPU"]
    assert len(warnings) == 1  # one Event for the shortage, not one per cycle (6 cycles)
    assert "Insufficient nvidia.com/gpu" in warnings[0][1]
    # Six more GPUs: the 2 Pending pods start, every replica is ready, the cap lifts.
    kube.gpus = 12
    t = run(ctrl, prom, t, 2)
    assert kube.scale_writes == [("chat", 8), ("chat", 12)]
    assert capacity_of(kube, "chat")["status"] == "True"
    assert len([r for _, r, _ in kube.events if r == "InsufficientGPU"]) == 1


def test_a_steady_fleet_costs_no_pod_list() -> None:
    # 6 replicas, all ready, 20 req/s needing ceil(20 / 3.4) = 6: nothing to look for.
    kube, prom, ctrl = world(replicas=6, rate=20.0)
    run(ctrl, prom, 1_000_000.0, 8)
    assert kube.scale_writes == []
    assert kube.pod_lists == 0
    assert capacity_of(kube, "chat")["status"] == "True"


@pytest.mark.parametrize(("static", "more_gpus_at", "lists", "writes"), [
    # 8 replicas on 6 GPUs, 2 Pending; 8 cycles at t = 0, 15, ..., 105 s.
    # Holding at 8: listed at 0 s, reused at 15, 30, 45 (under POD_RECHECK_S = 60 s),
    # listed again at 60 s, reused at 75, 90, 105: 2 LISTs.
    pytest.param(8, None, 2, [], id="hold-lists-once-a-minute"),
    # A scale-up to 12 held at 8 by the shortage: the cap acts, so every cycle lists.
    pytest.param(12, None, 8, [], id="capped-scale-up-lists-every-cycle"),
    # Holding, a 7th GPU before the 15-s cycle: ready 6 -> 7 is new counts, listed at once
    # (15 s), then 60 s after that (75 s): 3 LISTs.
    pytest.param(8, 1, 3, [], id="new-counts-list-at-once"),
    # A scale-down to 3 goes through at 0 s (listed); 3 ready of 3 lists nothing more.
    pytest.param(3, None, 1, [("chat", 3)], id="scale-down-then-all-ready"),
])
def test_pods_are_listed_again_only_when_the_verdict_can_change_a_count(
        static: int, more_gpus_at: int | None, lists: int,
        writes: list[tuple[str, int]]) -> None:
    kube, prom, ctrl = gpu_world(replicas=8, rate=4.0, gpus=6)
    kube.autoscalers["chat"]["spec"].update(policy="static", staticReplicas=static)
    t = 1_000_000.0
    for cycle in range(8):
        if cycle == more_gpus_at:
            kube.gpus = 7
        t = run(ctrl, prom, t, 1)
    assert kube.pod_lists == lists
    assert kube.scale_writes == writes
    if static >= 8:
        # The reused verdict reads as a fresh one: the shortage stands, one Event for it.
        cond = capacity_of(kube, "chat")
        assert (cond["status"], cond["reason"]) == ("False", "InsufficientGPU")
        assert len([r for _, r, _ in kube.events if r == "InsufficientGPU"]) == 1


def test_pods_starting_on_free_gpus_do_not_hold_a_scale_up() -> None:
    # 8 replicas, all scheduled, 3 still in their cold start: not a shortage.
    kube, prom, ctrl = gpu_world(replicas=8, rate=40.0, gpus=20, starting=3)
    run(ctrl, prom, 1_000_000.0, 1)
    assert kube.pod_lists == 1
    assert kube.scale_writes == [("chat", 12)]
    assert capacity_of(kube, "chat")["status"] == "True"
    assert not [r for _, r, _ in kube.events if r == "InsufficientGPU"]


def test_a_failed_pod_list_keeps_the_cap_and_invents_none() -> None:
    kube, prom, ctrl = gpu_world(replicas=4, rate=40.0, gpus=6)
    t = run(ctrl, prom, 1_000_000.0, 3)
    assert kube.scale_writes == [("chat", 8)]
    kube.pods_fail = True
    t = run(ctrl, prom, t, 4)
    assert kube.scale_writes == [("chat", 8)]  # the known shortage still holds the count
    cond = capacity_of(kube, "chat")
    assert (cond["status"], cond["reason"]) == ("Unknown", "PodListFailed")
    assert len([r for _, r, _ in kube.events if r == "InsufficientGPU"]) == 1

    # Never assessed and the LIST fails: no cap is invented, the scale-up goes on.
    kube2, prom2, ctrl2 = gpu_world(replicas=4, rate=40.0, gpus=20)
    kube2.pods_fail = True
    run(ctrl2, prom2, 1_000_000.0, 1)
    assert kube2.scale_writes == [("chat", 8)]


def test_a_scale_down_goes_through_while_pods_are_pending_or_unlisted() -> None:
    # 8 replicas on 6 GPUs and a static policy of 3: the scale-down is written (the
    # ReplicaSet removes the Pending pods first) whether the pods were listed or the LIST
    # fails, and goes all the way: 8 -> 3, never above 8 on the way.
    for fail in (False, True):
        kube, prom, ctrl = gpu_world(replicas=8, rate=4.0, gpus=6)
        kube.autoscalers["chat"]["spec"].update(policy="static", staticReplicas=3)
        kube.pods_fail = fail
        run(ctrl, prom, 1_000_000.0, 40)
        assert kube.scale_writes, f"pods_fail={fail}"
        assert all(n < 8 for _, n in kube.scale_writes), kube.scale_writes
        assert kube.deployments["chat"][0] == 3
