"""A pod lifecycle for the end-to-end tier: kube-scheduler and kwok next to the control plane.

``ControlPlane`` (kube.py) has no kubelet, so its pods stay Pending. ``KwokCluster`` adds

* the real ``kube-scheduler`` (same Kubernetes pin as the API server), which binds pods to
  nodes by their resource requests: a pod asking for ``nvidia.com/gpu`` beyond what the
  nodes have stays Pending with ``Insufficient nvidia.com/gpu``, exactly as in a cluster;
* ``kwok``, which plays every node's kubelet with our Stages (``kwok/stages.yaml``): a
  scheduled pod is Running and not Ready at once, and Ready after the cold start its
  annotations give (``cold_start_annotations``); a deleted pod goes away at once;
* GPU nodes (``GpuPool``): capacity ``nvidia.com/gpu``, the product labels NVIDIA's GPU
  feature discovery sets (``nvidia.com/gpu.product``, ``nvidia.com/gpu.count``), and the
  ``nvidia.com/gpu=present:NoSchedule`` taint GPU node pools carry. The taint keeps the
  other e2e tests' pods (no toleration) Pending, as they were before this tier existed.
  The ``not-ready`` taint new nodes get is lifted by the fixture (see ``add_pool``).

Both processes run on 127.0.0.1 with the admin kubeconfig (the tests exercise the
autoscaler's RBAC, not the scheduler's). A process that cannot start fails the fixture
with its name and log file, within ``start_timeout_s``.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from autoscaler.cli.twin import ClusterPods
from autoscaler.controller.kube import KubeClient
from tests.e2e.kube import (
    BUILD_SCRIPT,
    ControlPlane,
    ControlPlaneError,
    _Process,
    _tail,
    build_binaries,
)
from tests.support.ports import free_port
from tests.support.wait import wait_until

HERE = Path(__file__).resolve().parent
STAGES = HERE / "kwok" / "stages.yaml"
COLD_START = "inference.autoscaler.dev/cold-start"
COLD_START_MAX = "inference.autoscaler.dev/cold-start-max"
GPU = "nvidia.com/gpu"
GPU_PRODUCT = "nvidia.com/gpu.product"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
POOL_LABEL = "e2e.autoscaler.dev/pool"


@dataclass(frozen=True)
class GpuPool:
    """``nodes`` nodes of ``gpus_per_node`` GPUs of ``product``; pods pick a pool by its
    ``POOL_LABEL`` value in their nodeSelector."""

    name: str
    product: str
    nodes: int
    gpus_per_node: int

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


def kwok_path() -> Path:
    out = subprocess.run([str(BUILD_SCRIPT), "--print-kwok"], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip())


def scheduler_path(plane: ControlPlane) -> Path:
    return plane.binaries.kube_apiserver.parent / "kube-scheduler"


def ensure_binaries(plane: ControlPlane, log_path: Path) -> tuple[Path, Path]:
    """kube-scheduler and kwok, built by build.sh if missing (minutes the first time)."""
    sched, kwok = scheduler_path(plane), kwok_path()
    if not (sched.exists() and kwok.exists()):
        build_binaries(log_path=log_path)
    for path in (sched, kwok):
        if not path.exists():
            raise ControlPlaneError(f"{BUILD_SCRIPT} did not produce {path}; log {log_path}")
    return sched, kwok


class KwokCluster:
    """kube-scheduler + kwok against ``plane``; ``add_pool`` registers GPU nodes."""

    def __init__(self, plane: ControlPlane, workdir: Path, *, scheduler: Path, kwok: Path,
                 start_timeout_s: float = 60.0) -> None:
        self.plane = plane
        self.workdir = workdir
        self.start_timeout_s = start_timeout_s
        kubeconfig = str(plane.kubeconfig_path)
        self.scheduler_port = free_port()
        self._scheduler = _Process("kube-scheduler", [
            str(scheduler),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.scheduler_port}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ], workdir / "kube-scheduler.log")
        self._kwok = _Process("kwok", [
            str(kwok),
            f"--kubeconfig={kubeconfig}",
            "--manage-all-nodes=true",
            f"--config={STAGES}",
            # Pod IPs from a range nothing routes to: no pod is ever dialled.
            "--cidr=10.244.0.1/16",
            "--node-ip=127.0.0.1",
        ], workdir / "kwok.log")
        self.pools: dict[str, GpuPool] = {}

    @property
    def log_paths(self) -> dict[str, Path]:
        return {p.name: p.log_path for p in (self._scheduler, self._kwok)}

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(f"---- {name} ({path}), last {lines} lines ----\n{_tail(path, lines)}"
                         for name, path in self.log_paths.items())

    def start(self) -> None:
        try:
            self._scheduler.start()
            self._wait("kube-scheduler /healthz", self._scheduler_healthy, self._scheduler)
            self._kwok.start()
            # kwok is up when it makes a node Ready: checked by add_pool's wait.
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in (self._kwok, self._scheduler):
            process.stop(grace_s=5)

    def add_pool(self, pool: GpuPool) -> None:
        """Register the pool's nodes and wait until kwok reports them Ready."""
        core = k8s.CoreV1Api(self.plane.api_client())
        names = [f"gpu-{pool.name}-{i}" for i in range(pool.nodes)]
        resources = {"cpu": "96", "memory": "1024Gi", "pods": "110",
                     GPU: str(pool.gpus_per_node)}
        for name in names:
            body = {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                           "type": "kwok", POOL_LABEL: pool.name,
                           GPU_PRODUCT: pool.product,
                           "nvidia.com/gpu.count": str(pool.gpus_per_node)},
                "annotations": {"kwok.x-k8s.io/node": "fake"}},
                "spec": {"taints": [GPU_TAINT]},
                # A kubelet registers its node with its capacity; so do we.
                "status": {"capacity": resources, "allocatable": resources}}
            try:
                core.create_node(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        self.pools[pool.name] = pool

        def all_ready() -> bool:
            nodes = core.list_node(label_selector=f"{POOL_LABEL}={pool.name}").items
            return len(nodes) == pool.nodes and all(
                any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ())
                and (n.status.allocatable or {}).get(GPU) == str(pool.gpus_per_node)
                for n in nodes)

        self._wait(f"kwok to make the {pool.nodes} nodes of pool {pool.name} Ready", all_ready,
                   self._kwok)
        # The API server's TaintNodesByCondition admission gives every new node the
        # node.kubernetes.io/not-ready:NoSchedule taint; the node-lifecycle controller lifts
        # it once the node is Ready. That controller stays off here (without kubelet
        # heartbeats it would evict every pod after 40 s), so we lift it as it would.
        for name in names:
            core.patch_node(name, {"spec": {"taints": [GPU_TAINT]}})

    def _wait(self, what: str, ready: Callable[[], bool], process: _Process) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if (code := process.exit_code()) is not None:
                raise ControlPlaneError(
                    f"{process.name} exited with code {code} while waiting for {what}; "
                    f"log {process.log_path}\n{_tail(process.log_path, 30)}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.start_timeout_s:g} s waiting for {what} "
                    f"({process.name}, log {process.log_path})\n{_tail(process.log_path, 30)}")
            time.sleep(0.2)

    def _scheduler_healthy(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # its self-signed serving cert, on loopback
        try:
            url = f"https://127.0.0.1:{self.scheduler_port}/healthz"
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False


# --- workloads ------------------------------------------------------------------------


def cold_start_annotations(cold_start_s: float, jitter_s: float = 0.0) -> dict[str, str]:
    """A pod's cold start for our kwok Stages: uniform in [cold_start_s, cold_start_s +
    jitter_s), the replay profile's ``cold_start_s + uniform(0, cold_start_jitter_s)``."""
    ms = round(cold_start_s * 1000)
    return {COLD_START: f"{ms}ms", COLD_START_MAX: f"{ms + round(jitter_s * 1000)}ms"}


def gpu_deployment(api: k8s.ApiClient, namespace: str, name: str, replicas: int, *,
                   pool: str, cold_start_s: float, jitter_s: float = 0.0,
                   gpus: int = 1) -> None:
    """A Deployment of inference pods: ``gpus`` GPUs each, on ``pool``'s nodes, with the
    cold start in its pod annotations. Labels ``app`` and ``workload`` are ``name``."""
    labels = {"app": name, "workload": name}
    k8s.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            # Scale-downs and roll-outs as the autoscaler's tests expect: no surge.
            "template": {
                "metadata": {"labels": labels,
                             "annotations": cold_start_annotations(cold_start_s, jitter_s)},
                "spec": {
                    "nodeSelector": {POOL_LABEL: pool},
                    "tolerations": [{"key": GPU, "operator": "Exists",
                                     "effect": "NoSchedule"}],
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "vllm", "image": "vllm/vllm-openai:latest",
                        "resources": {"requests": {GPU: str(gpus)},
                                      "limits": {GPU: str(gpus)}}}]}}}})


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    node: str | None
    ready: bool
    unschedulable: str | None
    """The scheduler's message when PodScheduled is False/Unschedulable."""
    created: float
    deleting: bool


