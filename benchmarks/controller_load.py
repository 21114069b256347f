"""CPU and memory of one controller replica managing 10, 100 and 1,000 autoscalers at a
15-s sync period, against a real API server (tests/e2e's control plane, built from the Go
modules) and a real Prometheus.

    .venv/bin/python benchmarks/controller_load.py [--counts 10,100,1000] [--measure 120]

Per count: a fresh control plane; N Deployments and N InferenceAutoscalers (Scale mode,
predictive); an exporter serving N workloads; the controller as its ServiceAccount, started
once Prometheus holds full rate() windows. Its CPU time (utime + stime from /proc) is read
over the first minute (every autoscaler's first decision, status and Events) and then over
the measuring window (steady state), with its peak RSS (VmHWM). The goal (issue 5): under
10% of one core and under 300 MiB at 1,000.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from kube import Binaries, ControlPlane, binaries_dir, build_binaries, free_port  # noqa: E402
from kubernetes import client as k8s  # noqa: E402
from kubernetes import utils as k8s_utils  # noqa: E402
from promserver import PrometheusServer, ScriptedExporter  # noqa: E402

GROUP, VERSION, PLURAL = "inference.autoscaler.dev", "v1alpha1", "inferenceautoscalers"
NS = "bench"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(n: int, measure_s: float, binaries: Binaries, profile: str | None = None,
        warmup_s: float = 60.0) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix=f"ctl-bench-{n}-"))
    plane = ControlPlane(binaries=binaries, workdir=work)
    plane.start()
    exporter = ScriptedExporter().start()
    prom = None
    proc = None
    try:
        api = plane.api_client()
        for name in ("namespace.yaml", "crd.yaml", "serviceaccount.yaml", "rbac.yaml"):
            k8s_utils.create_from_yaml(api, str(ROOT / "deploy" / name))
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        time.sleep(2)  # CRD established
        apps, crs = k8s.AppsV1Api(api), k8s.CustomObjectsApi(api)
        for i in range(n):
            wl = f"m{i}"
            labels = {"namespace": NS, "workload": wl, "pod": f"{wl}-0"}
            exporter.set_gauge("vllm:num_requests_running", labels, 4.0)
            exporter.set_gauge("vllm:num_requests_waiting", labels, 0.0)
            exporter.set_histogram_rates("vllm:time_to_first_token_seconds", labels,
                                         {"0.5": 2.0, "+Inf": 3.0}, sum_rate=0.9)
            apps.create_namespaced_deployment(NS, {
                "metadata": {"name": wl},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": wl}},
                         "template": {"metadata": {"labels": {"app": wl}},
                                      "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
            crs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceAutoscaler",
                "metadata": {"name": wl},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": wl},
                         "policy": "predictive", "minReplicas": 1, "maxReplicas": 8,
                         "capacity": {"requestsPerSecond": 4.0, "concurrency": 24},
                         "syncPeriodSeconds": 15, "metricsSource": {"window": "30s"}}})
        prom = PrometheusServer([exporter.address], scrape_interval_s=5.0).start()
        time.sleep(40)  # full 30-s rate() windows before the first decision: no start-up ramp
        kubeconfig = plane.service_account_kubeconfig("inference-autoscaler",
                                                      "inference-autoscaler-controller")
        log = open(work / "controller.log", "wb")  # noqa: SIM115
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        proc = subprocess.Popen(
            [sys.executable, *prof, "-m", "autoscaler.cli", "controller", "--kubeconfig",
             str(kubeconfig), "--prometheus-url", prom.url, "--metrics-host", "127.0.0.1",
             "--metrics-port", str(free_port()), "--backfill-seconds", "0"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        s0, w0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(warmup_s)  # start-up: first decisions, first status for every autoscaler
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(measure_s)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        status_ok = sum(1 for o in crs.list_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL)["items"] if o.get("status", {}).get("desiredReplicas"))
        return {"n": n, "startup_pct": 100 * (c0 - s0) / (t0 - w0),
                "cpu_pct": 100 * (c1 - c0) / (t1 - t0), "rss_mib": peak_rss_mib(proc.pid),
                "with_status": status_ok}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if prom is not None:
            prom.cleanup()
        exporter.stop()
        plane.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="10,100,1000")
    ap.add_argument("--measure", type=float, default=120.0, help="seconds measured per count")
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds of start-up (first decision and status of every autoscaler) "
                         "reported apart")
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="run the controller under cProfile, writing FILE (last count only)")
    args = ap.parse_args()
    binaries = Binaries.in_dir(binaries_dir())
    if binaries.missing():
        binaries = build_binaries()
    print("| autoscalers | CPU, first minute | CPU, steady (% of one core) | peak RSS "
          "| with status |")
    print("|---:|---:|---:|---:|---:|")
    for n in (int(x) for x in args.counts.split(",")):
        r = run(n, args.measure, binaries, args.profile, args.warmup)
        print(f"| {n:,} | {r['startup_pct']:.1f}% | {r['cpu_pct']:.1f}% | {r['rss_mib']:.0f} MiB "
              f"| {r['with_status']:,} |", flush=True)


if __name__ == "__main__":
    main()
