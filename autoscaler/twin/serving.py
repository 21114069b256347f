"""The twin exporter: simulated fleets in (accelerated) wall time, served over HTTP.

One port serves everything (loopback by default):

* ``GET /metrics``: every target's ready pods in the chosen engine's exposition;
* ``GET /replicas``, ``PUT|POST /replicas`` with ``{"replicas": N}`` (every target),
  ``{"replicas": N, "workload": "w"}`` or ``{"replicas": {"w-0": 3, "w-1": 5}}``;
* ``GET /truth``: each target's ground truth (``{"sim_time_s", "targets": [...]}``);
* ``POST /faults``: ``{"counter_reset": true}`` (optionally ``"workload"``/``"pod"``: that
  pod restarts, its counters go back to 0), ``{"drop_workload": "w"}`` (the target's
  series disappear), ``{"restore_workload": "w"}``, ``{"delay_s": X}`` (slow /metrics),
  ``{"clear": true}``;
* ``GET /healthz``.

A background thread moves simulated time to ``speed x (wall - start)`` every ``step_s``
seconds; with ``clock=False`` only ``advance_to`` moves it, which tests use to be exact.
The replica count comes from ``set_replicas`` / HTTP or from a replicas file, re-read when
its modification time changes; a file that does not parse is logged and ignored (the last
good value stays). Or, for targets built with ``follow_pods``, from a real cluster: the
pods a ``PodSource`` reports Ready (``follow``, polled every ``interval_s``, or
``set_pods``) are the replicas that serve and export, under their own names.

Everything shared between the HTTP threads and the stepping thread is guarded by one lock.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from autoscaler.errors import SpecError
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.traces.model import Trace
from autoscaler.twin.expositions import Exposition, PodView, get_exposition, render_text
from autoscaler.twin.targets import SimTarget, TargetConfig

log = logging.getLogger(__name__)

MAX_REPLICAS = 10_000
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse_replicas(data: object, workloads: Sequence[str]) -> dict[str, int]:
    """Workload -> replicas from a replicas file's or request's content.

    Accepted: ``N``; ``{"replicas": N}``; ``{"replicas": N, "workload": "w"}``;
    ``{"replicas": {"w": N, ...}}``; ``{"w": N, ...}``. Raises ``SpecError``.
    """
    def count(v: object, where: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
            raise SpecError(where, v, f"a whole number of replicas, 0..{MAX_REPLICAS}")
        n = int(v)
        if not 0 <= n <= MAX_REPLICAS:
            raise SpecError(where, v, f"0..{MAX_REPLICAS}")
        return n

    def known(w: object) -> str:
        if w not in workloads:
            raise SpecError("workload", w, f"one of {', '.join(workloads)}")
        return str(w)

    if not isinstance(data, dict):
        n = count(data, "replicas")
        return dict.fromkeys(workloads, n)
    if "replicas" in data:
        r = data["replicas"]
        if isinstance(r, dict):
            return {known(w): count(v, f"replicas.{w}") for w, v in r.items()}
        n = count(r, "replicas")
        if "workload" in data:
            return {known(data["workload"]): n}
        return dict.fromkeys(workloads, n)
    if not data:
        raise SpecError("replicas", data, '{"replicas": N} or {"<workload>": N, ...}')
    return {known(w): count(v, f"replicas.{w}") for w, v in data.items()}


def target_rates(rates: np.ndarray, index: int, seed: int) -> np.ndarray:
    """The 1-s arrival rates of target ``index`` from the trace's 1-s ``rates``: target 0
    replays the trace as is; target i > 0 is the trace rotated by a seeded offset and scaled
    by a seeded factor in [0.5, 1.5], so a thousand targets are not a thousand copies of
    one curve."""
    if index == 0:
        return rates
    rng = np.random.default_rng([seed, index])
    shift = int(rng.integers(0, len(rates)))
    return np.roll(rates, shift) * float(rng.uniform(0.5, 1.5))


def default_initial_replicas(rates: np.ndarray, capacity_rps: float) -> int:
    """Enough replicas for the first minute's peak at 80% of capacity (at least 1)."""
    peak = float(rates[:60].max()) if len(rates) else 0.0
    return max(1, math.ceil(peak / (0.8 * capacity_rps))) if capacity_rps > 0 else 1


