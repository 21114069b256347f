"""The twin serving the pods that really exist: kwok pods -> twin -> a real Prometheus.

What Prometheus must see is what it sees of a real vLLM Deployment behind a PodMonitor:
a pod's series appear only once the pod is Ready (a loading model answers no requests and
its /metrics is not scraped yet), start from zero, and vanish when the pod is deleted.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from kubernetes import client as k8s

from autoscaler.sim.profiles import load_profile
from autoscaler.traces.model import Trace
from autoscaler.twin import Twin
from tests.e2e.kwok_cluster import (
    ApiPods,
    KwokCluster,
    gpu_deployment,
    pod_states,
    wait_for,
)
from tests.support.promserver import PrometheusServer

RATE = 8.0
COLD_S = 3.0


@pytest.fixture
def twin(api_client: k8s.ApiClient, namespace: str) -> Iterator[tuple[Twin, int]]:
    profile = dataclasses.replace(load_profile("llama3-8b-h100"), cold_start_s=COLD_S,
                                  cold_start_jitter_s=0.0)
    trace = Trace(name="flat", duration_s=3600.0, rates_rps=np.full(3600, RATE),
                  resolution_s=1.0)
    tw = Twin.from_trace(trace, profile, namespace=namespace, workload="chat",
                         follow_pods=True)
    port = tw.start()
    tw.follow(ApiPods(api_client, namespace), interval_s=0.2)
    yield tw, port
    tw.stop()


def _first_samples(prom: PrometheusServer, namespace: str, since: float
                   ) -> dict[str, tuple[float, float]]:
    """pod -> (timestamp, value) of its first request_success sample since ``since``."""
    r = requests.get(f"{prom.url}/api/v1/query_range", timeout=10, params={
        "query": f'vllm:request_success_total{{namespace="{namespace}"}}',
        "start": since, "end": time.time(), "step": "0.5"})
    out = {}
    for series in r.json()["data"]["result"]:
        ts, v = series["values"][0]
        out[series["metric"]["pod"]] = (float(ts), float(v))
    return out


def test_prometheus_sees_only_ready_pods_new_series_from_zero_and_vanishing_series(
        api_client: k8s.ApiClient, namespace: str, kwok_cluster: KwokCluster,
        twin: tuple[Twin, int]) -> None:
    tw, port = twin
    prom = PrometheusServer([f"127.0.0.1:{port}"]).start()
    try:
        t0 = time.time()
        gpu_deployment(api_client, namespace, "chat", 2, pool="h100", cold_start_s=COLD_S)
        ready_at: dict[str, float] = {}

        def poll_ready(n: int) -> bool:
            for p in pod_states(api_client, namespace, "chat"):
                if p.ready:
                    ready_at.setdefault(p.name, time.time())
                elif p.phase == "Running" and not p.deleting:
                    # Starting: the twin must export nothing for it and route nothing to it.
                    assert p.name not in tw.truth()["targets"][0]["pods"]
            return len(ready_at) >= n

        wait_for("2 Ready pods", lambda: poll_ready(2), cluster=kwok_cluster)
        wait_for("the twin to serve them", lambda: tw.replicas()["chat"]["ready"] == 2)
        # Requests go to Ready pods only, all of them: 8/s in, 8/s counted over the pods.
        q = (f'sum(rate(vllm:time_to_first_token_seconds_count{{namespace="{namespace}"}}'
             f'[5s]))')
        prom.wait_for(q, lambda r: bool(r) and abs(float(r[0]["value"][1]) - RATE) < 0.15 * RATE)

        k8s.AppsV1Api(api_client).patch_namespaced_deployment_scale(
            "chat", namespace, {"spec": {"replicas": 3}})
        wait_for("a third Ready pod", lambda: poll_ready(3), cluster=kwok_cluster)
        prom.wait_for(f'vllm:request_success_total{{namespace="{namespace}"}}',
                      lambda r: {s["metric"]["pod"] for s in r} == set(ready_at))
        first = wait_for("every Ready pod's series in a range query", lambda: (
            f if set(f := _first_samples(prom, namespace, t0)) == set(ready_at) else None))
        assert set(first) == set(ready_at)  # a series per Ready pod, no other
        for pod, (ts, value) in first.items():
            # No sample before the pod was Ready (0.5-s query step, 0.2-s pod poll: 1 s).
            assert ts >= ready_at[pod] - 1.0, (pod, ts - ready_at[pod])
            # From zero: at most what the whole fleet served between Ready and the sample
            # (8/s), plus the scrape interval and the query step (2 s).
            assert value <= RATE * (ts - ready_at[pod] + 2.0), (pod, value)

        k8s.AppsV1Api(api_client).patch_namespaced_deployment_scale(
            "chat", namespace, {"spec": {"replicas": 1}})
        wait_for("one pod left", lambda: len(pod_states(api_client, namespace, "chat")) == 1,
                 cluster=kwok_cluster)
        survivor = pod_states(api_client, namespace, "chat")[0].name
        # The two deleted pods' series go stale at the next scrape: an instant query
        # sees only the survivor.
        result = prom.wait_for(
            f'vllm:request_success_total{{namespace="{namespace}"}}',
            lambda r: len(r) == 1)
        assert result[0]["metric"]["pod"] == survivor
        assert tw.replicas()["chat"]["ready"] == 1
    finally:
        prom.cleanup()
