"""CPU and memory of one controller replica managing 10, 100 and 1,000 autoscalers at a
15-s sync period, against a real API server (tests/e2e's control plane, built from the Go
modules) and a real Prometheus.

    .venv/bin/python -m benchmarks.controller_load [--counts 10,100,1000] [--measure 120]
        [--backfill-seconds S] [--readme]
    .venv/bin/python -m benchmarks.controller_load --broken 50 [--cycles 30]

Per count: a fresh control plane; N Deployments and N InferenceAutoscalers (Scale mode,
predictive); an exporter serving N workloads; the controller as its ServiceAccount, started
once Prometheus holds full rate() windows. Its CPU time (utime + stime from /proc) is read
over the first minute (every autoscaler's first decision, status and Events, and the
backfill: one batched range query for all new autoscalers, on by default as in the
controller) and then over the measuring window (steady state), with its peak RSS (VmHWM).
The goal (issue 5): under 10% of one core and under 300 MiB at 1,000.

``--broken N`` (issue 14): the mean cycle time of the loop for one healthy autoscaler alone,
then with N more whose PromQL override Prometheus rejects, with the per-source back-off and
without it (a back-off of 1 ms: every failing query re-sent every cycle, as before). In
process against a real Prometheus, with the cluster in memory: the cost measured is the
metrics rounds, which is what broken sources add.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import utils as k8s_utils

from benchmarks._machine import Provenance
from benchmarks._readme import add_readme_flag, publish
from tests.e2e.kube import Binaries, ControlPlane, binaries_dir, build_binaries
from tests.support.ports import free_port
from tests.support.promserver import PrometheusServer, ScriptedExporter
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]
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


CALLS = {
    ("LIST", "pods", ""): "pod LISTs",
    ("PATCH", "inferenceautoscalers", "status"): "status PATCHes",
    ("PUT", "deployments", "scale"): "scale writes",
    ("PATCH", "deployments", "scale"): "scale writes",
    ("POST", "events", ""): "Events",
    ("LIST", "inferenceautoscalers", ""): "autoscaler LISTs",
    ("LIST", "deployments", ""): "Deployment LISTs",
}
"""API calls the controller makes, as the API server counts them (``apiserver_request_total``
by verb, resource and subresource). The kube-controller-manager watches rather than lists,
and writes no scale or status of ours; it does post Events (a ReplicaSet scaled), so the
Events column counts both."""

WRITE_CODES = {"200": "scale writes OK", "409": "scale writes 409 Conflict",
               "422": "scale writes 422 (replicas changed under us)"}
"""Scale writes by the API server's answer, counted over the whole controller run (the
first minute's wave of scale-ups is where the Deployment controller's own status writes
race ours)."""
WRITE_CODES_OTHER = "scale writes failed otherwise"


def api_calls(api: k8s.ApiClient) -> dict[str, float]:
    """The API server's request counters for ``CALLS`` so far."""
    method, url, headers, _body, _post = api.param_serialize(
        "GET", "/metrics", header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"])
    text = api.call_api(method, url, header_params=headers).read().decode()
    out = dict.fromkeys([*CALLS.values(), *WRITE_CODES.values(), WRITE_CODES_OTHER], 0.0)
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        raw, _, value = line.rpartition(" ")
        labels = dict(part.split("=", 1) for part in raw[raw.index("{") + 1:-1].split(",")
                      if "=" in part)
        key = tuple(labels.get(k, '""').strip('"') for k in ("verb", "resource", "subresource"))
        if key in CALLS:
            out[CALLS[key]] += float(value)
            if CALLS[key] == "scale writes":
                code = labels.get("code", '""').strip('"')
                out[WRITE_CODES.get(code, WRITE_CODES_OTHER)] += float(value)
    return out


def median(xs: list[float]) -> float:
    ys = sorted(xs)
    mid = len(ys) // 2
    return ys[mid] if len(ys) % 2 else (ys[mid - 1] + ys[mid]) / 2


def run(n: int, measure_s: float, binaries: Binaries, profile: str | None = None,
        warmup_s: float = 60.0, backfill_s: float | None = None,
        windows: int = 3) -> dict[str, Any]:
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
        ext = k8s.ApiextensionsV1Api(api)
        wait_until("the CRD to be Established", lambda: any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status.conditions
            or []))
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
        # Full 30-s rate() windows before the first decision: no start-up ramp.
        prom.wait_for_full_window("vllm:time_to_first_token_seconds_count", 30.0)
        kubeconfig = plane.service_account_kubeconfig("inference-autoscaler",
                                                      "inference-autoscaler-controller")
        log = open(work / "controller.log", "wb")  # noqa: SIM115
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        proc = subprocess.Popen(
            [sys.executable, *prof, "-m", "autoscaler.cli", "controller", "--kubeconfig",
             str(kubeconfig), "--prometheus-url", prom.url, "--metrics-host", "127.0.0.1",
             "--metrics-port", str(free_port()),
             *([] if backfill_s is None else ["--backfill-seconds", f"{backfill_s:g}"])],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        s0, w0, start_calls = cpu_seconds(proc.pid), time.monotonic(), api_calls(api)
        # The two spans below are what is measured (CPU over a stretch of time), not waits.
        time.sleep(warmup_s)  # start-up: first decisions, first status for every autoscaler
        c0, t0, a0 = cpu_seconds(proc.pid), time.monotonic(), api_calls(api)
        startup_pct = 100 * (c0 - s0) / (t0 - w0)
        pcts, cpu_s, wall_s = [], 0.0, 0.0
        for _ in range(windows):  # consecutive windows: a transition shows as one outlier
            time.sleep(measure_s)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            pcts.append(100 * (c1 - c0) / (t1 - t0))
            cpu_s, wall_s = cpu_s + c1 - c0, wall_s + t1 - t0
            c0, t0 = c1, t1
        a1 = api_calls(api)
        status_ok = sum(1 for o in crs.list_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL)["items"] if o.get("status", {}).get("desiredReplicas"))
        return {"n": n, "startup_pct": startup_pct, "cpu_pct": median(pcts), "windows": pcts,
                "cpu_s": cpu_s, "rss_mib": peak_rss_mib(proc.pid), "with_status": status_ok,
                "calls": {k: (a1[k] - a0[k]) / wall_s for k in dict.fromkeys(CALLS.values())},
                "writes": {k: a1[k] - start_calls[k]
                           for k in ("scale writes", *WRITE_CODES.values(), WRITE_CODES_OTHER)}}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if prom is not None:
            prom.cleanup()
        exporter.stop()
        plane.stop()


