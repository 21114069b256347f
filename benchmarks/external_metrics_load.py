"""Latency and throughput of the external metrics endpoint under a real HTTP load generator.

The server (the same ``ExternalMetricsServer`` the controller runs) is started in a child
process pinned to one core (``taskset -c 0``), serving 100 autoscalers' outcomes over TLS
with client-certificate authentication, exactly as the aggregator reaches it. The load
generator is vegeta (Go; it presents a client certificate, which wrk and hey cannot), pinned
to the other core:

* a constant-rate attack (default 500 requests/s for 15 s): p50/p99/max latency, the goal
  being p99 < 5 ms at 500 req/s on one core;
* an as-fast-as-possible attack (``-rate=0``, 4 workers): the throughput ceiling.

Each request is ``GET /apis/external.metrics.k8s.io/v1beta1/namespaces/ml/
inference_autoscaler_desired_replicas?labelSelector=autoscaler=chat-7`` (what the HPA asks).

    go install github.com/tsenart/vegeta/v12@v12.12.0      # once; or pass --vegeta PATH
    .venv/bin/python -m benchmarks.external_metrics_load [--rate 500] [--seconds 15] [--readme]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._machine import Provenance
from benchmarks._readme import add_readme_flag, publish
from tests.support.certs import issue_certificate, make_ca
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]

PATH = ("/apis/external.metrics.k8s.io/v1beta1/namespaces/ml/"
        "inference_autoscaler_desired_replicas?labelSelector=autoscaler%3Dchat-7")
AUTOSCALERS = 100


def make_pki(d: Path) -> None:
    """ca.crt signs server.crt (127.0.0.1) and client.crt (CN front-proxy-client)."""
    ca, _, _ = make_ca(d, "ca", "bench-ca")
    issue_certificate(d, "server", ca=ca, common_name="localhost",
                      ip_addresses=("127.0.0.1",), server=True)
    issue_certificate(d, "client", ca=ca, common_name="front-proxy-client", client=True)


def serve(d: Path, port: int) -> None:
    """The child process: the server with 100 fresh outcomes, until killed."""
    from autoscaler.controller.external_metrics import ExternalMetricsServer, ServerConfig
    from autoscaler.controller.loop import Outcome
    from autoscaler.controller.resource import Mode
    from autoscaler.core.types import Decision, Reason

    def outcomes() -> dict[tuple[str, str], Outcome]:
        return table

    now = time.time()
    table = {}
    for i in range(AUTOSCALERS):
        decision = Decision(replicas=3 + i % 7, reason=Reason.DESIRED_WITHIN_RANGE,
                            message="bench", forecast_rps=12.5, demand_rps=10.0)
        table[("ml", f"chat-{i}")] = Outcome("ml", f"chat-{i}", Mode.METRICS, 3, 3 + i % 7,
                                             "DesiredWithinRange", True, False, decision, now)
    server = ExternalMetricsServer(outcomes, ServerConfig(
        port=port, host="127.0.0.1", cert_file=str(d / "server.crt"),
        key_file=str(d / "server.key"), client_ca_file=str(d / "ca.crt"),
        allowed_names=("front-proxy-client",), max_age_s=1e9)).start()
    print("ready", flush=True)
    server.thread.join()


def vegeta_binary(given: str | None) -> str:
    for candidate in (given, shutil.which("vegeta"),
                      str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin/vegeta"),
                      "/tmp/gobin/vegeta"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit("vegeta not found: go install github.com/tsenart/vegeta/v12@v12.12.0, "
             "or --vegeta PATH")


def attack(vegeta: str, d: Path, url: str, *, rate: int, seconds: float, workers: int | None
           ) -> dict[str, object]:
    argv = ["taskset", "-c", "1", vegeta, "attack", f"-rate={rate}", f"-duration={seconds}s",
            f"-cert={d / 'client.crt'}", f"-key={d / 'client.key'}",
            f"-root-certs={d / 'ca.crt'}", "-timeout=5s"]
    if workers is not None:
        argv += [f"-workers={workers}", f"-max-workers={workers}"]
    target = f"GET {url}\n".encode()
    results = subprocess.run(argv, input=target, capture_output=True, check=True).stdout
    report = subprocess.run([vegeta, "report", "-type=json"], input=results,
                            capture_output=True, check=True).stdout
    parsed: dict[str, object] = json.loads(report)
    if os.environ.get("BENCH_DEBUG"):
        print(parsed.get("errors"), file=sys.stderr)
    return parsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=500, help="requests/s (default 500)")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--vegeta", default=None)
    ap.add_argument("--workers", type=int, default=8,
                    help="connections of the constant-rate attack (default 8)")
    ap.add_argument("--serve", nargs=2, metavar=("DIR", "PORT"), help=argparse.SUPPRESS)
    add_readme_flag(ap)
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return 0
    vegeta = vegeta_binary(args.vegeta)
    run = Provenance("benchmarks.external_metrics_load")
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_pki(d)
        port = free_port()
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        # The child runs as a module from the repo root, as this script does (tests.support
        # is reached by its package path).
        child = subprocess.Popen(
            [*pin, sys.executable, "-m", "benchmarks.external_metrics_load", "--serve", tmp,
             str(port)], stdout=subprocess.PIPE, env=env, cwd=ROOT)
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != b"ready":
                sys.exit("the server did not start")
            url = f"https://127.0.0.1:{port}{PATH}"
            attack(vegeta, d, url, rate=50, seconds=2, workers=None)  # warm-up
            # Workers (hence connections) capped: uncapped, vegeta opens a new connection
            # for every late request, and the TLS handshakes, on the server's one core,
            # make every request late (measured: a collapse to ~30 req/s at 400 req/s).
            # The aggregator, like any client here, keeps a few connections alive.
            fixed = attack(vegeta, d, url, rate=args.rate, seconds=args.seconds,
                           workers=args.workers)
            flat = attack(vegeta, d, url, rate=0, seconds=args.seconds / 2, workers=4)
        finally:
            child.terminate()
            child.wait(10)
    lines = ["| load | throughput | p50 | p90 | p99 | max | success |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, rep in ((f"constant {args.rate} req/s, {args.seconds:g} s, "
                        f"{args.workers} connections", fixed),
                       (f"as fast as possible, 4 workers, {args.seconds / 2:g} s", flat)):
        lat = rep["latencies"]
        assert isinstance(lat, dict)
        lines.append(f"| {label} | {float(str(rep['throughput'])):,.0f}/s | "
                     f"{lat['50th'] / 1e6:.2f} ms | {lat['90th'] / 1e6:.2f} ms | "
                     f"{lat['99th'] / 1e6:.2f} ms | {lat['max'] / 1e6:.1f} ms | "
                     f"{float(str(rep['success'])):.2%} |")
    p99_ms = fixed["latencies"]["99th"] / 1e6  # type: ignore[index]
    goal = (f"Goal p99 < 5 ms at {args.rate} req/s: {'met' if p99_ms < 5 else 'NOT met'} "
            f"({p99_ms:.2f} ms).")
    setting = (f"; server {'pinned to core 0 (taskset)' if pin else 'not pinned'}, vegeta on "
               "core 1, TLS with a client certificate, keep-alive")
    publish("external_metrics_load", "\n".join(lines) + "\n\n" + goal + " " +
            run.note(setting), readme=args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
