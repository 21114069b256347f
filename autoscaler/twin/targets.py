"""One simulated target (a Deployment of replicas) of the twin: a fluid engine and the
per-pod ledger its exporter view is split into.

``SimTarget.step(t)`` moves the fleet to simulated time ``t`` (seconds since the start):
pending replica changes are actuated first (the new replicas then pay the profile's cold
start), the engine advances whole 1-s ticks, and when a tick completed the new fleet totals
are handed out to the pods that are ready. Between ticks nothing changes, so with a 0.2 s
wall step at real time only one step in five costs anything.

A target that *follows pods* (``TargetConfig.follow_pods``) does not simulate its own
replicas: ``set_pods`` gives it the pods that are Ready in a real API server (their real
names), the engine serves with exactly that many replicas (new ones serve from the next
1-s tick: the cold start already happened in the cluster, so the engine's is zero), and
only those pods export series. Pods still starting export nothing and get no requests;
a pod that leaves the Ready set takes its series with it; a new one starts from zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from autoscaler.errors import SpecError
from autoscaler.sim.fleet import ReplicaRecord
from autoscaler.sim.fluid_engine import FluidEngine
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.twin.expositions import EngineContext, Exposition, PodView
from autoscaler.twin.ledger import FloatArray, PodLedger

# integer channels, then one per TTFT bucket (+Inf last)
_ARRIVALS, _SUCCESS, _PROMPT, _GEN, _QUEUE_US = range(5)
_N_FIXED = 5
# float channels
_BUSY, _TTFT_SUM = 0, 1


@dataclass(frozen=True, slots=True)
class TargetConfig:
    namespace: str
    workload: str
    profile: ReplicaProfile
    rates_rps: FloatArray
    """Arrival rate per 1-s tick."""
    prompt_tokens: float
    output_tokens: float
    initial_replicas: int
    seed: int
    slo_ttft_s: float = 2.0
    follow_pods: bool = False
    """The ready pods come from ``SimTarget.set_pods`` (a real cluster), not from the
    engine's own cold starts; ``initial_replicas`` is then ignored (no pod is known yet)."""