class MemoryKube:
    """The cluster in memory (the broken-sources figure measures Prometheus rounds)."""

    def __init__(self, crs: list[dict[str, Any]]) -> None:
        self.crs = crs
        self.replicas = {c["metadata"]["name"]: 2 for c in crs}

    def list_autoscalers(self, namespace: str | None) -> list[dict[str, Any]]:
        return self.crs

    def list_workloads(self, kind: str, namespace: str | None) -> dict[Any, Any]:
        from autoscaler.controller.kube import ScaleInfo

        return {(NS, n): ScaleInfo(r, r, "1") for n, r in self.replicas.items()}

    def get_scale(self, namespace: str, ref: Any) -> Any:
        raise NotImplementedError

    def set_scale(self, namespace: str, ref: Any, replicas: int, *, expected: int) -> None:
        self.replicas[ref.name] = replicas

    def patch_status(self, namespace: str, name: str, status: Any) -> None: ...

    def create_event(self, *args: Any) -> None: ...

    def list_competitors(self, namespace: str) -> list[Any]:
        return []


def broken_sources(n: int, cycles: int) -> list[str]:
    from autoscaler.controller.loop import Controller
    from autoscaler.controller.settings import Limits
    from autoscaler.metrics.source import PrometheusConfig, PrometheusSource

    exporter = ScriptedExporter().start()
    labels = {"namespace": NS, "workload": "healthy", "pod": "healthy-0"}
    exporter.set_gauge("vllm:num_requests_running", labels, 4.0)
    exporter.set_gauge("vllm:num_requests_waiting", labels, 0.0)
    exporter.set_histogram_rates("vllm:time_to_first_token_seconds", labels,
                                 {"0.5": 2.0, "+Inf": 3.0}, sum_rate=0.9)
    prom = PrometheusServer([exporter.address], scrape_interval_s=1.0).start()

    def cr(name: str, queries: dict[str, str] | None = None) -> dict[str, Any]:
        src: dict[str, Any] = {"window": "5s", "selector": f'pod!="not-{name}"'}
        if queries:
            src["queries"] = queries
        return {"metadata": {"namespace": NS, "name": name, "uid": name, "generation": 1},
                "spec": {"scaleTargetRef": {"name": name}, "policy": "predictive",
                         "minReplicas": 1, "maxReplicas": 8, "syncPeriodSeconds": 1,
                         "capacity": {"requestsPerSecond": 4.0, "concurrency": 24},
                         "metricsSource": src}}

    broken = [cr(f"broken{i}", {"queue_depth":
                                f"sum by ($by) (vllm:num_requests_waiting{{$sel}}) + {i} *"})
              for i in range(n)]
    no_backoff = Limits(source_backoff_s=0.001, source_backoff_max_transient_s=0.001,
                        source_backoff_max_spec_s=0.001)
    try:
        prom.wait_for_full_window("vllm:time_to_first_token_seconds_count", 5.0)
        lines = ["| autoscalers | back-off | first cycle | mean cycle after it "
                 "| Prometheus queries per cycle |", "|---|---|---:|---:|---:|"]
        for label, crs, limits in (("1 healthy", [cr("healthy")], Limits()),
                                   (f"1 healthy + {n} broken", [cr("healthy"), *broken],
                                    Limits()),
                                   (f"1 healthy + {n} broken", [cr("healthy"), *broken],
                                    no_backoff)):
            source = PrometheusSource(PrometheusConfig(url=prom.url))
            ctrl = Controller(MemoryKube(crs), source, backfill_s=0, limits=limits)
            walls = []
            for _ in range(cycles):
                start = time.time()
                t0 = time.perf_counter()
                ctrl.cycle(start)
                walls.append(time.perf_counter() - t0)
                time.sleep(max(0.0, 1.0 - (time.time() - start)))  # the 1-s sync period
            ctrl.close()
            on = "off (1 ms)" if limits is no_backoff else "on (5 s doubling)"
            rest = walls[1:]
            lines.append(f"| {label} | {on} | {walls[0]:.3f} s | "
                         f"{sum(rest) / len(rest):.3f} s | {source.queries_sent / cycles:.1f} |")
            print(lines[-1], file=sys.stderr, flush=True)  # progress: a row per setting
        return lines
    finally:
        prom.cleanup()
        exporter.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broken", type=int, default=0, metavar="N",
                    help="instead: mean cycle with N broken metrics sources (issue 14)")
    ap.add_argument("--cycles", type=int, default=30, help="cycles per --broken run")
    ap.add_argument("--counts", default="10,100,1000")
    ap.add_argument("--measure", type=float, default=60.0,
                    help="seconds per measured window")
    ap.add_argument("--windows", type=int, default=3,
                    help="consecutive measured windows per count; the steady figure is their "
                         "median, each is shown")
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds of start-up (first decision and status of every autoscaler) "
                         "reported apart")
    ap.add_argument("--backfill-seconds", type=float, default=None, metavar="S",
                    help="the controller's --backfill-seconds (default: as it runs by "
                         "default, each autoscaler's historySeconds; 0 turns backfill off)")
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="run the controller under cProfile, writing FILE (last count only)")
    add_readme_flag(ap)
    args = ap.parse_args()
    run_ = Provenance("benchmarks.controller_load")
    if args.broken:
        lines = broken_sources(args.broken, args.cycles)
        publish("controller_load_broken", "\n".join(lines) + "\n\n" + run_.note(),
                readme=args.readme)
        return
    binaries = Binaries.in_dir(binaries_dir())
    if binaries.missing():
        binaries = build_binaries()
    if args.windows < 1 or args.measure <= 0:
        print("controller_load: --windows must be >= 1 and --measure > 0", file=sys.stderr)
        raise SystemExit(2)
    lines = ["| autoscalers | CPU, first minute | CPU, steady (% of one core, median) "
             "| each window | controller CPU-s measured | peak RSS | with status |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    names = list(dict.fromkeys(CALLS.values()))
    calls = ["| autoscalers | " + " | ".join(f"{c}/s" for c in names) + " |",
             "|---:|" + "---:|" * len(names)]
    write_cols = ("scale writes", *WRITE_CODES.values(), WRITE_CODES_OTHER)
    writes = ["| autoscalers | " + " | ".join(write_cols) + " |",
              "|---:|" + "---:|" * len(write_cols)]
    goal = ""
    for n in (int(x) for x in args.counts.split(",")):
        r = run(n, args.measure, binaries, args.profile, args.warmup, args.backfill_seconds,
                args.windows)
        if n == 1000:
            ok = r["cpu_pct"] < 10 and r["rss_mib"] < 300
            under = sum(1 for p in r["windows"] if p < 10)
            goal = (f"Goal, under 10% of one core and 300 MiB at 1,000 autoscalers: "
                    f"{'met' if ok else 'missed'} (the median of {len(r['windows'])} "
                    f"windows; {under} of them under 10%). ")
        each = ", ".join(f"{p:.1f}%" for p in r["windows"])
        lines.append(f"| {n:,} | {r['startup_pct']:.1f}% | {r['cpu_pct']:.1f}% | {each} | "
                     f"{r['cpu_s']:.1f} | {r['rss_mib']:.0f} MiB | {r['with_status']:,} |")
        calls.append(f"| {n:,} | " + " | ".join(f"{v:.2f}" for v in r["calls"].values())
                     + " |")
        print(lines[-1], file=sys.stderr, flush=True)  # progress: a row per count
        writes.append(f"| {n:,} | " + " | ".join(f"{r['writes'][k]:.0f}" for k in write_cols)
                      + " |")
        print(calls[-1], file=sys.stderr, flush=True)
        print(writes[-1], file=sys.stderr, flush=True)
    backfill = ("backfill on (each autoscaler's historySeconds)"
                if args.backfill_seconds is None else
                "backfill off" if args.backfill_seconds == 0 else
                f"backfill {args.backfill_seconds:g} s")
    publish("controller_load", "\n".join(lines) + "\n\nAPI calls per second over the "
            "measured windows, as the API server counted them (Events include the "
            "kube-controller-manager's):\n\n" + "\n".join(calls) + "\n\nScale writes over the "
            "whole controller run (start-up and measured windows), by the API server's "
            "answer:\n\n" + "\n".join(writes) + "\n\n" + goal + run_.note(
        f"; {backfill}, first {args.warmup:g} s then {args.windows} x {args.measure:g} s "
        "measured per count"), readme=args.readme)


if __name__ == "__main__":
    main()
