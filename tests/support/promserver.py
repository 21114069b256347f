"""A real Prometheus server for tests, plus the small real exporters and proxies they scrape.

``PrometheusServer`` runs the Debian ``prometheus`` binary on 127.0.0.1 with a 1-s scrape
interval and a throw-away TSDB. When the binary is missing it is installed with apt (the way
CI, running as root, gets it); if that is impossible the tests fail with the reason rather
than silently skipping, unless ``AUTOSCALER_PROMETHEUS=skip`` is set.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from tests.support.debian import debian_binary
from tests.support.ports import free_port
from tests.support.procs import die_with_parent

SCRAPE_INTERVAL_S = 1.0


def prometheus_binary() -> str:
    return debian_binary("prometheus", names=("prometheus",),
                         skip_env="AUTOSCALER_PROMETHEUS", make_target="prometheus")


class PrometheusServer:
    """A real Prometheus on loopback scraping the given ``host:port`` targets."""

    def __init__(self, targets: Sequence[str], *, scrape_interval_s: float = SCRAPE_INTERVAL_S,
                 scrape_timeout_s: float | None = None, web_config: str | None = None,
                 tls_ca: str | None = None, basic_auth: tuple[str, str] | None = None,
                 rules: dict[str, Any] | None = None) -> None:
        self.binary = prometheus_binary()
        self.port = free_port()
        # With a web config (TLS and/or basic auth), readiness checks use the same.
        self.web_config = web_config
        self.tls_ca = tls_ca
        self.basic_auth = basic_auth
        scheme = "https" if tls_ca else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="prom-test-"))
        self.scrape_interval_s = scrape_interval_s
        self.scrape_timeout_s = scrape_timeout_s or scrape_interval_s
        self.targets = list(targets)
        self.rules = rules
        """A recording/alerting rule file's content (``{"groups": [...]}``), if any."""
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        cfg: dict[str, Any] = {
            "global": {"scrape_interval": f"{self.scrape_interval_s:g}s",
                       "scrape_timeout": f"{self.scrape_timeout_s:g}s"},
            # honor_labels: the exporters put namespace/workload/pod on their series, the
            # way a Kubernetes service-discovery relabelling would.
            "scrape_configs": [{"job_name": "fleet", "honor_labels": True,
                                "static_configs": [{"targets": self.targets}]}],
        }
        if self.rules is not None:
            (self.dir / "rules.yml").write_text(yaml.safe_dump(self.rules))
            cfg["rule_files"] = [str(self.dir / "rules.yml")]
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(cfg))

    def start(self) -> PrometheusServer:
        log = open(self.dir / "prometheus.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             "--log.level=warn",
             *([f"--web.config.file={self.web_config}"] if self.web_config else [])],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_tail()}")
            try:
                ready = requests.get(f"{self.url}/-/ready", timeout=1,
                                     verify=self.tls_ca or True, auth=self.basic_auth)
                if ready.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready in 30 s: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        path = self.dir / "prometheus.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])

    def set_targets(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)
        self._write_config()
        requests.post(f"{self.url}/-/reload", timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_for(self, promql: str, predicate: Callable[[list[dict[str, Any]]], bool],
                 timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll an instant query until ``predicate(result)`` holds."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            r = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
            result = r.json()["data"]["result"]
            if predicate(result):
                return result
            time.sleep(0.2)
        raise AssertionError(f"{promql!r} never satisfied the condition; last: {result}\n"
                             f"{self.log_tail()}")

    def wait_for_scrapes(self, selector: str, scrapes: int = 2, *,
                         timeout_s: float = 30.0) -> None:
        """Wait until every series ``selector`` matches has been scraped ``scrapes`` times
        since this call: what was set before the call is then in Prometheus, ``scrapes``
        samples deep.

        Read from the oldest newest-sample timestamp: at a fixed interval I, the n-th scrape
        after t0 starts after t0 + (n - 1) x I (the first is after t0), and a newest sample
        later than t0 + (n - 1) x I has n - 1 scrapes before it, all after t0. With 1-s
        scrapes and n = 2: a newest sample stamped after t0 + 1 s.
        """
        after = time.time() + (scrapes - 1) * self.scrape_interval_s
        self.wait_for(f"min(timestamp({selector}))",
                      lambda r: bool(r) and float(r[0]["value"][1]) > after, timeout_s)

    def wait_for_full_window(self, selector: str, window_s: float, *,
                             timeout_s: float = 120.0) -> None:
        """Wait until every series ``selector`` (a plain series selector) matches spans a
        ``window_s`` rate() window, so a reader sees the steady rate, not the ramp of a
        window still filling (which the observation path also calls not yet valid).

        Spanning W at interval I takes W / I + 1 samples within W + I: 30 s at 5-s scrapes
        is 7 samples within 35 s, the oldest at least 30 s before the newest.
        """
        step = self.scrape_interval_s
        need = round(window_s / step) + 1
        self.wait_for(f"min(count_over_time({selector}[{window_s + step:g}s]))",
                      lambda r: bool(r) and float(r[0]["value"][1]) >= need, timeout_s)

    def wait_for_steady(self, promql: str, value: float, *, rel: float = 0.05,
                        scrapes: int = 2, timeout_s: float = 30.0) -> None:
        """Wait until the scalar-valued ``promql`` (one series) has been within ``rel`` of
        ``value`` at every evaluation over the last ``scrapes`` scrape intervals.

        For a rate(): it has reached the value and stays there, rather than passing through
        it while its window fills (a controller reading the ramp sees a surge). One
        subquery, so the check and the span are evaluated at one instant.
        """
        step = self.scrape_interval_s
        span = f"[{scrapes * step:g}s:{step:g}s]"
        lo, hi = value * (1 - rel), value * (1 + rel)
        self.wait_for(f"min_over_time(({promql}){span}) >= {lo!r} "
                      f"and max_over_time(({promql}){span}) <= {hi!r}", bool, timeout_s)


class ScriptedExporter:
    """A real /metrics endpoint whose series the test sets directly (vLLM names).

    ``families`` is rebuilt from ``state`` on every scrape, so a test changes values (or
    removes a target, or resets a counter) between scrapes and Prometheus sees exactly that.
    Counters advance with wall time at ``rates`` per second, like a live engine.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]],
                            tuple[float, float, float]] = {}
        """(name, labels) -> (value at t0, t0, rate per second)."""
        self.gauge_times: dict[tuple[tuple[str, str], ...], float | None] = {}
        """Labels -> an explicit sample timestamp for their gauges: None for the scrape's
        own time, a number to freeze it (see ``timestamp_gauges``, ``freeze_gauges``)."""
        self.delay_s = 0.0
        self.port = free_port()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        outer = self

        class SlowHandler(http.server.BaseHTTPRequestHandler):
            # Always the classic text format: prometheus_client 0.26's OpenMetrics output
            # (which Prometheus asks for first) rewrites the colons of sample names such as
            # vllm:num_requests_running to underscores, while the text format keeps them.
            def do_GET(self) -> None:
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), SlowHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ScriptedExporter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(labels.items()))

    def set_gauge(self, name: str, labels: Mapping[str, str], value: float) -> None:
        with self.lock:
            self.gauges[(name, self._labels(labels))] = value

    def set_counter_rate(self, name: str, labels: Mapping[str, str], rate: float) -> None:
        """The counter grows at ``rate``/s from its current value (0 when new)."""
        key = (name, self._labels(labels))
        now = time.time()
        with self.lock:
            self.counters[key] = (self._counter_value(key, now), now, rate)

    def set_histogram_rates(self, name: str, labels: Mapping[str, str],
                            cumulative_rates: Mapping[str, float], sum_rate: float) -> None:
        """A histogram whose cumulative bucket counts grow at the given rates per second
        (keys are ``le`` bounds as strings, ``"+Inf"`` included)."""
        for le, rate in cumulative_rates.items():
            self.set_counter_rate(f"{name}_bucket", {**labels, "le": le}, rate)
        self.set_counter_rate(f"{name}_sum", labels, sum_rate)
        self.set_counter_rate(f"{name}_count", labels, cumulative_rates["+Inf"])

    def timestamp_gauges(self, labels: Mapping[str, str]) -> None:
        """Expose every series of ``labels`` (gauges, counters, histograms) with explicit
        timestamps (the scrape's time), so
        ``freeze_gauges`` can later stop them without Prometheus seeing a change of kind
        (a series that switches to explicit timestamps gets a staleness marker)."""
        with self.lock:
            self.gauge_times[self._labels(labels)] = None

    def freeze_gauges(self, labels: Mapping[str, str], at: float) -> None:
        """Every series of ``labels`` is exposed with the explicit timestamp ``at`` from
        now on: Prometheus (honouring timestamps) keeps that one sample and writes no staleness
        marker, so the series' newest sample grows old, as behind a stuck federation. Call
        ``timestamp_gauges`` for them before their first scrape."""
        with self.lock:
            self.gauge_times[self._labels(labels)] = at

    def reset_counters(self, labels: Mapping[str, str]) -> None:
        """A pod restart: its counters start again from 0 at their current rates."""
        now = time.time()
        with self.lock:
            for key, (_, _, rate) in list(self.counters.items()):
                if {k: v for k, v in key[1] if k != "le"} == dict(labels):
                    self.counters[key] = (0.0, now, rate)

    def remove(self, labels: Mapping[str, str]) -> None:
        """The pod goes away: all its series vanish from /metrics."""
        with self.lock:
            for d in (self.gauges, self.counters):
                for key in [k for k in d if {a: b for a, b in k[1] if a != "le"} == dict(labels)]:
                    del d[key]

    def _counter_value(self, key: tuple[str, tuple[tuple[str, str], ...]], now: float) -> float:
        if key not in self.counters:
            return 0.0
        v0, t0, rate = self.counters[key]
        return v0 + rate * (now - t0)

    def _stamp(self, labels: tuple[tuple[str, str], ...], now: float) -> float | None:
        """The explicit timestamp of a series of ``labels`` (None: Prometheus' scrape time)."""
        if labels not in self.gauge_times:
            return None
        return self.gauge_times[labels] or now

    def collect(self) -> Iterable[Metric]:
        now = time.time()
        with self.lock:
            by_name: dict[str, Any] = {}
            for (name, labels), value in self.gauges.items():
                fam = by_name.setdefault(name, GaugeMetricFamily(
                    name, name, labels=[k for k, _ in labels]))
                fam.add_metric([v for _, v in labels], value, timestamp=self._stamp(labels, now))
            histograms: dict[tuple[str, tuple[tuple[str, str], ...]],
                             dict[str, float]] = {}
            for (name, labels), _ in self.counters.items():
                value = self._counter_value((name, labels), now)
                for part in ("_bucket", "_sum", "_count"):
                    if name.endswith(part):
                        base = name.removesuffix(part)
                        plain = tuple((k, v) for k, v in labels if k != "le")
                        le = dict(labels).get("le", "")
                        histograms.setdefault((base, plain), {})[part + le] = value
                        break
                else:
                    base = name.removesuffix("_total")
                    fam = by_name.setdefault(name, CounterMetricFamily(
                        base, base, labels=[k for k, _ in labels]))
                    fam.add_metric([v for _, v in labels], value,
                                   timestamp=self._stamp(labels, now))
            for (base, plain), parts in histograms.items():
                fam = by_name.setdefault(base, HistogramMetricFamily(
                    base, base, labels=[k for k, _ in plain]))
                buckets = sorted(((k.removeprefix("_bucket"), v) for k, v in parts.items()
                                  if k.startswith("_bucket")), key=lambda kv: float(kv[0]))
                fam.add_metric([v for _, v in plain], buckets=buckets,
                               sum_value=parts.get("_sum", 0.0),
                               timestamp=self._stamp(plain, now))
            return list(by_name.values())


class DelayProxy:
    """An HTTP proxy on loopback that waits ``delay_s`` before forwarding to ``upstream``:
    a slow Prometheus (or a slow network in front of it)."""

    def __init__(self, upstream: str, delay_s: float, *,
                 require_bearer: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_s = delay_s
        self.require_bearer = require_bearer
        """When set, requests without ``Authorization: Bearer <it>`` get 401, the way
        kube-rbac-proxy or an OAuth proxy guards a Prometheus."""
        self.port = free_port()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(outer.delay_s)
                want = outer.require_bearer
                if want is not None and self.headers.get("Authorization") != f"Bearer {want}":
                    self.send_error(401)
                    return
                try:
                    r = requests.get(outer.upstream + self.path, timeout=10)
                except requests.RequestException:
                    self.send_error(502)
                    return
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
