"""``autoscaler twin``: serve a simulated fleet's metrics as a real engine would, so that a
real Prometheus can scrape it and a live loop can close around it (I/O lives here and in
``autoscaler.twin.serving``; the simulator stays as it is)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from autoscaler.cli import common as c
from autoscaler.errors import SpecError

PORT = c.Range(low=0, high=65535)
SPEED = c.Range(low=0, low_open=True, high=1e4)
"""Simulated seconds per wall second; 10^4 replays a day in under 9 wall seconds."""
TARGETS = c.Range(low=1, high=10_000)
LOOPS = c.Range(low=1, high=1_000_000)
STEP = c.Range(low=0, low_open=True, high=60, unit="seconds")
POD_POLL = c.Range(low=0.01, high=60, unit="seconds")


def add_parser(subparsers: Any) -> None:
    """Add ``twin`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "twin", help="serve a simulated fleet's metrics in a serving engine's format",
        description="Run the simulator in real (or accelerated) time and serve its fleet's "
                    "metrics on /metrics in the exact exposition of the chosen engine. The "
                    "simulated replica count comes from --replicas-file or PUT /replicas.")
    p.add_argument("--trace", default="default",
                   help="trace file or folder, or 'default' for the embedded workload")
    p.add_argument("--trace-format", choices=c.TRACE_FORMATS,
                   help="skip auto-detection")
    p.add_argument("--port", type=c.whole(PORT), required=True, help="TCP port (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    p.add_argument("--speed", type=c.number(SPEED), default=1.0,
                   help="simulated seconds per wall second (default 1)")
    p.add_argument("--preset", default="vllm",
                   help="engine exposition, e.g. vllm or sglang, optionally +dcgm (an unknown "
                   "name lists the choices)")
    p.add_argument("--profile", default="llama3-8b-h100",
                   help="replica profile: a built-in name or a YAML file")
    p.add_argument("--replicas-file", metavar="F",
                   help="file holding the replica count (N or JSON), re-read when it changes")
    p.add_argument("--initial-replicas", type=c.whole(c.NON_NEGATIVE_INT),
                   help="replicas at start (default: the first minute's peak at 80%% load)")
    p.add_argument("--namespace", default="default", help="namespace label (default default)")
    p.add_argument("--workload", default="llm", help="workload label (default llm)")
    p.add_argument("--targets", type=c.whole(TARGETS), default=1,
                   help="independent simulated targets, workloads <workload>-<i> (default 1)")
    p.add_argument("--model", default="meta-llama/Llama-3.1-8B-Instruct",
                   help="model label value")
    p.add_argument("--loops", type=c.whole(LOOPS), default=1,
                   help="replay the trace this many times back to back (default 1; after "
                   "the end arrivals stop and the metrics freeze)")
    p.add_argument("--seed", type=c.whole(c.SEED), default=0)
    p.add_argument("--step", type=c.number(STEP), default=0.2,
                   help="wall seconds between simulation steps (default 0.2)")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="follow real pods: serve with the pods that are Ready in --namespace "
                   "of this API server (a pod's --pod-label value names its workload), "
                   "instead of a simulated count")
    p.add_argument("--pod-label", default="workload", metavar="KEY",
                   help="with --kubeconfig: the pod label naming the twin's workload "
                   "(default workload)")
    p.add_argument("--pod-poll", type=c.number(POD_POLL), default=0.5, metavar="S",
                   help=f"with --kubeconfig: seconds between pod LISTs (default 0.5; "
                   f"allowed: {POD_POLL.describe()})")


def run(args: argparse.Namespace) -> int:
    """Build the twin from ``args``, serve until SIGINT/SIGTERM. Returns the exit code."""
    from autoscaler.twin.serving import Twin

    if not 0 <= args.port <= 65535:
        raise SpecError("--port", args.port, "0..65535")
    trace = c.load_trace_input(None if args.trace == "default" else args.trace,
                               args.trace_format, seed=args.seed)
    profile = c.load_profile_input(args.profile)
    pods = None
    if args.kubeconfig is not None:
        if args.replicas_file is not None:
            raise SpecError("--replicas-file", args.replicas_file,
                            "not with --kubeconfig (the cluster's Ready pods are the count)")
        pods = ClusterPods.connect(args.kubeconfig, args.namespace, args.pod_label)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    twin = Twin.from_trace(
        trace, profile, targets=args.targets, namespace=args.namespace,
        workload=args.workload, initial_replicas=args.initial_replicas, seed=args.seed,
        preset=args.preset, model=args.model, speed=args.speed, step_s=args.step,
        replicas_file=args.replicas_file, loops=args.loops, follow_pods=pods is not None)
    port = twin.start(args.port, args.host)
    if pods is not None:
        twin.follow(pods, interval_s=args.pod_poll)
    following = (f"; following the Ready pods of {args.namespace} (label {args.pod_label})"
                 if pods is not None else "")
    print(f"twin: {len(twin.targets)} target(s), preset {args.preset}, speed x{args.speed}: "
          f"http://{args.host}:{port}/metrics (also /replicas, /truth, /faults){following}",
          file=sys.stderr, flush=True)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        done.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        twin.stop()
    return 0


class ClusterPods:
    """The twin's ``PodSource`` on a real API server: one pod LIST of the namespace per
    poll (pods carrying ``label``), from the API server's watch cache, under the client's
    one-call deadline; None when it fails (the twin keeps the pods it knew)."""

    def __init__(self, kube: Any, namespace: str, label: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.label = label

    @classmethod
    def connect(cls, kubeconfig: str, namespace: str, label: str) -> ClusterPods:
        """Built from ``kubeconfig``, after one LIST that must succeed: a bad kubeconfig or
        a forbidden LIST is one line, exit 2; an unreachable API server one line, exit 1."""
        from autoscaler.controller.kube import KubeClient, api_client

        if not label or any(ch in label for ch in " ,=!()"):
            raise SpecError("--pod-label", label, "a label key (e.g. workload or app)")
        pods = cls(KubeClient(api_client(kubeconfig), component="autoscaler-twin"),
                   namespace, label)
        pods.kube.list_pods(namespace, label)
        return pods

    def ready_pods(self) -> dict[str, list[str]] | None:
        from autoscaler.controller.kube import KubeError
        from autoscaler.errors import TransientError
        from autoscaler.twin.pods import ready_by_workload

        try:
            listed = self.kube.list_pods(self.namespace, self.label)
        except (TransientError, KubeError):
            return None
        return ready_by_workload(listed, self.label)
