"""Pods that start, become ready, go away, and run out of GPUs: kube-scheduler + kwok.

Timings are measured on our side (the API server keeps condition times to the second):
each test polls the pods every 0.1 s and records when it first saw each state.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s

from autoscaler.controller.schedulable import REASON_GPU, assess, cap_scale_up
from tests.e2e.kwok_cluster import (
    L4,
    KwokCluster,
    gpu_deployment,
    pod_states,
    wait_for,
)

COLD_S, JITTER_S = 3.0, 1.0


def _scale(api: k8s.ApiClient, namespace: str, name: str, n: int) -> None:
    k8s.AppsV1Api(api).patch_namespaced_deployment_scale(name, namespace,
                                                         {"spec": {"replicas": n}})


def test_pods_run_unready_at_once_and_turn_ready_after_their_cold_start(
        api_client: k8s.ApiClient, namespace: str, kwok_cluster: KwokCluster) -> None:
    created = time.monotonic()
    gpu_deployment(api_client, namespace, "chat", 3, pool="h100", cold_start_s=COLD_S,
                   jitter_s=JITTER_S)
    running: dict[str, float] = {}
    ready: dict[str, float] = {}
    deadline = created + 30
    while time.monotonic() < deadline and len(ready) < 3:
        now = time.monotonic()
        for p in pod_states(api_client, namespace, "chat"):
            if p.phase == "Running":
                running.setdefault(p.name, now)
                assert p.node is not None and p.node.startswith("gpu-h100-")
            if p.ready:
                ready.setdefault(p.name, now)
        time.sleep(0.1)
    assert len(ready) == 3, (running, ready, kwok_cluster.log_tails())
    for name, t_ready in ready.items():
        assert name in running and running[name] < t_ready  # seen Running and not Ready first
        # Scheduled and Running within 5 s of the Deployment's creation (ReplicaSet
        # controller, scheduler, kwok: well under a second each on an idle machine; the
        # margin is for a loaded one).
        assert running[name] - created < 5.0, (name, running[name] - created)
        # Ready after the cold start drawn in [3, 4) s from the moment kwok started it; we
        # see each change up to one 0.1-s poll plus one LIST late (up to ~1 s on a loaded
        # machine): [2, 5] s, still far from "at once".
        unready = t_ready - running[name]
        assert COLD_S - 1.0 <= unready <= COLD_S + JITTER_S + 1.0, (name, unready)


def test_scaled_down_pods_go_away_at_once(
        api_client: k8s.ApiClient, namespace: str, kwok_cluster: KwokCluster) -> None:
    gpu_deployment(api_client, namespace, "chat", 3, pool="h100", cold_start_s=0.5)
    wait_for("3 Ready pods", lambda: sum(p.ready for p in pod_states(api_client, namespace,
                                                                      "chat")) == 3,
             cluster=kwok_cluster)
    _scale(api_client, namespace, "chat", 1)
    started = time.monotonic()
    wait_for("one pod left", lambda: len(pod_states(api_client, namespace, "chat")) == 1,
             timeout_s=10, cluster=kwok_cluster)
    assert time.monotonic() - started < 5


def test_pods_beyond_the_gpu_pool_stay_pending_and_are_reported_unschedulable(
        api_client: k8s.ApiClient, namespace: str, kwok_cluster: KwokCluster) -> None:
    # The L4 pool has 1 node x 4 GPUs; six pods of one GPU each: two cannot be placed.
    assert L4.gpus == 4
    gpu_deployment(api_client, namespace, "small", 6, pool="l4", cold_start_s=0.5)

    def settled() -> list[Any] | None:
        pods = pod_states(api_client, namespace, "small")
        ok = (len(pods) == 6 and sum(p.ready for p in pods) == 4
              and sum(p.unschedulable is not None for p in pods) == 2)
        return pods if ok else None

    pods = wait_for("4 Ready and 2 unschedulable pods", settled, cluster=kwok_cluster)
    pending = [p for p in pods if p.unschedulable is not None]
    assert all(p.phase == "Pending" and p.node is None for p in pending)
    assert all("Insufficient nvidia.com/gpu" in (p.unschedulable or "") for p in pending)
    # What the controller reads, from the very same pods as the API serves them.
    raw = [api_client.sanitize_for_serialization(p) for p in
           k8s.CoreV1Api(api_client).list_namespaced_pod(namespace,
                                                          label_selector="app=small").items]
    found = assess(raw)
    assert (found.pods, found.unschedulable, found.insufficient_gpu) == (6, 2, 2)
    assert found.reason == REASON_GPU
    assert cap_scale_up(9, 6, found) == 6  # more pods would only queue
    # Asking for what fits: the ReplicaSet deletes the unscheduled pods first, nothing is
    # Pending, and the cap lifts.
    _scale(api_client, namespace, "small", 4)
    wait_for("4 pods, none pending", lambda: (
        len(ps := pod_states(api_client, namespace, "small")) == 4
        and all(p.ready for p in ps)), cluster=kwok_cluster)
    raw = [api_client.sanitize_for_serialization(p) for p in
           k8s.CoreV1Api(api_client).list_namespaced_pod(namespace,
                                                          label_selector="app=small").items]
    assert not assess(raw).exhausted
