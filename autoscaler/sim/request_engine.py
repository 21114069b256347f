"""Request-level engine: every request is routed, queued, prefilled and decoded.

Model (per replica, vLLM-like continuous batching):

* Router: each arrival goes to the *ready* replica with the fewest requests in flight
  (waiting + running), like common LLM routers' least-outstanding policy. With no ready
  replica it waits in the router's shared FIFO queue until one is.
* Admission (FCFS, head-of-line blocking like vLLM's default scheduler): the head of a
  replica's queue is admitted when ``running < max_num_seqs`` and its prompt + output
  tokens fit in the free KV cache (the whole output is reserved up front, so no
  preemption is modelled).
* Prefill: admitted requests are prefilled one at a time, FIFO, at
  ``prefill_tokens_per_s``. The prefill emits the first token, so TTFT = arrival to end
  of prefill.
* Interference assumption: while a prefill runs, decode is stalled (vLLM without chunked
  prefill runs prefill-only steps first). This is pessimistic for decode latency and
  neutral for TTFT.
* Decode: all decoding sequences advance together, one token per step of
  ``step_time(batch)`` seconds. Instead of simulating each step, a per-replica *virtual
  token clock* V counts tokens emitted per sequence; a sequence entering decode at V0
  with k tokens to go finishes at V = V0 + k, kept in a heap. Between events V grows at
  1 / step_time(batch) per second, so each event costs O(log n).
* Scale-down drains: a removed replica takes no new requests, its not-yet-admitted queue
  goes back to the router, and it keeps costing GPU time until its last request ends.
  A replica removed while still starting stops costing at once.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from autoscaler.sim.fleet import TTFT_BUCKETS_S, ColdStarts, EngineSample, ReplicaRecord
from autoscaler.sim.profiles import ReplicaProfile

_STARTING, _READY, _DRAINING, _GONE = 0, 1, 2, 3
_INF = math.inf
_EPS = 1e-9


class _Replica:
    __slots__ = (
        "busy_s", "dec", "kv_used", "last_t", "n_running", "prefill_end", "prefill_q",
        "record", "rid", "state", "sum_v0", "v", "version", "waiting",
    )

    def __init__(self, rid: int, record: ReplicaRecord, state: int) -> None:
        self.rid = rid
        self.record = record
        self.state = state
        self.waiting: deque[int] = deque()
        self.prefill_q: deque[int] = deque()
        self.prefill_end = _INF
        self.dec: list[tuple[float, int]] = []
        self.v = 0.0
        self.last_t = record.requested_at
        self.kv_used = 0
        self.n_running = 0
        self.sum_v0 = 0.0
        self.busy_s = 0.0
        self.version = 0


class RequestEngine:
    """Event-driven simulation of a fleet of continuous-batching replicas."""

    name = "request"

    def __init__(
        self,
        profile: ReplicaProfile,
        arrivals_s: npt.ArrayLike,
        prompt_tokens: npt.ArrayLike,
        output_tokens: npt.ArrayLike,
        *,
        initial_replicas: int,
        seed: int = 0,
    ) -> None:
        self.profile = profile
        self._arr: list[float] = np.asarray(arrivals_s, dtype=np.float64).tolist()
        self._p: list[int] = np.asarray(prompt_tokens, dtype=np.int64).tolist()
        self._o: list[int] = np.asarray(output_tokens, dtype=np.int64).tolist()
        n = len(self._arr)
        if not (len(self._p) == len(self._o) == n):
            raise ValueError("arrivals, prompt_tokens and output_tokens differ in length")
        # A request bigger than the whole cache still runs, alone: cap its reservation.
        cap = profile.kv_cache_tokens
        self._need = [min(cap, p + o) for p, o in zip(self._p, self._o, strict=True)]
        self.ttft = np.full(n, _INF)
        self.e2e = np.full(n, _INF)
        self._ttft_l: list[float] = [_INF] * n
        self._e2e_l: list[float] = [_INF] * n
        self._next_arrival = 0
        self._now = 0.0
        self._cold = ColdStarts(profile, seed)
        self._replicas: list[_Replica] = []
        self._ready: list[_Replica] = []
        self._pending: deque[int] = deque()
        self._events: list[tuple[float, int, int]] = []
        self._hist = [0] * (len(TTFT_BUCKETS_S) + 1)
        self._ttft_sum = 0.0
        self._prompt_total = 0.0
        self._gen_done = 0.0
        for _ in range(initial_replicas):
            self._add_replica(0.0, ready_now=True)

    @property
    def arrivals(self) -> npt.NDArray[np.float64]:
        """Arrival times of all requests (seconds)."""
        return np.asarray(self._arr, dtype=np.float64)

    # --- fleet ----------------------------------------------------------------------
    def _add_replica(self, t: float, *, ready_now: bool = False) -> None:
        ready_at = t if ready_now else t + self._cold.draw()
        rec = ReplicaRecord(requested_at=t, ready_at=ready_at)
        r = _Replica(len(self._replicas), rec, _READY if ready_now else _STARTING)
        self._replicas.append(r)
        if ready_now:
            self._ready.append(r)
        else:
            self._schedule(r, ready_at)

    def records(self) -> list[ReplicaRecord]:
        return [r.record for r in self._replicas]

    def ready_count(self) -> int:
        return len(self._ready)

    def provisioned_count(self) -> int:
        return sum(1 for r in self._replicas if r.state != _GONE)

    def set_target(self, replicas: int, t: float) -> None:
        """Scale to ``replicas`` active (starting + ready) replicas at ``t``.

        Scale-down removes starting replicas first (latest to be ready first), then the
        ready ones with the fewest requests in flight, as a ReplicaSet prefers not-ready
        pods. Draining replicas are not counted and not revived.
        """
        starting = [r for r in self._replicas if r.state == _STARTING]
        active = len(starting) + len(self._ready)
        if replicas > active:
            for _ in range(replicas - active):
                self._add_replica(t)
            return
        remove = active - replicas
        starting.sort(key=lambda r: -r.record.ready_at)
        for r in starting[:remove]:
            r.state = _GONE
            r.version += 1
            r.record.removal_at = r.record.ended_at = t
        remove -= min(remove, len(starting))
        if remove <= 0:
            return
        victims = sorted(self._ready, key=lambda r: (len(r.waiting) + r.n_running, -r.rid))
        for r in victims[:remove]:
            self._sync(r, t)
            self._ready.remove(r)
            r.state = _DRAINING
            r.record.removal_at = t
            self._pending.extend(r.waiting)
            r.waiting.clear()
            self._finish_drain_if_empty(r, t)
        self._route_pending(t)

    def _finish_drain_if_empty(self, r: _Replica, t: float) -> None:
        if r.state == _DRAINING and r.n_running == 0:
            r.state = _GONE
            r.version += 1
            r.record.ended_at = t

    # --- events ---------------------------------------------------------------------
    def _schedule(self, r: _Replica, t: float) -> None:
        r.version += 1
        if t < _INF:
            heapq.heappush(self._events, (t, r.version, r.rid))

    def _reschedule(self, r: _Replica, t: float) -> None:
        if r.state == _GONE:
            return
        if r.prefill_end < _INF:
            self._schedule(r, r.prefill_end)
        elif r.dec:
            step = self.profile.decode_step_base_s + self.profile.decode_step_per_seq_s * len(
                r.dec)
            self._schedule(r, t + max(0.0, r.dec[0][0] - r.v) * step)
        else:
            r.version += 1  # nothing to do: cancel any stale event

    def _sync(self, r: _Replica, t: float) -> None:
        """Advance replica ``r``'s clocks to ``t`` (no event may lie in between)."""
        dt = t - r.last_t
        if dt <= 0:
            return
        r.last_t = t
        if r.prefill_end < _INF:
            r.busy_s += dt  # decode stalled while prefilling
        elif r.dec:
            p = self.profile
            r.v += dt / (p.decode_step_base_s + p.decode_step_per_seq_s * len(r.dec))
            r.busy_s += dt

    def _admit(self, r: _Replica, t: float) -> None:
        p = self.profile
        need = self._need
        while (r.waiting and r.n_running < p.max_num_seqs
               and r.kv_used + need[r.waiting[0]] <= p.kv_cache_tokens):
            i = r.waiting.popleft()
            r.n_running += 1
            r.kv_used += need[i]
            r.prefill_q.append(i)
        if r.prefill_end == _INF and r.prefill_q:
            r.prefill_end = t + self._p[r.prefill_q[0]] / p.prefill_tokens_per_s

    def _on_replica_event(self, r: _Replica, t: float) -> None:
        if r.state == _STARTING:
            r.state = _READY
            r.last_t = t
            r.version += 1
            self._ready.append(r)
            self._route_pending(t)
            return
        decode_due = r.prefill_end == _INF and bool(r.dec)
        self._sync(r, t)
        if decode_due:
            # This event was scheduled for the head's finish: snap V to it, so float
            # rounding at large t (t + 1e-12 == t) can never stall the clock.
            r.v = max(r.v, r.dec[0][0])
        if r.prefill_end <= t + _EPS:
            i = r.prefill_q.popleft()
            r.prefill_end = _INF
            ttft = t - self._arr[i]
            self._ttft_l[i] = ttft
            self._hist[bisect_left(TTFT_BUCKETS_S, ttft)] += 1
            self._ttft_sum += ttft
            self._prompt_total += self._p[i]
            self._gen_done += 1
            k = self._o[i] - 1
            if k <= 0:
                self._complete(r, i, t)
            else:
                heapq.heappush(r.dec, (r.v + k, i))
                r.sum_v0 += r.v
        dec = r.dec
        while dec and dec[0][0] <= r.v + _EPS:
            fv, i = heapq.heappop(dec)
            k = self._o[i] - 1
            r.sum_v0 -= fv - k
            self._gen_done += k
            self._complete(r, i, t)
        if not dec:
            r.sum_v0 = 0.0  # wipe float drift
        self._admit(r, t)
        self._finish_drain_if_empty(r, t)
        self._reschedule(r, t)

    def _complete(self, r: _Replica, i: int, t: float) -> None:
        self._e2e_l[i] = t - self._arr[i]
        r.kv_used -= self._need[i]
        r.n_running -= 1

    def _route(self, i: int, t: float) -> None:
        ready = self._ready
        if not ready:
            self._pending.append(i)
            return
        r = ready[0]
        if len(ready) > 1:
            best = len(r.waiting) + r.n_running
            for c in ready:
                load = len(c.waiting) + c.n_running
                if load < best:
                    r, best = c, load
        self._sync(r, t)
        r.waiting.append(i)
        was_idle = r.prefill_end == _INF
        self._admit(r, t)
        if was_idle and r.prefill_end < _INF:
            self._reschedule(r, t)

    def _route_pending(self, t: float) -> None:
        while self._pending and self._ready:
            self._route(self._pending.popleft(), t)

    def advance(self, t: float) -> None:
        """Process every arrival and replica event up to and including ``t``."""
        arr = self._arr
        n = len(arr)
        events = self._events
        replicas = self._replicas
        while True:
            ta = arr[self._next_arrival] if self._next_arrival < n else _INF
            while events:
                te, ver, rid = events[0]
                if replicas[rid].version != ver:
                    heapq.heappop(events)
                    continue
                break
            te = events[0][0] if events else _INF
            if min(ta, te) > t or (ta == _INF and te == _INF):
                break
            if te <= ta:
                _, _, rid = heapq.heappop(events)
                self._on_replica_event(replicas[rid], te)
            else:
                self._next_arrival += 1
                self._route(self._next_arrival - 1, ta)
        self._now = t

    # --- observation ----------------------------------------------------------------
    def sample(self, t: float) -> EngineSample:
        gen = self._gen_done
        busy = 0.0
        waiting = float(len(self._pending))
        running = 0.0
        kv = []
        for r in self._replicas:
            if r.state != _GONE and r.state != _STARTING:
                self._sync(r, t)
                gen += len(r.dec) * r.v - r.sum_v0
                waiting += len(r.waiting)
                running += r.n_running
                kv.append(r.kv_used / self.profile.kv_cache_tokens)
            busy += r.busy_s
        cum = np.cumsum(self._hist).tolist()
        return EngineSample(
            t=t, requests_total=float(self._next_arrival), prompt_tokens_total=self._prompt_total,
            generation_tokens_total=gen, ttft_buckets=tuple(float(c) for c in cum),
            ttft_sum=self._ttft_sum, waiting=waiting, running=running,
            kv_usage=float(np.mean(kv)) if kv else math.nan, gpu_busy_seconds_total=busy,
            ready_replicas=len(self._ready),
        )

    def finish(self) -> None:
        """Copy the per-request results into the numpy arrays ``ttft`` and ``e2e``."""
        self.ttft = np.asarray(self._ttft_l, dtype=np.float64)
        self.e2e = np.asarray(self._e2e_l, dtype=np.float64)


def run_fixed(
    profile: ReplicaProfile,
    arrivals_s: Sequence[float] | npt.ArrayLike,
    prompt_tokens: npt.ArrayLike,
    output_tokens: npt.ArrayLike,
    *,
    replicas: int = 1,
    until_s: float | None = None,
) -> RequestEngine:
    """Run a fixed fleet of ready replicas over the arrivals (used by calibration/tests)."""
    eng = RequestEngine(profile, arrivals_s, prompt_tokens, output_tokens,
                        initial_replicas=replicas)
    eng.advance(_INF if until_s is None else until_s)
    eng.finish()
    return eng