def pod_states(api: k8s.ApiClient, namespace: str, app: str) -> list[PodState]:
    out = []
    for p in k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items:
        conds = {c.type: c for c in (p.status.conditions or ())}
        sched = conds.get("PodScheduled")
        ready = conds.get("Ready")
        out.append(PodState(
            name=p.metadata.name, phase=p.status.phase or "", node=p.spec.node_name,
            ready=bool(ready is not None and ready.status == "True"),
            unschedulable=(sched.message if sched is not None and sched.status == "False"
                           and sched.reason == "Unschedulable" else None),
            created=p.metadata.creation_timestamp.timestamp(),
            deleting=p.metadata.deletion_timestamp is not None))
    return out


class ApiPods(ClusterPods):
    """The twin's ``PodSource`` for one namespace, as ``autoscaler twin --kubeconfig`` runs
    it (``autoscaler.cli.twin.ClusterPods``): workload (pod label ``workload``) -> names of
    its Ready pods that are not being deleted; None when the API cannot be read."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        super().__init__(KubeClient(api, component="autoscaler-twin"), namespace,
                         "workload")


# --- fixtures (imported by the tests that use them) ------------------------------------

H100 = GpuPool("h100", "NVIDIA-H100-80GB-HBM3", nodes=4, gpus_per_node=8)
"""The closed loop's pool: 32 GPUs, more than any test's maxReplicas."""
L4 = GpuPool("l4", "NVIDIA-L4", nodes=1, gpus_per_node=4)
"""A small pool that runs out: 4 GPUs."""


@pytest.fixture(scope="session")
def kwok_cluster(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[KwokCluster]:
    workdir = tmp_path_factory.mktemp("kwok")
    sched, kwok = ensure_binaries(control_plane, workdir / "build.log")
    cluster = KwokCluster(control_plane, workdir, scheduler=sched, kwok=kwok)
    cluster.start()
    try:
        for pool in (H100, L4):
            cluster.add_pool(pool)
        yield cluster
    finally:
        cluster.stop()


def wait_for(what: str, probe: Callable[[], Any], *, timeout_s: float = 30.0,
             interval_s: float = 0.1, cluster: KwokCluster | None = None) -> Any:
    """``wait_until``, adding the scheduler's and kwok's log tails to a timeout."""
    try:
        return wait_until(what, probe, timeout_s=timeout_s, interval_s=interval_s)
    except AssertionError as exc:
        if cluster is None:
            raise
        raise AssertionError(f"{exc}\n{cluster.log_tails()}") from None
