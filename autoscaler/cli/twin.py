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


def run(args: argparse.Namespace) -> int:
    """Build the twin from ``args``, serve until SIGINT/SIGTERM. Returns the exit code."""
    from autoscaler.twin.serving import Twin

    if not 0 <= args.port <= 65535:
        raise SpecError("--port", args.port, "0..65535")
    trace = c.load_trace_input(None if args.trace == "default" else args.trace,
                               args.trace_format, seed=args.seed)
    profile = c.load_profile_input(args.profile)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    twin = Twin.from_trace(
        trace, profile, targets=args.targets, namespace=args.namespace,
        workload=args.workload, initial_replicas=args.initial_replicas, seed=args.seed,
        preset=args.preset, model=args.model, speed=args.speed, step_s=args.step,
        replicas_file=args.replicas_file, loops=args.loops)
    port = twin.start(args.port, args.host)
    print(f"twin: {len(twin.targets)} target(s), preset {args.preset}, speed x{args.speed}: "
          f"http://{args.host}:{port}/metrics (also /replicas, /truth, /faults)",
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
