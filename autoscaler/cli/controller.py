"""``autoscaler controller``: the flags of the in-cluster controller. The process itself
(Kubernetes client, election, HTTP endpoints) is ``autoscaler.controller.main``, imported
only when the command runs, so other commands never load the Kubernetes client."""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from autoscaler.core import defaults as d


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("controller", help="run the in-cluster controller")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig file (default: in-cluster config, else ~/.kube/config)")
    p.add_argument("--namespace", default=None,
                   help="watch only this namespace (default: all)")
    p.add_argument("--prometheus-url", default=os.environ.get("PROMETHEUS_URL"),
                   help="Prometheus base URL (env PROMETHEUS_URL)")
    p.add_argument("--prometheus-bearer-token-file", default=None)
    p.add_argument("--prometheus-ca-file", default=None)
    p.add_argument("--leader-elect", action="store_true",
                   help="elect one active replica through a Lease")
    p.add_argument("--lease-name", default="inference-autoscaler")
    p.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    p.add_argument("--lease-duration", type=int, default=15, help="seconds (default 15)")
    p.add_argument("--identity", default=os.environ.get("POD_NAME") or socket.gethostname())
    p.add_argument("--metrics-port", type=int, default=8080)
    p.add_argument("--metrics-host", default="0.0.0.0",
                   help="address for /metrics, /healthz, /readyz (tests use 127.0.0.1)")
    p.add_argument("--tick", type=float, default=d.CONTROLLER_TICK_S,
                   help=f"seconds between wake-ups (default {d.CONTROLLER_TICK_S:g})")
    p.add_argument("--backfill-seconds", type=float, default=None,
                   help="history to backfill per new autoscaler (default: its historySeconds)")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    # The external.metrics.k8s.io API (autoscaler/controller/external_metrics.py).
    p.add_argument("--external-metrics-port", type=int, default=0,
                   help="serve external.metrics.k8s.io over TLS on this port (0 = off)")
    p.add_argument("--external-metrics-host", default="0.0.0.0")
    p.add_argument("--tls-cert-file", default=None, help="serving certificate (PEM)")
    p.add_argument("--tls-key-file", default=None, help="its private key (PEM)")
    p.add_argument("--requestheader-client-ca-file", default=None,
                   help="CA that signs the aggregator's front-proxy client certificate "
                        "(default: read kube-system/extension-apiserver-authentication)")
    p.add_argument("--requestheader-allowed-names", default="",
                   help="comma-separated CNs allowed (empty: any CN that CA signed)")
    p.add_argument("--external-metrics-max-age", type=float, default=45.0,
                   help="withhold decisions older than this many seconds")


def run(args: argparse.Namespace) -> int:
    from autoscaler.controller.main import run_controller

    return run_controller(args)
