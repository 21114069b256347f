"""Request-level engine: every request is routed, queued, scheduled step by step like vLLM.

Model (per replica), following vLLM's V1 scheduler (``vllm/v1/core/sched/scheduler.py``
in vllm-project/vllm @ 00024d314514900f361ad072af6931e403b7f589; the facts carry over,
the code is ours):

* Router: each arrival goes to the *ready* replica with the fewest requests in flight
  (waiting + running), like common LLM routers' least-outstanding policy. With no ready
  replica it waits in the router's shared FIFO queue until one is.
* Steps: the engine runs one step after another while it has work. A step has a token
  budget of ``max_num_batched_tokens``. The running requests come first, in the order
  they were admitted: a decoding request takes 1 token, a request still prefilling takes
  the rest of its prompt, capped by the budget left (chunked prefill). Then, only if no
  request was preempted in this step, waiting requests are admitted first come first
  served while budget is left, fewer than ``max_num_seqs`` run, and the KV cache has
  the blocks for the chunk they would prefill; the first that does not fit stops the
  admissions (head-of-line, like vLLM's FCFS policy).
* KV cache by blocks: a request holds ``ceil(computed tokens / block_size)`` blocks,
  growing as it decodes (nothing is reserved for its output up front). When a running
  request needs a block and none is free, the most recently admitted running request is
  preempted (recompute): its blocks are freed, it goes to the *front* of the waiting
  queue, and when re-admitted it prefills its prompt and the tokens it had generated
  again. ``preemptions_total`` counts these.
* Step time = ``step_base_s + step_per_prefill_token_s x prefill tokens +
  step_per_decode_seq_s x decoding sequences`` (see ``ReplicaProfile``). A request's
  first token comes at the end of the step that prefills its prompt's last chunk; each
  later step in which it decodes emits one more token.
* ``num_requests_waiting`` counts the replica queues plus the router's; ``running``
  counts admitted requests (prefilling or decoding), as vLLM's gauges do.
* Scale-down drains: a removed replica takes no new requests, the requests in its queue
  that have no token yet go back to the router, and it keeps costing GPU time until its
  last request ends. A replica removed while still starting stops costing at once.

Speed: a run of identical decode-only steps (no prefill, nobody admissible, no block
shortage possible) is one event: a per-replica step counter ``V`` counts decode steps,
a decoding request that finishes at ``V_fin`` sits in a heap, and its KV tokens are
``k + V``. Whether a block shortage is possible is decided from an upper bound on the
blocks in use (O(1)); only near a full cache are blocks counted request by request.
The result is the same as stepping one step at a time (the tests check this against a
plain step-by-step scheduler).
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
# Request states.
_QUEUED, _PREFILL, _DECODE, _DONE = 0, 1, 2, 3
_INF = math.inf
_TIE_S = 1e-9
"""Times closer than this are one instant: step boundaries are sums of float step
times (0.06 + 40 x 0.011 = 0.49999999999999994 s), arrivals are trace times (0.5 s); an
arrival that close to a boundary is at it, and the step starting there admits it."""


class _Replica:
    __slots__ = (
        "busy_s", "chunks", "cnt", "dec", "held", "n_dec", "pre_blocks", "record", "rid",
        "running", "seg_m", "seg_s", "seg_t0", "state", "sum_k", "sum_vat", "v",
        "version", "waiting",
    )

    def __init__(self, rid: int, record: ReplicaRecord, state: int, block_size: int) -> None:
        self.rid = rid
        self.record = record
        self.state = state
        self.waiting: deque[int] = deque()
        self.running: dict[int, None] = {}
        """Admitted requests in admission order (an ordered set; the last is preempted)."""
        self.dec: list[tuple[int, int, int]] = []
        """Heap of decoding requests: (step count V at which it finishes, id, version)."""
        self.n_dec = 0
        self.sum_k = 0
        """Sum over decoding requests of (computed tokens - V)."""
        self.sum_vat = 0
        """Sum over decoding requests of the V at which they started decoding."""
        self.v = 0
        """Decode steps done (each decoding request gains one token per step)."""
        self.pre_blocks = 0
        """KV blocks held by requests in the prefill state."""
        self.held = 0
        """KV blocks held by decoding requests: sum of ceil((k + V) / block_size)."""
        self.cnt = [0] * block_size
        """Decoding requests by k mod block_size: those with (k + V) % block_size == 0
        need a new block for the token of the next step."""
        self.chunks: list[tuple[int, int]] = []
        """Prefill chunks (request, tokens) of the step under way."""
        self.seg_t0 = 0.0
        self.seg_s = 0.0
        self.seg_m = 0
        """Steps in the segment under way (0: idle); they end at seg_t0 + seg_m x seg_s."""
        self.busy_s = 0.0
        self.version = 0


class RequestEngine:
    """Event-driven simulation of a fleet of vLLM-like replicas."""

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
        p_in = np.asarray(prompt_tokens, dtype=np.int64)
        o_in = np.asarray(output_tokens, dtype=np.int64)
        n = len(self._arr)
        if not (len(p_in) == len(o_in) == n):
            raise ValueError("arrivals, prompt_tokens and output_tokens differ in length")
        # A request must fit in the whole cache alone, or it would preempt itself for
        # ever; vLLM refuses longer ones (max_model_len). Clip: prompt first, then output.
        cap = profile.kv_cache_tokens
        p_arr = np.clip(p_in, 1, max(1, cap - 1))
        o_arr = np.clip(o_in, 1, None)
        o_arr = np.minimum(o_arr, np.maximum(1, cap - p_arr))
        self._p: list[int] = p_arr.tolist()
        self._o: list[int] = o_arr.tolist()
        self._bs = profile.block_size
        self._total_blocks = profile.num_gpu_blocks
        self._budget = profile.max_num_batched_tokens
        self._max_seqs = profile.max_num_seqs
        self._t_base = profile.step_base_s
        self._t_tok = profile.step_per_prefill_token_s
        self._t_seq = profile.step_per_decode_seq_s
        # Per-request state (lists: cheaper than numpy for scalar access).
        self._st = [_QUEUED] * n
        self._g = [0] * n
        """Output tokens generated (for a decoding request: as of when it started)."""
        self._c = [0] * n
        """Computed tokens (prefill progress; for a decoding request see ``_k``)."""
        self._k = [0] * n
        self._vat = [0] * n
        self._ver = [0] * n
        self._rep = [-1] * n
        self.ttft = np.full(n, _INF)
        self.e2e = np.full(n, _INF)
        self._ttft_l: list[float] = [_INF] * n
        self._e2e_l: list[float] = [_INF] * n
        self._next_arrival = 0
        self._cold = ColdStarts(profile, seed)
        self._replicas: list[_Replica] = []
        self._ready: list[_Replica] = []
        self._pending: deque[int] = deque()
        self._events: list[tuple[float, int, int]] = []
        self._hist = [0] * (len(TTFT_BUCKETS_S) + 1)
        self._ttft_sum = 0.0
        self._first_tokens = 0
        self._prompt_total = 0.0
        self._gen_done = 0.0
        self._preemptions = 0
        for _ in range(initial_replicas):
            self._add_replica(0.0, ready_now=True)

    @property
    def arrivals(self) -> npt.NDArray[np.float64]:
        """Arrival times of all requests (seconds)."""
        return np.asarray(self._arr, dtype=np.float64)

    @property
    def preemptions(self) -> int:
        """Preemptions so far (all replicas)."""
        return self._preemptions

    # --- fleet ----------------------------------------------------------------------
    def _add_replica(self, t: float, *, ready_now: bool = False) -> None:
        ready_at = t if ready_now else t + self._cold.draw()
        rec = ReplicaRecord(requested_at=t, ready_at=ready_at)
        r = _Replica(len(self._replicas), rec, _READY if ready_now else _STARTING,
                     self._bs)
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
        victims = sorted(self._ready, key=lambda r: (len(r.waiting) + len(r.running), -r.rid))
        for r in victims[:remove]:
            self._ready.remove(r)
            r.state = _DRAINING
            r.record.removal_at = t
            # Requests with no token yet go back to the router; preempted ones that
            # already streamed tokens stay (their client is connected to this pod).
            keep: deque[int] = deque()
            for i in r.waiting:
                if self._g[i] == 0:
                    self._pending.append(i)
                else:
                    keep.append(i)
            r.waiting = keep
            self._finish_drain_if_empty(r, t)
        self._route_pending(t)

    def _finish_drain_if_empty(self, r: _Replica, t: float) -> None:
        if r.state == _DRAINING and not r.running and not r.waiting:
            r.state = _GONE
            r.version += 1
            r.seg_m = 0
            r.record.ended_at = t

    # --- events ---------------------------------------------------------------------
    def _schedule(self, r: _Replica, t: float) -> None:
        r.version += 1
        heapq.heappush(self._events, (t, r.version, r.rid))

    def _crossings(self, r: _Replica, m: int) -> int:
        """New blocks decoding requests claim over the next ``m`` decode steps."""
        bs = self._bs
        full, rest = divmod(m, bs)
        n = full * r.n_dec
        if rest:
            # Steps v .. v + rest - 1 claim cnt[(-v) % bs], cnt[(-v - 1) % bs], ...: a
            # window of ``rest`` slots ending at hi = (-v) % bs, wrapping below 0.
            cnt = r.cnt
            hi = (-r.v) % bs
            lo = hi - rest + 1
            n += sum(cnt[lo:hi + 1]) if lo >= 0 else sum(cnt[:hi + 1]) + sum(cnt[bs + lo:])
        return n

    def _add_decoder(self, r: _Replica, i: int, k: int) -> None:
        self._k[i] = k
        self._vat[i] = r.v
        r.n_dec += 1
        r.sum_k += k
        r.sum_vat += r.v
        r.held += -(-(k + r.v) // self._bs)
        r.cnt[k % self._bs] += 1

    def _drop_decoder(self, r: _Replica, i: int) -> None:
        k = self._k[i]
        r.n_dec -= 1
        r.sum_k -= k
        r.sum_vat -= self._vat[i]
        r.held -= -(-(k + r.v) // self._bs)
        r.cnt[k % self._bs] -= 1

    def _preempt_last(self, r: _Replica) -> tuple[int, int]:
        """Preempt the most recently admitted running request (recompute).

        Returns (the request, the KV blocks it freed)."""
        j, _ = r.running.popitem()
        bs = self._bs
        if self._st[j] == _DECODE:
            freed = -(-(self._k[j] + r.v) // bs)
            done = r.v - self._vat[j]
            self._g[j] += done
            self._gen_done += done
            self._ver[j] += 1  # its heap entry is now stale
            self._drop_decoder(r, j)
        else:  # prefilling (only ever the last admitted)
            freed = -(-self._c[j] // bs)
            r.pre_blocks -= freed
        self._c[j] = 0
        self._st[j] = _QUEUED
        r.waiting.appendleft(j)
        self._preemptions += 1
        return j, freed

    def _schedule_running_exactly(self, r: _Replica) -> tuple[bool, int]:
        """Step 1 near a full cache: give each running request, in admission order, the
        blocks for its tokens of this step, preempting the last admitted while short.

        Returns (whether anyone was preempted, free blocks after this step's claims)."""
        bs, st, c, k = self._bs, self._st, self._c, self._k
        free = self._total_blocks - r.pre_blocks - r.held
        preempted = False
        for i in list(r.running):
            if i not in r.running:
                continue  # preempted while an earlier request was short of blocks
            if st[i] == _DECODE:
                want = 1 if (k[i] + r.v) % bs == 0 else 0
            else:
                tok = min(self._p[i] + self._g[i] - c[i], self._budget - r.n_dec)
                want = -(-(c[i] + tok) // bs) - -(-c[i] // bs)
            lost = False
            while want > free:
                j, freed = self._preempt_last(r)
                preempted = True
                free += freed
                if j == i:
                    lost = True
                    break
            if not lost:
                free -= want
        return preempted, free

    def _plan(self, r: _Replica, t: float) -> None:
        """Schedule the next step(s) of replica ``r`` from a step boundary at ``t``."""
        bs = self._bs
        total = self._total_blocks
        budget = self._budget
        st, c = self._st, self._c
        while True:
            if r.state == _GONE or r.state == _STARTING:
                r.seg_m = 0
                return
            preempted = False
            # 1. Running requests: every decode takes one token (budget >= max_num_seqs
            #    leaves room for all of them), then the partly prefilled request (at most
            #    one: the last admitted) the next chunk of its prompt.
            running = r.running
            x = x_tok = x_need = 0
            if running:
                x = next(reversed(running))
                if st[x] == _PREFILL:
                    cx = c[x]
                    x_tok = min(self._p[x] + self._g[x] - cx, budget - r.n_dec)
                    x_need = -(-(cx + x_tok) // bs) - -(-cx // bs)
                else:
                    x = -1
            else:
                x = -1
            avail = total - r.pre_blocks - r.held - r.cnt[(-r.v) % bs] - x_need
            if avail < 0:
                preempted, avail = self._schedule_running_exactly(r)
                x, x_tok, x_need = self._partial(r)
            n_dec = r.n_dec
            left = budget - n_dec
            chunks: list[tuple[int, int]] = []
            p_tok = 0
            if x >= 0:
                chunks.append((x, x_tok))
                c[x] += x_tok
                r.pre_blocks += x_need
                left -= x_tok
                p_tok = x_tok
            # 2. Waiting requests, first come first served, unless this step preempted.
            waiting = r.waiting
            if waiting and not preempted:
                cap_seqs = self._max_seqs
                pl, gl = self._p, self._g
                while waiting and left > 0 and len(running) < cap_seqs:
                    i = waiting[0]
                    n = pl[i] + gl[i]
                    if n > left:
                        n = left
                    need_b = -(-n // bs)
                    if need_b > avail:
                        break
                    waiting.popleft()
                    avail -= need_b
                    left -= n
                    p_tok += n
                    running[i] = None
                    st[i] = _PREFILL
                    c[i] = n
                    r.pre_blocks += need_b
                    chunks.append((i, n))
            if chunks:
                r.chunks = chunks
                r.seg_m = 1
                r.seg_s = self._t_base + self._t_seq * n_dec + self._t_tok * p_tok
            elif n_dec:
                r.chunks = []
                # Steps 2..m claim at most ceil((m - 1) / bs) blocks per decoding request:
                # no shortage while that fits in the blocks left. After a preemption the
                # waiting requests get their chance at the next step.
                m = self._head_fin(r) - r.v
                m_safe = 1 + bs * (avail // n_dec) if avail > 0 else 1
                if m_safe < m:
                    m = m_safe
                if (preempted and waiting) or m < 1:
                    m = 1
                r.seg_m = m
                r.seg_s = self._t_base + self._t_seq * n_dec
            else:
                r.chunks = []
                r.seg_m = 0
                if waiting and preempted:
                    continue  # all were preempted: the next step admits again
                self._finish_drain_if_empty(r, t)
                r.version += 1  # idle: cancel any stale event
                return
            r.seg_t0 = t
            r.version += 1
            heapq.heappush(self._events, (t + r.seg_m * r.seg_s, r.version, r.rid))
            return

    def _partial(self, r: _Replica) -> tuple[int, int, int]:
        """(request, tokens, new blocks) of the partly prefilled request's next chunk,
        or (-1, 0, 0): it is always the last admitted, so the budget left after the
        decodes is its own."""
        if not r.running:
            return -1, 0, 0
        x = next(reversed(r.running))
        if self._st[x] != _PREFILL:
            return -1, 0, 0
        c = self._c[x]
        tok = min(self._p[x] + self._g[x] - c, self._budget - r.n_dec)
        bs = self._bs
        return x, tok, -(-(c + tok) // bs) - -(-c // bs)

    def _head_fin(self, r: _Replica) -> int:
        dec, ver = r.dec, self._ver
        while dec and ver[dec[0][1]] != dec[0][2]:
            heapq.heappop(dec)
        return dec[0][0] if dec else r.v

    def _on_step_end(self, r: _Replica, t: float, m: int) -> None:
        """Apply ``m`` steps of the segment under way, ending at ``t``."""
        r.busy_s += t - r.seg_t0
        if r.n_dec:
            if m == 1:
                r.held += r.cnt[(-r.v) % self._bs]
            else:
                r.held += self._crossings(r, m)
        r.v += m
        v = r.v
        bs = self._bs
        st, c, g = self._st, self._c, self._g
        for i, _ in r.chunks:
            if st[i] != _PREFILL:
                continue
            target = self._p[i] + g[i]
            if c[i] < target:
                continue  # a partial chunk: still prefilling
            r.pre_blocks -= -(-c[i] // bs)
            if g[i] == 0:
                ttft = t - self._arr[i]
                self._ttft_l[i] = ttft
                self._hist[bisect_left(TTFT_BUCKETS_S, ttft)] += 1
                self._ttft_sum += ttft
                self._first_tokens += 1
                self._prompt_total += self._p[i]
            g[i] += 1
            self._gen_done += 1
            if g[i] >= self._o[i]:
                self._complete(r, i, t)
                continue
            st[i] = _DECODE
            self._add_decoder(r, i, c[i] - v)
            heapq.heappush(r.dec, (v + self._o[i] - g[i], i, self._ver[i]))
        r.chunks = []
        dec, ver = r.dec, self._ver
        while dec and dec[0][0] <= v:
            fv, i, ve = heapq.heappop(dec)
            if ver[i] != ve:
                continue
            done = fv - self._vat[i]
            g[i] += done
            self._gen_done += done
            self._drop_decoder(r, i)
            self._complete(r, i, t)
        r.seg_m = 0

    def _complete(self, r: _Replica, i: int, t: float) -> None:
        self._e2e_l[i] = t - self._arr[i]
        self._st[i] = _DONE
        del r.running[i]

    def _on_replica_event(self, r: _Replica, t: float) -> None:
        if r.state == _STARTING:
            r.state = _READY
            r.version += 1
            self._ready.append(r)
            self._route_pending(t)
            return
        if r.seg_m:
            if r.chunks or r.n_dec:
                self._on_step_end(r, t, r.seg_m)
            else:
                r.seg_m = 0
        self._plan(r, t)

    def _route(self, i: int, t: float) -> None:
        ready = self._ready
        if not ready:
            self._pending.append(i)
            return
        r = ready[0]
        if len(ready) > 1:
            best = len(r.waiting) + len(r.running)
            for cand in ready:
                load = len(cand.waiting) + len(cand.running)
                if load < best:
                    r, best = cand, load
        was_empty = not r.waiting
        r.waiting.append(i)
        if r.seg_m == 0:
            # Idle: the next step starts now, after every arrival at this instant
            # (arrivals are handled before events at equal times).
            self._schedule(r, t)
        elif (was_empty and r.seg_m > 1 and len(r.running) < self.profile.max_num_seqs):
            # A run of decode-only steps: stop it at the next step boundary, where the
            # scheduler sees the new request. An arrival within _TIE_S after a boundary
            # counts as at it; the event then goes at ``t``, not at the boundary's float
            # value (0.06 + 40 x 0.011 = 0.49999999999999994 for an arrival at 0.5):
            # an event before ``t`` would run that step before a second arrival at the
            # same instant ``t`` is routed, and admit one of the two only.
            done = math.ceil((t - r.seg_t0) / r.seg_s - _TIE_S / r.seg_s)
            m = max(1, done)
            if m < r.seg_m:
                r.seg_m = m
                self._schedule(r, max(t, r.seg_t0 + m * r.seg_s))

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
            # Same instant within _TIE_S: the arrival first, so the step starting then
            # sees it (as ``_route`` counts an arrival just after a boundary as at it).
            if te + _TIE_S < ta or ta > t:
                _, _, rid = heapq.heappop(events)
                self._on_replica_event(replicas[rid], te)
            else:
                self._next_arrival += 1
                self._route(self._next_arrival - 1, ta)

    # --- observation ----------------------------------------------------------------
    def sample(self, t: float) -> EngineSample:
        gen = self._gen_done
        busy = 0.0
        waiting = float(len(self._pending))
        running = 0.0
        kv = []
        for r in self._replicas:
            busy += r.busy_s
            if r.state == _GONE or r.state == _STARTING:
                continue
            waiting += len(r.waiting)
            running += len(r.running)
            steps = 0.0
            if r.seg_m and r.seg_s > 0:
                elapsed = max(0.0, min(t, r.seg_t0 + r.seg_m * r.seg_s) - r.seg_t0)
                busy += elapsed
                steps = min(float(r.seg_m), elapsed / r.seg_s)
            gen += r.n_dec * (r.v + steps) - r.sum_vat
            # Blocks as of the last step boundary passed.
            held = r.held + (self._crossings(r, int(steps)) if r.n_dec and not r.chunks
                             else 0)
            kv.append(min(1.0, (held + r.pre_blocks) / self._total_blocks))
        cum = np.cumsum(self._hist).tolist()
        return EngineSample(
            t=t, requests_total=float(self._next_arrival), prompt_tokens_total=self._prompt_total,
            generation_tokens_total=gen, ttft_buckets=tuple(float(x) for x in cum),
            ttft_sum=self._ttft_sum, waiting=waiting, running=running,
            kv_usage=float(np.mean(kv)) if kv else math.nan, gpu_busy_seconds_total=busy,
            ready_replicas=len(self._ready), first_tokens_total=float(self._first_tokens),
            preemptions_total=float(self._preemptions),
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
