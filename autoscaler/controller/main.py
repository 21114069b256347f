"""``autoscaler controller``: the process. Kubernetes config, Prometheus, leader election,
health and metrics endpoints, JSON logs, graceful SIGTERM."""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import signal
import tempfile
import threading
import time
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from autoscaler.controller.election import ElectionConfig, LeaseElector
from autoscaler.controller.kube import KubeClient
from autoscaler.controller.loop import Controller, ControllerHooks, Outcome, run_forever
from autoscaler.errors import SpecError
from autoscaler.metrics.source import PrometheusConfig, PrometheusSource

log = logging.getLogger("autoscaler.controller")


class Metrics(ControllerHooks):
    """The controller's own Prometheus metrics (names documented in the README and used by
    deploy/grafana/dashboard.json)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("autoscaler_decisions", "Decisions by reason",
                                 ["namespace", "autoscaler", "reason"], registry=r)
        self.errors = Counter("autoscaler_errors", "Errors by kind", ["kind"], registry=r)
        self.cycle = Histogram("autoscaler_cycle_seconds", "Wall time of one control cycle",
                               registry=r, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                                    5, 10))
        self.query = Histogram("autoscaler_prometheus_query_seconds",
                               "Wall time of one round of Prometheus queries", registry=r,
                               buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        labels = ["namespace", "autoscaler"]
        self.desired = Gauge("autoscaler_desired_replicas", "Desired replicas", labels,
                             registry=r)
        self.current = Gauge("autoscaler_current_replicas", "Current replicas", labels,
                             registry=r)
        self.forecast = Gauge("autoscaler_forecast_rps", "Planned demand, requests/s", labels,
                              registry=r)
        self.demand = Gauge("autoscaler_demand_rps", "Observed demand, requests/s", labels,
                            registry=r)
        self.leader = Gauge("autoscaler_is_leader", "1 while this replica leads", registry=r)

    def decision(self, outcome: Outcome) -> None:
        lab = (outcome.namespace, outcome.name)
        self.decisions.labels(*lab, outcome.reason).inc()
        self.desired.labels(*lab).set(outcome.desired)
        self.current.labels(*lab).set(outcome.current)
        d = outcome.decision
        if d is not None and d.forecast_rps is not None:
            self.forecast.labels(*lab).set(d.forecast_rps)
        if d is not None and d.demand_rps is not None:
            self.demand.labels(*lab).set(d.demand_rps)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def query_seconds(self, seconds: float) -> None:
        self.query.observe(seconds)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines (Loki, Elasticsearch) parse without
    regexes."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                               "level": record.levelname.lower(), "logger": record.name,
                               "msg": record.getMessage()}
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class Health:
    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self.last_tick = time.monotonic()
        self.api_ok = False

    def alive(self) -> bool:
        # A loop stuck for 6 ticks (30 s at the default) is dead: let the kubelet restart it.
        return time.monotonic() - self.last_tick < max(30.0, 6 * self.tick_s)


def serve_http(port: int, host: str, metrics: Metrics, health: Health) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, ctype, code = generate_latest(metrics.registry), CONTENT_TYPE_LATEST, 200
            elif self.path == "/healthz":
                ok = health.alive()
                body, ctype, code = (b"ok" if ok else b"loop stalled"), "text/plain", (
                    200 if ok else 500)
            elif self.path == "/readyz":
                ok = health.alive() and health.api_ok
                body, ctype, code = (b"ok" if ok else b"not ready"), "text/plain", (
                    200 if ok else 503)
            else:
                body, ctype, code = b"not found", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="http").start()
    return server


def _api_client(kubeconfig: str | None) -> k8s.ApiClient:
    if kubeconfig:
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig)
        return api
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    return k8s.ApiClient()


def run_controller(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    if args.tick <= 0:
        raise SpecError("--tick", args.tick, "> 0 seconds")
    kube = KubeClient(_api_client(args.kubeconfig), instance=args.identity)
    source = None
    if args.prometheus_url:
        source = PrometheusSource(PrometheusConfig(
            url=args.prometheus_url, bearer_token_file=args.prometheus_bearer_token_file,
            ca_file=args.prometheus_ca_file))
    else:
        log.warning("no --prometheus-url: every autoscaler will hold (metrics unavailable)")
    metrics = Metrics()
    health = Health(args.tick)
    server = serve_http(args.metrics_port, args.metrics_host, metrics, health)
    controller = Controller(kube, source, namespace=args.namespace, hooks=metrics,
                            backfill_s=args.backfill_seconds)
    stop = threading.Event()
    external = None
    if args.external_metrics_port:
        from autoscaler.controller.external_metrics import (
            ExternalMetricsServer,
            ServerConfig,
            request_header_auth,
        )

        names = tuple(n.strip() for n in args.requestheader_allowed_names.split(",")
                      if n.strip())
        if args.requestheader_client_ca_file is None:  # what the cluster publishes
            args.requestheader_client_ca_file, names = request_header_auth(
                lambda path: kube.call("GET", path), tempfile.mkdtemp())
        external = ExternalMetricsServer(lambda: controller.outcomes.copy(), ServerConfig(
            port=args.external_metrics_port, host=args.external_metrics_host,
            cert_file=args.tls_cert_file, key_file=args.tls_key_file,
            client_ca_file=args.requestheader_client_ca_file, allowed_names=names,
            max_age_s=args.external_metrics_max_age)).start()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the cycle, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    elector: LeaseElector | None = None
    if args.leader_elect:
        elector = LeaseElector(kube, ElectionConfig(
            namespace=args.lease_namespace, name=args.lease_name, identity=args.identity,
            lease_duration_s=args.lease_duration,
            renew_deadline_s=args.lease_duration * 2 / 3,
            retry_period_s=max(0.5, args.lease_duration / 7)))
        el = elector

        def elect() -> None:
            while not stop.is_set():
                leading = el.step(time.time())
                metrics.leader.set(1 if leading else 0)
                stop.wait(el.config.retry_period_s)

        threading.Thread(target=elect, daemon=True, name="election").start()
    else:
        metrics.leader.set(1)

    def is_leader(_now: float) -> bool:
        health.last_tick = time.monotonic()
        if not health.api_ok:
            try:
                kube.call("GET", "/version")
                health.api_ok = True
            except Exception as exc:
                log.warning("API server not reachable yet: %s", exc)
        return elector.is_leader if elector is not None else True

    def on_cycle(_start: float, seconds: float) -> None:
        metrics.cycle.observe(seconds)

    def pause(seconds: float) -> None:
        stop.wait(seconds)  # wakes at once on SIGTERM

    log.info("controller started", extra={"identity": args.identity})
    run_forever(controller, tick_s=args.tick, should_stop=stop.is_set, is_leader=is_leader,
                sleep=pause, on_cycle=on_cycle)
    if elector is not None:
        elector.release(time.time())
    server.shutdown()
    if external is not None:
        external.stop()
    log.info("controller stopped")
    return 0
