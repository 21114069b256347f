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
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from autoscaler.controller.capacity_gauges import CapacityGauges
from autoscaler.controller.election import ElectionConfig, LeaseElector
from autoscaler.controller.kube import KubeClient, api_client
from autoscaler.controller.loop import Controller, ControllerHooks, Outcome, run_forever
from autoscaler.controller.settings import Limits, ServingLimits
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
        self.capacity = CapacityGauges(r)

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
        self.capacity.observe(outcome)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def query_seconds(self, seconds: float) -> None:
        self.query.observe(seconds)


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
"""Attributes every LogRecord has: anything else on a record came from ``extra=``."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines (Loki, Elasticsearch) parse without
    regexes. Fields passed with ``extra={...}`` are kept as top-level keys (values that are
    not JSON are written as their ``str``)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                               "level": record.levelname.lower(), "logger": record.name,
                               "msg": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class Health:
    """``/healthz``: alive while the loop makes progress (an iteration ends, leading or
    not); ``/readyz``: also the API server answered once."""

    def __init__(self, stall_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self.clock = clock
        self.last_tick = clock()
        self.api_ok = False

    def tick(self) -> None:
        self.last_tick = self.clock()

    def alive(self) -> bool:
        # Every cycle ends within its deadline (< stall_s), so a loop silent for stall_s is
        # stuck: let the kubelet restart it.
        return self.clock() - self.last_tick < self.stall_s


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



def run_controller(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    if args.tick <= 0:
        raise SpecError("--tick", args.tick, "> 0 seconds")
    limits = Limits(api_timeout_s=args.api_timeout,
                    prometheus_timeout_s=args.prometheus_timeout,
                    source_deadline_s=args.source_deadline,
                    cycle_deadline_s=args.cycle_deadline, source_backoff_s=args.source_backoff,
                    liveness_s=max(Limits().liveness_s, 6 * args.tick))
    serving = ServingLimits(header_timeout_s=args.external_metrics_header_timeout,
                            max_connections=args.external_metrics_max_connections)
    kube = KubeClient(api_client(args.kubeconfig), instance=args.identity,
                      timeout_s=limits.api_timeout_s)
    source = None
    if args.prometheus_url:
        source = PrometheusSource(PrometheusConfig(
            url=args.prometheus_url, bearer_token_file=args.prometheus_bearer_token_file,
            ca_file=args.prometheus_ca_file, timeout_s=limits.prometheus_timeout_s))
    else:
        log.warning("no --prometheus-url: every autoscaler will hold (metrics unavailable)")
    metrics = Metrics()
    health = Health(limits.liveness_s)
    server = serve_http(args.metrics_port, args.metrics_host, metrics, health)
    stop = threading.Event()
    elector: LeaseElector | None = None
    if args.leader_elect:
        elector = LeaseElector(kube, ElectionConfig(
            namespace=args.lease_namespace, name=args.lease_name, identity=args.identity,
            lease_duration_s=args.lease_duration,
            renew_deadline_s=args.lease_duration * 2 / 3,
            retry_period_s=max(0.5, args.lease_duration / 7)))
    leading = elector.leading if elector is not None else (lambda: True)
    # Read at every scrape, not set by the election thread: that thread may be stuck in a
    # hung renew while the watchdog has already stepped us down.
    metrics.leader.set_function(lambda: 1.0 if leading() else 0.0)
    controller = Controller(kube, source, namespace=args.namespace, hooks=metrics,
                            backfill_s=args.backfill_seconds, limits=limits, may_write=leading)
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
            max_age_s=args.external_metrics_max_age, limits=serving)).start()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the cycle, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if elector is not None:
        el = elector

        def elect() -> None:
            while not stop.is_set():
                el.step(time.time())
                stop.wait(el.config.retry_period_s)

        threading.Thread(target=elect, daemon=True, name="election").start()

    def probe_api() -> None:
        # /readyz: the API server answered once (its own thread, so the loop's leadership
        # check stays a pure read).
        while not stop.is_set() and not health.api_ok:
            try:
                kube.call("GET", "/version")
                health.api_ok = True
            except Exception as exc:
                log.warning("API server not reachable yet: %s", exc)
                stop.wait(args.tick)

    threading.Thread(target=probe_api, daemon=True, name="api-probe").start()

    def is_leader(_now: float) -> bool:
        return leading()

    def on_cycle(_start: float, seconds: float) -> None:
        metrics.cycle.observe(seconds)

    def pause(seconds: float) -> None:
        stop.wait(seconds)  # wakes at once on SIGTERM

    log.info("controller started", extra={"identity": args.identity})
    run_forever(controller, tick_s=args.tick, should_stop=stop.is_set, is_leader=is_leader,
                sleep=pause, on_cycle=on_cycle, progress=health.tick)
    if elector is not None:
        elector.release(time.time())
    controller.close()
    server.shutdown()
    if external is not None:
        external.stop()
    log.info("controller stopped")
    return 0
