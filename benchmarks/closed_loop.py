"""Replay against live, side by side: the closed loop of tests/e2e/test_closed_loop_e2e.py
as figures.

    .venv/bin/python -m benchmarks.closed_loop [--factor 15] [--minutes 20] [--modes Scale,Metrics]

Starts a control plane (etcd, kube-apiserver, kube-controller-manager) plus kube-scheduler
and kwok with GPU nodes (binaries from tests/e2e/cluster/build.sh), installs deploy/'s CRD
and RBAC, then per mode: the twin plays the compressed Azure conversation trace against a
Deployment whose pods kwok starts with the profile's (compressed) cold start, a real
Prometheus scrapes it, and ``autoscaler controller`` scales (Scale) or a stock HPA follows it
(Metrics). The replay runs the same compressed trace, spec and profile. Prints GPU-hours,
attainment and the replica trajectories of both, with the tolerances the e2e test applies,
and a broken replay (capacity misstated) against the Scale-mode run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time
import uuid
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import utils as k8s_utils

from autoscaler.controller.external_metrics import DESIRED_REPLICAS
from autoscaler.twin.closed_loop import Tolerances, compare
from tests.e2e.kube import Binaries, ControlPlane, binaries_dir, build_binaries
from tests.e2e.kwok_cluster import H100, KwokCluster, ensure_binaries
from tests.e2e.kwok_loop import (
    ExternalMetricsController,
    azure_scenario,
    calibrated_replay,
    controller_flags,
    live_run,
    replay_run,
    trajectory_table,
)
from tests.support.controller import SA_NAME, SA_NAMESPACE
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]


def install(plane: ControlPlane, api: k8s.ApiClient) -> Path:
    for name in ("namespace.yaml", "crd.yaml", "serviceaccount.yaml", "rbac.yaml"):
        k8s_utils.create_from_yaml(api, str(ROOT / "deploy" / name))
    ext = k8s.ApiextensionsV1Api(api)
    deadline = time.monotonic() + 60
    while not any(c.type == "Established" and c.status == "True" for c in (
            ext.read_custom_resource_definition(
                "inferenceautoscalers.inference.autoscaler.dev").status.conditions or [])):
        if time.monotonic() > deadline:
            raise SystemExit("the CRD never became Established")
        time.sleep(0.5)
    return plane.service_account_kubeconfig(SA_NAMESPACE, SA_NAME)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--factor", type=float, default=15.0)
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--modes", default="Scale,Metrics")
    args = ap.parse_args()
    sc = azure_scenario(factor=args.factor, minutes=args.minutes)
    t0 = time.monotonic()
    seeds = [replay_run(sc, seed=s) for s in range(8)]
    att = [r.attainment for r in seeds]
    gpu = [r.gpu_hours for r in seeds]
    tol = Tolerances(attainment_abs=max(0.05, 2 * (max(att) - min(att))),
                     gpu_hours_rel=max(0.10, 2 * (max(gpu) - min(gpu)) / gpu[0]))
    print(f"scenario: {sc.trace.name}, compressed {sc.factor:g}x -> {sc.duration_s:g} s; "
          f"cold start {sc.profile.cold_start_s:g}+U(0,{sc.profile.cold_start_jitter_s:g}) s,"
          f" sync {sc.spec['syncPeriodSeconds']:g} s, scrape {sc.scrape_s:g} s, window "
          f"{sc.window_s:g} s, start {sc.initial} replicas")
    print(f"replay over 8 seeds: attainment {min(att):.4f}..{max(att):.4f}, GPU-hours "
          f"{min(gpu):.4f}..{max(gpu):.4f} ({time.monotonic() - t0:.1f} s for 8 replays)")
    print(f"tolerances: {tol}")

    binaries = Binaries.in_dir(binaries_dir())
    if binaries.missing():
        binaries = build_binaries()
    work = Path(tempfile.mkdtemp(prefix="closed-loop-"))
    plane = ControlPlane(binaries=binaries, workdir=work)
    plane.start()
    cluster = None
    try:
        sched, kwok = ensure_binaries(plane, work / "build.log")
        cluster = KwokCluster(plane, work, scheduler=sched, kwok=kwok)
        cluster.start()
        cluster.add_pool(H100)
        api = plane.api_client()
        kubeconfig = install(plane, api)
        scale_run = None
        for mode in args.modes.split(","):
            ns = f"bench-{mode.lower()}"
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
            # Pods are refused until the serviceaccount controller creates "default".
            wait_until(f"the default ServiceAccount of {ns}", lambda ns=ns: bool(
                k8s.CoreV1Api(api).list_namespaced_service_account(
                    ns, field_selector="metadata.name=default").items))
            if mode == "Scale":
                from tests.support.controller import ControllerProcess

                def start(url: str, ns: str = ns) -> ControllerProcess:
                    return ControllerProcess(kubeconfig, url, "scale", work,
                                             extra=controller_flags(ns, "scale"))
                live = live_run(api, ns, sc, start_controller=start, mode="Scale")
                scale_run = live.run
                tol_mode = tol
            else:
                def start_m(url: str, ns: str = ns) -> ExternalMetricsController:
                    return ExternalMetricsController(
                        plane, api, kubeconfig, url, work, namespace=ns,
                        service_ns=f"bench-ext-{uuid.uuid4().hex[:6]}", identity="metrics")
                live = live_run(api, ns, sc, start_controller=start_m, mode="Metrics",
                                hpa_metric=DESIRED_REPLICAS)
                tol_mode = dataclasses.replace(tol, max_lag_s=tol.max_lag_s + 1)
            # The replay at the mode's live latency (the HPA's sync adds 1 s, then fitted).
            mode_sc = sc if mode == "Scale" else azure_scenario(
                factor=args.factor, minutes=args.minutes, hpa=True)
            mode_replay, added = calibrated_replay(mode_sc, live.run, tol_mode)
            cmp = compare(live.run, mode_replay, sc.duration_s, tol_mode)
            print(f"\n== {mode} mode: live vs replay (replay latency "
                  f"{mode_sc.actuation_s:.2f} + {added:.2f} s) ==\n{cmp.table()}\n"
                  f"{trajectory_table(live.run, mode_replay, sc.duration_s)}\n"
                  f"rescale events: {len(live.events)}, most pods loading at once: "
                  f"{live.max_unready}")
        if scale_run is not None:
            spec = copy.deepcopy(sc.spec)
            spec["metrics"][0]["target"]["value"] = 13
            spec["capacity"]["requestsPerSecond"] = 13
            broken, _ = calibrated_replay(sc, scale_run, tol, spec=spec)
            cmp = compare(scale_run, broken, sc.duration_s, tol)
            print(f"\n== broken replay (capacity 13 req/s instead of 10) vs live Scale ==\n"
                  f"{cmp.table()}\n{trajectory_table(scale_run, broken, sc.duration_s)}")
    finally:
        if cluster is not None:
            cluster.stop()
        plane.stop()
    print(f"\ntotal {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