class PodSource(Protocol):
    """Where a following twin learns which pods serve (a cluster's API, in tests a fake)."""

    def ready_pods(self) -> Mapping[str, Sequence[str]] | None:
        """Workload -> names of its pods that are Ready now; None when the cluster could
        not be read (the twin then keeps the pods it knew: an API hiccup is not a scale-in).
        A workload left out has no Ready pod."""
        ...


class _TwinCollector(Collector):
    """Yields the chosen engine's families for every exported target."""

    def __init__(self, twin: Twin) -> None:
        self._twin = twin

    def collect(self) -> Iterable[Metric]:
        return self._twin.families()


class Twin:
    """Simulated inference fleets exporting engine metrics."""

    def __init__(
        self,
        configs: Sequence[TargetConfig],
        *,
        preset: str = "vllm",
        model: str = "meta-llama/Llama-3.1-8B-Instruct",
        speed: float = 1.0,
        step_s: float = 0.2,
        replicas_file: str | Path | None = None,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not configs:
            raise SpecError("targets", 0, ">= 1")
        if not (math.isfinite(speed) and 0 < speed <= 1e6):
            raise SpecError("speed", speed, "> 0 and <= 1e6")
        if not 0.001 <= step_s <= 60:
            raise SpecError("stepSeconds", step_s, "0.001..60")
        self.exposition: Exposition = get_exposition(preset)
        self.preset = preset
        self.speed = speed
        self.step_s = step_s
        self._clock = wall_clock
        self.targets = [SimTarget(c, self.exposition, model) for c in configs]
        self._by_name = {t.workload: t for t in self.targets}
        if len(self._by_name) != len(self.targets):
            raise SpecError("workload", [t.workload for t in self.targets], "unique names")
        self._lock = threading.RLock()
        self._sim_t = 0.0
        self._dropped: set[str] = set()
        self._delay_s = 0.0
        self._replicas_file = Path(replicas_file) if replicas_file is not None else None
        self._file_mtime: float | None = None
        self.last_step_cost_s = 0.0
        """Wall seconds of the last background step (all targets)."""
        self._thread: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self._follower: threading.Thread | None = None
        self._stop = threading.Event()
        self._t0 = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_TwinCollector(self))

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_trace(
        cls,
        trace: Trace,
        profile: ReplicaProfile,
        *,
        targets: int = 1,
        namespace: str = "default",
        workload: str = "llm",
        initial_replicas: int | None = None,
        seed: int = 0,
        slo_ttft_s: float = 2.0,
        loops: int = 1,
        follow_pods: bool = False,
        **kwargs: Any,
    ) -> Twin:
        """``targets`` fleets replaying ``trace`` (see ``target_rates``); with one target its
        workload is ``workload``, with more ``<workload>-<i>``. ``loops`` replays the trace
        that many times back to back; after the last one arrivals stop and the exported
        values freeze (``trace_ended`` in the truth). ``follow_pods``: the targets serve
        with the pods a cluster reports Ready (``follow`` / ``set_pods``), not their own."""
        if not 1 <= targets <= 100_000:
            raise SpecError("targets", targets, "1..100000")
        if not 1 <= loops <= 10_000:
            raise SpecError("loops", loops, "1..10000")
        if trace.prompt_tokens is not None and trace.output_tokens is not None and len(
                trace.prompt_tokens):
            prompt = float(np.mean(trace.prompt_tokens))
            output = float(np.mean(trace.output_tokens))
        else:
            prompt, output = trace.token_mix.mean_prompt_tokens, trace.token_mix.mean_output_tokens
        mu = profile.max_throughput_rps(prompt, output)
        configs = []
        base = trace.binned_rates(1.0)
        for i in range(targets):
            rates = target_rates(base, i, seed)
            if loops > 1:
                rates = np.tile(rates, loops)
            n0 = (default_initial_replicas(rates, mu) if initial_replicas is None
                  else initial_replicas)
            if not 0 <= n0 <= MAX_REPLICAS:
                raise SpecError("initialReplicas", n0, f"0..{MAX_REPLICAS}")
            configs.append(TargetConfig(
                namespace=namespace, workload=workload if targets == 1 else f"{workload}-{i}",
                profile=profile, rates_rps=rates, prompt_tokens=prompt, output_tokens=output,
                initial_replicas=n0, seed=seed + i, slo_ttft_s=slo_ttft_s,
                follow_pods=follow_pods))
        return cls(configs, **kwargs)

    # --- simulation -----------------------------------------------------------------------
    @property
    def sim_time(self) -> float:
        return self._sim_t

    def advance_to(self, sim_t: float) -> None:
        """Move every target to simulated time ``sim_t`` (never backwards)."""
        with self._lock:
            self._read_replicas_file()
            self._sim_t = max(self._sim_t, sim_t)
            for t in self.targets:
                t.step(self._sim_t)

    def set_replicas(self, replicas: int, workload: str | None = None) -> None:
        """Ask for ``replicas`` in one target (or all); new ones pay the cold start."""
        names = [t.workload for t in self.targets]
        change = parse_replicas(
            replicas if workload is None else {"replicas": replicas, "workload": workload},
            names)
        self._apply(change)

    def _apply(self, change: dict[str, int]) -> None:
        with self._lock:
            for w, n in change.items():
                self._by_name[w].set_replicas(n)
            # actuate now, at the current simulated time
            for w in change:
                self._by_name[w].step(self._sim_t)

    def set_pods(self, ready: Mapping[str, Sequence[str]]) -> None:
        """The Ready pods of every following workload (one left out has none now); applied
        at the current simulated time, as a replica change is."""
        with self._lock:
            changed = []
            for t in self.targets:
                if t.follows_pods and t.set_pods(list(ready.get(t.workload, ()))):
                    changed.append(t)
            for t in changed:
                t.step(self._sim_t)

    def follow(self, source: PodSource, interval_s: float = 0.5) -> None:
        """Poll ``source`` every ``interval_s`` wall seconds (from ``start``'s thread set)
        and serve with the pods it reports Ready."""
        if not 0.01 <= interval_s <= 60:
            raise SpecError("podPollSeconds", interval_s, "0.01..60")
        if not any(t.follows_pods for t in self.targets):
            raise SpecError("follow_pods", False, "True for at least one target")

        def poll() -> None:
            while not self._stop.is_set():
                try:
                    ready = source.ready_pods()
                    if ready is not None:
                        self.set_pods(ready)
                except Exception:  # keep following; a bad read must not freeze the fleet
                    log.exception("reading the ready pods failed")
                self._stop.wait(interval_s)

        self._stop.clear()
        self._follower = threading.Thread(target=poll, name="twin-pods", daemon=True)
        self._follower.start()

    def replicas(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {t.workload: {"desired": t.desired, "ready": t.ready,
                                 "provisioned": t.engine.provisioned_count()}
                    for t in self.targets}

    def _read_replicas_file(self) -> None:
        p = self._replicas_file
        if p is None:
            return
        try:
            mtime = p.stat().st_mtime_ns / 1e9
        except OSError:
            return  # not there (yet): keep the current count
        if mtime == self._file_mtime:
            return
        self._file_mtime = mtime
        try:
            text = p.read_text(encoding="utf-8").strip()
            change = parse_replicas(json.loads(text), [t.workload for t in self.targets])
        except (OSError, ValueError) as exc:  # SpecError and JSONDecodeError are ValueErrors
            log.warning("replicas file %s ignored (keeping the last good value): %s", p, exc)
            return
        changed = {w: n for w, n in change.items() if self._by_name[w].desired != n}
        if changed:
            log.info("replicas file %s: %s", p, changed)
            for w, n in changed.items():
                self._by_name[w].set_replicas(n)

    # --- faults ---------------------------------------------------------------------------
    def counter_reset(self, workload: str | None = None, pod: str | None = None) -> str:
        """Restart one pod (its counters drop to 0); returns its name."""
        with self._lock:
            targets = [self._by_name[workload]] if workload else self.targets
            for t in targets:
                pods = t.ledger.pods
                name = pod if pod is not None else (pods[0] if pods else None)
                if name is not None and t.ledger.reset_pod(name):
                    return name
        raise SpecError("pod", pod, "a ready pod of the twin")

    def drop_workload(self, workload: str, dropped: bool = True) -> None:
        with self._lock:
            if workload not in self._by_name:
                raise SpecError("workload", workload, "a workload of the twin")
            if dropped:
                self._dropped.add(workload)
            else:
                self._dropped.discard(workload)

    def set_delay(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and 0 <= seconds <= 600):
            raise SpecError("delay_s", seconds, "0..600")
        self._delay_s = seconds

    def apply_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        """The ``POST /faults`` body; returns what was done."""
        done: dict[str, Any] = {}
        if body.get("clear"):
            with self._lock:
                self._dropped.clear()
            self._delay_s = 0.0
            done["cleared"] = True
        if body.get("counter_reset"):
            done["counter_reset"] = self.counter_reset(body.get("workload"), body.get("pod"))
        if "drop_workload" in body:
            self.drop_workload(str(body["drop_workload"]))
            done["dropped"] = body["drop_workload"]
        if "restore_workload" in body:
            self.drop_workload(str(body["restore_workload"]), dropped=False)
            done["restored"] = body["restore_workload"]
        if "delay_s" in body:
            v = body["delay_s"]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise SpecError("delay_s", v, "a number of seconds, 0..600")
            self.set_delay(float(v))
            done["delay_s"] = float(v)
        if not done:
            raise SpecError("faults", body, "counter_reset, drop_workload, restore_workload, "
                            "delay_s or clear")
        return done

    # --- views ----------------------------------------------------------------------------
    def families(self) -> list[Metric]:
        with self._lock:
            pods: list[PodView] = []
            for t in self.targets:
                if t.workload not in self._dropped:
                    pods.extend(t.pod_views())
            return self.exposition.families(pods, self.targets[0].ctx)

    def metrics_text(self) -> str:
        return render_text(self.registry.collect())

    def truth(self) -> dict[str, Any]:
        with self._lock:
            targets = []
            for tgt in self.targets:
                d = tgt.truth()
                # What Prometheus' rate() shows: counters grow `speed` times faster in wall
                # time than in simulated time (gauges and latencies are not scaled).
                d["arrival_rate_1m_per_wall_s"] = tgt.arrival_rate_1m() * self.speed
                targets.append(d)
            return {"sim_time_s": self._sim_t, "speed": self.speed, "preset": self.preset,
                    "dropped": sorted(self._dropped), "targets": targets}

    # --- threads --------------------------------------------------------------------------
    def start(self, port: int = 0, host: str = "127.0.0.1", *, clock: bool = True) -> int:
        """Serve on ``host:port`` (0: any free port) and, with ``clock``, start moving
        simulated time with the wall clock. Returns the bound port."""
        if self._server is not None:
            raise RuntimeError("twin already started")
        server = ThreadingHTTPServer((host, port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._server_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="twin-http",
            daemon=True)
        self._server_thread.start()
        if clock:
            self.start_clock()
        return int(server.server_address[1])

    def start_clock(self) -> None:
        """Move simulated time with the wall clock from now on (from the current simulated
        time): a closed loop starts serving first and starts the trace when ready."""
        if self._thread is not None:
            raise RuntimeError("twin clock already running")
        self._stop.clear()
        self._t0 = self._clock() - self._sim_t / self.speed
        self._thread = threading.Thread(target=self._run, name="twin-clock", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.perf_counter()
            try:
                self.advance_to(self.speed * (self._clock() - self._t0))
            except Exception:  # keep serving; a bug here must not kill the exporter silently
                log.exception("twin step failed")
            self.last_step_cost_s = time.perf_counter() - began
            self._stop.wait(max(0.0, self.step_s - self.last_step_cost_s))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._follower is not None:
            self._follower.join(timeout=10)
            self._follower = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join(timeout=10)
            self._server_thread = None

    def __enter__(self) -> Twin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(twin: Twin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("twin http: " + format, *args)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The scraper gave up (its scrape timeout passed while a 1,000-target
                # exposition was rendered): nothing to answer, and not an error of ours.
                log.debug("twin http: client went away")

        def _json(self, status: int, obj: object) -> None:
            self._send(status, json.dumps(obj).encode())

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                return json.loads(raw or b"null")
            except ValueError as exc:
                raise SpecError("body", raw[:80].decode(errors="replace"), "JSON") from exc

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                if twin._delay_s > 0:
                    time.sleep(twin._delay_s)
                self._send(HTTPStatus.OK, twin.metrics_text().encode(), CONTENT_TYPE)
            elif path == "/replicas":
                self._json(HTTPStatus.OK, twin.replicas())
            elif path == "/truth":
                self._json(HTTPStatus.OK, twin.truth())
            elif path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {path}"})

        def _post(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/replicas":
                    change = parse_replicas(self._body(), [t.workload for t in twin.targets])
                    twin._apply(change)
                    self._json(HTTPStatus.OK, twin.replicas())
                elif path == "/faults" and self.command == "POST":
                    body = self._body()
                    if not isinstance(body, dict):
                        raise SpecError("faults", body, "a JSON object")
                    self._json(HTTPStatus.OK, twin.apply_faults(body))
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {path}"})
            except SpecError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

        do_POST = _post
        do_PUT = _post

    return Handler