class SimTarget:
    """A fleet the twin simulates and exports."""

    def __init__(self, cfg: TargetConfig, exposition: Exposition, model: str) -> None:
        self.cfg = cfg
        self.namespace = cfg.namespace
        self.workload = cfg.workload
        self.exposition = exposition
        self._external: list[str] | None = [] if cfg.follow_pods else None
        # Following pods, the cluster pays the cold start; the engine's replicas serve at
        # once (from the next tick) when a pod turns Ready.
        profile = (replace(cfg.profile, cold_start_s=0.0, cold_start_jitter_s=0.0)
                   if cfg.follow_pods else cfg.profile)
        self.engine = FluidEngine(
            profile, cfg.rates_rps, prompt_tokens=cfg.prompt_tokens,
            output_tokens=cfg.output_tokens, slo_ttft_s=cfg.slo_ttft_s,
            initial_replicas=0 if cfg.follow_pods else cfg.initial_replicas, seed=cfg.seed)
        self.ctx = EngineContext(
            model=model, kv_cache_tokens=cfg.profile.kv_cache_tokens,
            max_num_seqs=cfg.profile.max_num_seqs,
            gpus_per_replica=cfg.profile.gpus_per_replica,
            mean_prompt_tokens=cfg.prompt_tokens, mean_output_tokens=cfg.output_tokens)
        self._bounds = np.asarray(exposition.ttft_bounds_s, dtype=np.float64)
        self._nb = len(self._bounds) + 1
        self.ledger = PodLedger(_N_FIXED + self._nb, 2)
        self._weights: list[tuple[int, int] | None] = [None, (_N_FIXED, _N_FIXED + self._nb)]
        self._hist = np.zeros(self._nb, dtype=np.float64)  # fleet TTFT counts (floats)
        self._ttft_sum = 0.0
        # Released into the histogram (first token given): whole ticks so far.
        self._rel_k = 0
        self._rel_cum = 0.0
        self._rel_hist = np.zeros(self._nb, dtype=np.float64)
        self._rel_sum = 0.0
        self._queue_s = 0.0
        self._busy_last = 0.0
        self._k = 0  # ticks already accounted
        self._t = 0.0
        self.desired = 0 if cfg.follow_pods else cfg.initial_replicas
        self._pending: list[int] = []
        self._names: dict[int, str] = {}
        self._alive: list[ReplicaRecord] = []  # records not yet picked for removal
        self._seen = 0  # engine records already looked at
        self._rng = np.random.default_rng(cfg.seed)
        self._rs_hash = "".join(self._rng.choice(list("bcdfghjklmnpqrstvwxz2456789"), 9))
        self.waiting = 0.0
        self.running = 0.0
        self.kv_usage = math.nan
        self.gpu_util = 0.0
        self.ready = 0
        self.ended = False
        """True once simulated time passed the end of the trace (no more arrivals)."""
        self._account(0.0, force=True)

    # --- control --------------------------------------------------------------------------
    @property
    def follows_pods(self) -> bool:
        return self._external is not None

    def set_replicas(self, n: int) -> None:
        """Ask for ``n`` replicas; actuated at the next step."""
        if self._external is not None:
            raise SpecError("replicas", n, "nothing: this workload follows a cluster's pods")
        self.desired = n
        self._pending.append(n)

    def set_pods(self, ready: Sequence[str]) -> bool:
        """The pods Ready in the cluster now (following targets only); actuated at the next
        step. Order does not matter; a pod keeps its counters while it stays. True if the
        set changed."""
        if self._external is None:
            raise SpecError("pods", list(ready), "a workload created with follow_pods")
        old = set(self._external)
        new = set(ready)
        if new == old:
            return False
        # Oldest first, then the new ones by name: the ledger keeps rows by name anyway.
        self._external = [p for p in self._external if p in new] + sorted(new - old)
        self.desired = len(new)
        self._pending.append(len(new))
        return True

    def step(self, t: float) -> bool:
        """Simulate up to ``t``; True if the exported values changed."""
        t = max(t, self._t)
        eng = self.engine
        eng.advance(t)
        changed = False
        if self._pending:
            for n in self._pending:
                eng.set_target(n, t)
            self._pending.clear()
            changed = True
        self._t = t
        return self._account(t, force=changed) or changed

    # --- bookkeeping ----------------------------------------------------------------------
    def _pod_name(self, rec_id: int) -> str:
        name = self._names.get(rec_id)
        if name is None:
            suffix = "".join(self._rng.choice(list("bcdfghjklmnpqrstvwxz2456789"), 5))
            name = f"{self.workload}-{self._rs_hash}-{suffix}"
            self._names[rec_id] = name
        return name

    def ready_pods(self) -> list[str]:
        """Names of the replicas serving now, oldest first."""
        if self._external is not None:
            return list(self._external)
        eng = self.engine
        now = self._k * eng.tick_s + 1e-9
        records = eng.records()  # every replica ever: only look at the new ones
        self._alive.extend(records[self._seen:])
        self._seen = len(records)
        self._alive = [r for r in self._alive if r.removal_at is None]
        recs = [r for r in self._alive if r.ready_at <= now]
        recs.sort(key=lambda r: r.ready_at)
        return [self._pod_name(id(r)) for r in recs[: eng.ready_count()]]

    def _account(self, t: float, *, force: bool = False) -> bool:
        eng = self.engine
        n_ticks = len(eng.arrivals)
        k = min(n_ticks, math.floor(t / eng.tick_s + 1e-9))
        self.ended = k >= n_ticks
        if k == self._k and not force:
            return False
        k0, self._k = self._k, k
        dt = (k - k0) * eng.tick_s
        s = eng.sample(k * eng.tick_s)
        if k > k0:
            # queue-seconds: the trapezoid of the waiting count over the stretch
            self._queue_s += 0.5 * (self.waiting + s.waiting) * dt
        d_sum = self._release(k, s.first_tokens_total)
        d_busy = s.gpu_busy_seconds_total - self._busy_last
        self._busy_last = s.gpu_busy_seconds_total
        pods = self.ready_pods()
        self.ledger.set_pods(pods)
        R = len(pods)
        ints = np.empty(_N_FIXED + self._nb, dtype=np.float64)
        ints[_ARRIVALS] = s.requests_total
        # Completed requests: the engine counts the tokens of served requests at the mean
        # sizes, so served = prompt tokens / mean prompt (or generated / mean output).
        prompt, output = self.cfg.prompt_tokens, self.cfg.output_tokens
        ints[_SUCCESS] = (s.prompt_tokens_total / prompt if prompt > 0
                          else s.generation_tokens_total / max(1.0, output))
        ints[_PROMPT] = s.prompt_tokens_total
        ints[_GEN] = s.generation_tokens_total
        ints[_QUEUE_US] = self._queue_s * 1e6
        ints[_N_FIXED:] = self._hist
        self.ledger.add(ints, np.asarray([d_busy, d_sum]), self._weights)
        self.waiting = s.waiting
        self.running = s.running
        self.kv_usage = s.kv_usage
        self.ready = R
        if dt > 0 and R > 0:
            self.gpu_util = min(1.0, max(0.0, d_busy / (dt * R)))
        elif R == 0:
            self.gpu_util = 0.0
        return True

    def _release(self, k: int, first_tokens: float) -> float:
        """Count requests into the TTFT histogram when they get their first token, as vLLM
        does (not when they arrive): under a backlog the count lags the arrivals. First
        tokens come in arrival order (FCFS), so ``first_tokens`` = F means the first F
        arrivals: whole ticks of arrivals, then a share of the next, each in the bucket of
        its tick's TTFT. Returns the increment of the TTFT sum."""
        eng = self.engine
        arrivals, ttft = eng.arrivals, eng.ttft
        before = self._ttft_sum
        while (self._rel_k < k
               and self._rel_cum + arrivals[self._rel_k] <= first_tokens + 1e-9):
            i = self._rel_k
            self._rel_hist[int(np.searchsorted(self._bounds, ttft[i], side="left"))] += \
                arrivals[i]
            if math.isfinite(ttft[i]):
                self._rel_sum += arrivals[i] * ttft[i]
            self._rel_cum += arrivals[i]
            self._rel_k += 1
        hist = self._rel_hist.copy()
        total = self._rel_sum
        part = first_tokens - self._rel_cum
        if part > 0 and self._rel_k < k:
            i = self._rel_k
            hist[int(np.searchsorted(self._bounds, ttft[i], side="left"))] += part
            if math.isfinite(ttft[i]):
                total += part * ttft[i]
        # never backwards (a counter), whatever the float noise
        self._hist = np.maximum(self._hist, hist)
        self._ttft_sum = max(self._ttft_sum, total)
        return self._ttft_sum - before

    # --- views ----------------------------------------------------------------------------
    def pod_views(self) -> list[PodView]:
        led = self.ledger
        R = len(led.pods)
        out: list[PodView] = []
        kv = 0.0 if math.isnan(self.kv_usage) else self.kv_usage
        for i, pod in enumerate(led.pods):
            row = led.ints[i]
            out.append(PodView(
                labels={"pod": pod, "namespace": self.namespace, "workload": self.workload},
                arrivals=float(row[_ARRIVALS]), success=float(row[_SUCCESS]),
                prompt_tokens=float(row[_PROMPT]), generation_tokens=float(row[_GEN]),
                queue_us=float(row[_QUEUE_US]),
                ttft_buckets=tuple(row[_N_FIXED:].astype(np.float64).tolist()),
                ttft_sum_s=float(led.floats[i, _TTFT_SUM]),
                waiting=self.waiting / R, running=self.running / R, kv_usage=kv,
                gpu_util=self.gpu_util))
        return out

    def arrival_rate_1m(self) -> float:
        """True mean arrival rate over the last simulated minute (requests/s)."""
        k = self._k
        if k == 0:
            return 0.0
        k0 = max(0, k - 60)
        return float(self.engine.arrivals[k0:k].sum()) / ((k - k0) * self.engine.tick_s)

    def truth(self) -> dict[str, object]:
        """The fleet's ground truth, next to what its pods export."""
        led = self.ledger
        names = ["arrivals", "success", "prompt_tokens", "generation_tokens", "queue_us"]

        def fixed(v: np.ndarray) -> dict[str, int]:
            return {n: int(v[i]) for i, n in enumerate(names)}

        def hist(v: np.ndarray) -> list[float]:
            return np.cumsum(v[_N_FIXED:]).tolist()  # type: ignore[no-any-return]

        exported = led.exported_ints()
        return {
            "namespace": self.namespace, "workload": self.workload,
            "sim_time_s": self._k * self.engine.tick_s,
            "trace_ended": self.ended,
            "arrival_rate_1m": self.arrival_rate_1m(),
            "waiting": self.waiting, "running": self.running,
            "kv_usage": None if math.isnan(self.kv_usage) else self.kv_usage,
            "gpu_utilization": self.gpu_util,
            "ready_replicas": self.ready,
            "provisioned_replicas": self.engine.provisioned_count(),
            "desired_replicas": self.desired,
            "pods": list(led.pods),
            "ttft_bounds_s": list(self.exposition.ttft_bounds_s),
            "fleet": {**fixed(led.emitted_ints), "ttft_cumulative": hist(led.emitted_ints),
                      "ttft_sum_s": float(led.fleet_floats[_TTFT_SUM]),
                      "gpu_busy_s": float(led.fleet_floats[_BUSY])},
            "exported": {**fixed(exported), "ttft_cumulative": hist(exported),
                         "ttft_sum_s": float(led.exported_floats()[_TTFT_SUM])},
            "retired": {**fixed(led.retired_ints), "ttft_cumulative": hist(led.retired_ints)},
            "unattributed": {**fixed(led.unattributed_ints),
                             "ttft_cumulative": hist(led.unattributed_ints)},
        }
