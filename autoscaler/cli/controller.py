"""``autoscaler controller``: the flags of the in-cluster controller. The process itself
(Kubernetes client, election, HTTP endpoints) is ``autoscaler.controller.main``, imported
only when the command runs, so other commands never load the Kubernetes client."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoscaler.cli import common as c
from autoscaler.controller.settings import Limits, ServingLimits
from autoscaler.core import defaults as d
from autoscaler.errors import SpecError, short_repr


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
    p.add_argument("--lease-duration", type=c.whole(LEASE), default=15,
                   help=f"seconds (default 15; {LEASE.describe()})")
    p.add_argument("--identity", default=os.environ.get("POD_NAME") or socket.gethostname())
    p.add_argument("--metrics-port", type=c.whole(PORT), default=8080)
    p.add_argument("--metrics-host", default="0.0.0.0",
                   help="address for /metrics, /healthz, /readyz (tests use 127.0.0.1)")
    p.add_argument("--tick", type=c.number(TICK), default=d.CONTROLLER_TICK_S,
                   help=f"seconds between wake-ups (default {d.CONTROLLER_TICK_S:g})")
    # The controller's own limits (autoscaler/controller/settings.py; docs/faults.md).
    lim, serving = Limits(), ServingLimits()
    p.add_argument("--api-timeout", type=c.number(DEADLINE), default=lim.api_timeout_s,
                   help=f"deadline of one Kubernetes API call, seconds, no retries "
                        f"(default {lim.api_timeout_s:g})")
    p.add_argument("--prometheus-timeout", type=c.number(DEADLINE),
                   default=lim.prometheus_timeout_s,
                   help=f"deadline of one Prometheus query, seconds "
                        f"(default {lim.prometheus_timeout_s:g})")
    p.add_argument("--source-deadline", type=c.number(DEADLINE), default=lim.source_deadline_s,
                   help=f"how long a cycle waits for one metrics source, seconds; later "
                        f"sources are missing for that cycle (default {lim.source_deadline_s:g})")
    p.add_argument("--cycle-deadline", type=c.number(DEADLINE), default=lim.cycle_deadline_s,
                   help=f"wall-clock budget of one cycle, seconds "
                        f"(default {lim.cycle_deadline_s:g})")
    p.add_argument("--source-backoff", type=c.number(DEADLINE), default=lim.source_backoff_s,
                   help=f"first back-off of a failing metrics source, seconds, doubling per "
                        f"failure (default {lim.source_backoff_s:g})")
    p.add_argument("--external-metrics-header-timeout", type=c.number(DEADLINE),
                   default=serving.header_timeout_s,
                   help=f"seconds a connection has for its TLS handshake and request headers "
                        f"(default {serving.header_timeout_s:g})")
    p.add_argument("--external-metrics-max-connections", type=c.whole(CONNECTIONS),
                   default=serving.max_connections,
                   help=f"open connections served at once (default {serving.max_connections})")
    p.add_argument("--backfill-seconds", type=c.number(BACKFILL), default=None,
                   help="history to backfill per new autoscaler (default: its historySeconds)")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    # The external.metrics.k8s.io API (autoscaler/controller/external_metrics/).
    p.add_argument("--external-metrics-port", type=c.whole(PORT), default=0,
                   help="serve external.metrics.k8s.io over TLS on this port (0 = off)")
    p.add_argument("--external-metrics-host", default="0.0.0.0")
    p.add_argument("--tls-cert-file", default=None, help="serving certificate (PEM)")
    p.add_argument("--tls-key-file", default=None, help="its private key (PEM)")
    p.add_argument("--requestheader-client-ca-file", default=None,
                   help="CA that signs the aggregator's front-proxy client certificate "
                        "(default: read kube-system/extension-apiserver-authentication)")
    p.add_argument("--requestheader-allowed-names", default="",
                   help="comma-separated CNs allowed (empty: any CN that CA signed)")
    p.add_argument("--external-metrics-max-age", type=c.number(MAX_AGE), default=45.0,
                   help="withhold decisions older than this many seconds")


PORT = c.Range(low=0, high=65535)
LEASE = c.Range(low=1, high=3600, unit="seconds")
TICK = c.Range(low=0, low_open=True, high=3600, unit="seconds")
BACKFILL = c.Range(low=0, high=30 * 86_400, unit="seconds")
MAX_AGE = c.Range(low=0, low_open=True, high=86_400, unit="seconds")
DEADLINE = c.Range(low=0, low_open=True, high=3600, unit="seconds")
CONNECTIONS = c.Range(low=1, high=1_000_000)

MAX_KUBECONFIG_BYTES = 16 << 20
"""Kubeconfigs with embedded certificates for dozens of clusters stay under 1 MiB."""


def run(args: argparse.Namespace) -> int:
    check_kubeconfig(args.kubeconfig, os.environ)
    from autoscaler.controller.main import run_controller

    return run_controller(args)


def check_kubeconfig(path: str | None, env: Mapping[str, str]) -> None:
    """Refuse a kubeconfig the Kubernetes client would fail on, as one line naming the file
    (and the line), before any client is built.

    Without ``--kubeconfig`` the client uses the in-cluster service account when it runs in a
    pod (``KUBERNETES_SERVICE_HOST`` set), else ``$KUBECONFIG`` (its files merged, missing
    ones skipped, as the client does), else ``~/.kube/config``: the same files are checked
    here."""
    option = "--kubeconfig"
    if path is None:
        if env.get("KUBERNETES_SERVICE_HOST"):
            return
        listed = [x for x in (env.get("KUBECONFIG") or "").split(os.pathsep) if x]
        existing = [x for x in listed if Path(x).expanduser().exists()]
        if len(existing) > 1:
            _check_merged(existing)
            return
        path = existing[0] if existing else (
            listed[0] if listed else str(Path("~/.kube/config").expanduser()))
        option = "KUBECONFIG" if listed else "~/.kube/config (no --kubeconfig, not in a pod)"
    doc, root = _read_kubeconfig(option, path)
    _check_references(doc, root, path)


def _check_merged(paths: list[str]) -> None:
    """Several ``KUBECONFIG`` files: each must be a readable YAML mapping; the references
    are checked on their merge (the first file naming an entry or the context wins)."""
    merged: dict[str, Any] = {}
    for path in paths:
        doc, _ = _read_kubeconfig("KUBECONFIG", path)
        if not isinstance(doc, dict):
            raise SpecError("KUBECONFIG", path, "", source=path,
                            problem="not a kubeconfig (expected a mapping)")
        for key, value in doc.items():
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + value
            else:
                merged.setdefault(key, value)
    _check_references(merged, None, os.pathsep.join(paths))


def _read_kubeconfig(option: str, path: str) -> tuple[Any, Any]:
    p = Path(path).expanduser()
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_KUBECONFIG_BYTES + 1)
    except OSError as exc:
        raise SpecError(option, path, "", source=path,
                        problem=f"cannot read the kubeconfig ({exc.strerror or exc})") from exc
    if len(raw) > MAX_KUBECONFIG_BYTES:
        raise SpecError(option, path, "", source=path,
                        problem=f"over {MAX_KUBECONFIG_BYTES:,} bytes: not a kubeconfig")
    try:
        import yaml

        root = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
        return yaml.safe_load(raw.decode("utf-8")), root
    except UnicodeDecodeError as exc:
        raise SpecError(option, path, "", source=path,
                        problem="not UTF-8 text: not a kubeconfig") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise SpecError(option, path, "", source=where,
                        problem=f"not valid YAML ({getattr(exc, 'problem', None) or exc})") \
            from exc
    except RecursionError as exc:
        raise SpecError(option, path, "", source=path,
                        problem="nested too deeply: not a kubeconfig") from exc


def _check_references(doc: Any, root: Any, path: str) -> None:
    """current-context names a context, whose cluster (with a server) and user exist."""

    def fail(loc: tuple[str | int, ...], problem: str) -> SpecError:
        from autoscaler.config import SpecDocument, field_path

        where = SpecDocument(path, doc, root).where(loc)
        return SpecError(field_path(loc) or "(kubeconfig)", None, "", source=where,
                         problem=problem)

    if not isinstance(doc, dict):
        raise fail((), "not a kubeconfig (expected a mapping with clusters, contexts, "
                       "users and current-context)")

    def named(section: str) -> dict[str, Any]:
        entries = doc.get(section)
        if entries is None:
            return {}
        if not isinstance(entries, list):
            raise fail((section,), "must be a list of {name: ..., " +
                       section.removesuffix("s") + ": {...}}")
        out: dict[str, Any] = {}
        for i, entry in enumerate(entries):
            if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
                raise fail((section, i), "each entry needs a name")
            out[entry["name"]] = entry.get(section.removesuffix("s"))
        return out

    clusters, contexts, users = named("clusters"), named("contexts"), named("users")
    current = doc.get("current-context")
    if not isinstance(current, str) or not current:
        raise fail(("current-context",), "missing: the context to use is not set "
                   "(kubectl config use-context NAME)")
    if current not in contexts:
        raise fail(("current-context",), f"{short_repr(current)} names no entry of contexts "
                   f"(known: {', '.join(sorted(contexts)) or 'none'})")
    context = contexts[current]
    if not isinstance(context, dict):
        raise fail(("contexts",), f"context {short_repr(current)} has no context mapping")
    cluster = clusters.get(str(context.get("cluster")))
    if not isinstance(cluster, dict) or not isinstance(cluster.get("server"), str):
        raise fail(("contexts",), f"context {short_repr(current)} names cluster "
                   f"{short_repr(context.get('cluster'))}, which is not in clusters or has "
                   "no server")
    user = context.get("user")
    if user is not None and user not in users:
        raise fail(("contexts",), f"context {short_repr(current)} names user "
                   f"{short_repr(user)}, which is not in users")
