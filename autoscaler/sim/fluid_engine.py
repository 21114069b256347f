"""Fluid engine: arrivals as a rate, the fleet as a server of known capacity, 1 s ticks.

For multi-day, high-rate traces (14 days at ~1,000 req/s) simulating each request is too
slow; here each tick moves ``rate x dt`` requests into a backlog and the ready replicas
serve up to their capacity. Everything comes from the same ``ReplicaProfile`` as the
request engine:

* capacity per replica ``mu`` = ``profile.max_throughput_rps(P, O)`` for the trace's mean
  prompt P and output O tokens (sustainable throughput at full batch);
* the backlog follows Lindley's recursion B_k = max(0, B_{k-1} + a_k - c), computed for a
  stretch of ticks with constant fleet in closed form: with S_k the cumulative sum of
  (a - c), B_k = S_k - min(-B_0, min_{j<=k} S_j);
* TTFT of a tick's arrivals = backlog drain time B / (R x mu) (read linearly between the
  tick's start and end) + the unloaded prefill time P / prefill_tps + the M/D/1 wait of
  the prefill FIFO at the current prefill utilisation rho = lambda x P / prefill_tps,
  i.e. rho x p / (2 (1 - rho)). Attainment of a tick = the fraction of its arrivals whose
  TTFT, so read, is within the SLO;
* with no ready replica the tick's arrivals count as misses (a replica is minutes away,
  the SLO seconds), and they stay in the backlog to be served later;
* a scale-down removes capacity at once; the removed replica's GPU time runs on for the
  mean end-to-end latency at its load, the time its in-flight requests need to drain.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from itertools import accumulate

import numpy as np
import numpy.typing as npt

from autoscaler.sim.fleet import TTFT_BUCKETS_S, ColdStarts, EngineSample, ReplicaRecord
from autoscaler.sim.profiles import ReplicaProfile

_BOUNDS = np.asarray(TTFT_BUCKETS_S, dtype=np.float64)
_SCALAR_MAX_TICKS = 12
"""Stretches up to this many ticks run in plain Python (numpy's call overhead dominates)."""


class FluidEngine:
    """Tick-based fluid approximation of the fleet."""

    name = "fluid"

    def __init__(
        self,
        profile: ReplicaProfile,
        rates_rps: npt.ArrayLike,
        *,
        prompt_tokens: float,
        output_tokens: float,
        slo_ttft_s: float,
        initial_replicas: int,
        seed: int = 0,
        tick_s: float = 1.0,
    ) -> None:
        self.profile = profile
        self.tick_s = tick_s
        rates = np.asarray(rates_rps, dtype=np.float64)
        self._a = rates * tick_s  # arrivals per tick
        self._P = float(prompt_tokens)
        self._O = float(output_tokens)
        self._slo = slo_ttft_s
        self._mu = profile.max_throughput_rps(self._P, self._O)
        self._p = self._P / profile.prefill_tokens_per_s
        self._bmax = profile.max_batch(self._P, self._O)
        n = len(self._a)
        self.ttft = np.full(n, math.inf)
        """Estimated TTFT of each tick's arrivals (seconds)."""
        self.met = np.zeros(n)
        """Fraction of each tick's arrivals within the SLO."""
        self.arrivals = self._a
        self._k = 0  # next tick to simulate
        self._backlog = 0.0
        self._last_lam = 0.0  # per-replica service rate of the last tick (req/s)
        self._cold = ColdStarts(profile, seed)
        self._records: list[ReplicaRecord] = []
        self._ready: list[ReplicaRecord] = []
        self._starting: list[ReplicaRecord] = []
        self._draining: list[ReplicaRecord] = []
        self._hist = [0.0] * (len(TTFT_BUCKETS_S) + 1)
        self._ttft_sum = 0.0
        self._req_total = 0.0
        self._served_total = 0.0
        self._busy = 0.0
        for _ in range(initial_replicas):
            rec = ReplicaRecord(requested_at=0.0, ready_at=0.0)
            self._records.append(rec)
            self._ready.append(rec)

    @property
    def capacity_rps(self) -> float:
        """Sustainable requests/s of one replica for this token mix."""
        return self._mu

    # --- load-dependent steady-state quantities ---------------------------------------
    def _decoding(self, lam: float) -> tuple[float, float]:
        """(sequences decoding, prefill utilisation) on one replica serving ``lam`` req/s.

        Little's law on the decode phase with decode slowed by the prefill share f:
        b = lam (O-1) (base + per x b) / (1 - f), solved for b, capped at the full batch.
        """
        prof = self.profile
        f = min(0.999, lam * self._p)
        k = lam * max(0.0, self._O - 1.0) / (1.0 - f)
        denom = 1.0 - k * prof.decode_step_per_seq_s
        b = self._bmax if denom <= 0 else min(self._bmax, k * prof.decode_step_base_s / denom)
        return b, f

    def _e2e_s(self, lam: float) -> float:
        b, f = self._decoding(lam)
        step = self.profile.step_time_s(max(1, round(b)))
        return self._p + max(0.0, self._O - 1.0) * step / (1.0 - f)

    # --- fleet ------------------------------------------------------------------------
    def records(self) -> list[ReplicaRecord]:
        return self._records

    def ready_count(self) -> int:
        return len(self._ready)

    def provisioned_count(self) -> int:
        now = self._k * self.tick_s
        self._draining = [r for r in self._draining if r.ended_at is not None
                          and r.ended_at > now]
        return len(self._ready) + len(self._starting) + len(self._draining)

    def set_target(self, replicas: int, t: float) -> None:
        active = len(self._starting) + len(self._ready)
        if replicas > active:
            for _ in range(replicas - active):
                rec = ReplicaRecord(requested_at=t, ready_at=t + self._cold.draw())
                self._records.append(rec)
                insort(self._starting, rec, key=lambda r: r.ready_at)
            return
        remove = active - replicas
        while remove and self._starting:  # kept sorted by ready time: latest last
            rec = self._starting.pop()
            rec.removal_at = rec.ended_at = t
            remove -= 1
        drain = self._e2e_s(self._last_lam)
        for _ in range(remove):
            rec = self._ready.pop()
            rec.removal_at = t
            rec.ended_at = t + drain
            self._draining.append(rec)

    # --- simulation -------------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Simulate every whole tick ending at or before ``t``."""
        k_end = min(len(self._a), math.floor(t / self.tick_s + 1e-9))
        self._promote()
        while self._k < k_end:
            # A replica becoming ready inside the stretch splits it at its (next) tick.
            nxt = self._starting[0].ready_at if self._starting else math.inf
            k_ready = math.ceil(nxt / self.tick_s - 1e-9) if nxt < math.inf else k_end
            self._run(self._k, max(self._k + 1, min(k_end, k_ready)))
            self._promote()

    def _promote(self) -> None:
        """Starting replicas whose ready time has come (at the current tick) serve."""
        now = self._k * self.tick_s + 1e-9
        st = self._starting
        i = 0
        while i < len(st) and st[i].ready_at <= now:
            i += 1
        if i:
            self._ready.extend(st[:i])
            del st[:i]

    def _run(self, k0: int, k1: int) -> None:
        R = len(self._ready)
        if R > 0 and k1 - k0 <= _SCALAR_MAX_TICKS:
            self._run_scalar(k0, k1, R)
            return
        a = self._a[k0:k1]
        dt = self.tick_s
        cap = R * self._mu * dt
        s = np.cumsum(a - cap)
        b_end = s - np.minimum(-self._backlog, np.minimum.accumulate(s))
        np.maximum(b_end, 0.0, out=b_end)  # float noise
        b_start = np.empty_like(b_end)
        b_start[0] = self._backlog
        b_start[1:] = b_end[:-1]
        served = b_start + a - b_end
        total_served = self._backlog + float(a.sum()) - float(b_end[-1])
        if R > 0 and self._backlog == 0.0 and s[-1] <= 0.0 and float(s.max()) <= 0.0:
            # Under capacity the whole stretch: no backlog, every arrival sees the same
            # TTFT, one histogram bucket.
            n = k1 - k0
            lam = total_served / (R * dt * n)
            rho = min(0.99, lam * self._p)
            p_eff = self._p + rho * self._p / (2.0 * (1.0 - rho))
            self.ttft[k0:k1] = p_eff
            self.met[k0:k1] = 1.0 if p_eff <= self._slo else 0.0
            a_sum = float(a.sum())
            self._hist[int(np.searchsorted(_BOUNDS, p_eff, side="left"))] += a_sum
            self._ttft_sum += a_sum * p_eff
            b, f = self._decoding(lam)
            self._busy += R * min(1.0, f + (1.0 - f) * (1.0 - math.exp(-b))) * dt * n
            self._last_lam = float(a[-1]) / (R * dt)
            self._req_total += a_sum
            self._served_total += total_served
            self._backlog = 0.0
            self._k = k1
            return
        if R > 0:
            rate = R * self._mu
            lam = total_served / (R * dt * (k1 - k0))
            rho = min(0.99, lam * self._p)
            p_eff = self._p + rho * self._p / (2.0 * (1.0 - rho))
            w0 = b_start / rate
            w1 = b_end / rate
            ttft = p_eff + 0.5 * (w0 + w1)
            wstar = self._slo - p_eff
            dw = w1 - w0
            with np.errstate(divide="ignore", invalid="ignore"):
                tau = np.where(dw != 0.0, (wstar - w0) / dw, 0.0)
            flat = np.where(w0 <= wstar, 1.0, 0.0)
            met = np.where(dw > 0, np.clip(tau, 0.0, 1.0),
                           np.where(dw < 0, np.clip(1.0 - tau, 0.0, 1.0), flat))
            b, f = self._decoding(lam)
            busy = min(1.0, f + (1.0 - f) * (1.0 - math.exp(-b)))
            self._busy += R * busy * dt * (k1 - k0)
            self._last_lam = float(served[-1]) / (R * dt)
        else:
            ttft = np.full(k1 - k0, math.inf)
            met = np.zeros(k1 - k0)
            self._last_lam = 0.0
        self.ttft[k0:k1] = ttft
        self.met[k0:k1] = met
        idx = np.searchsorted(_BOUNDS, ttft, side="left")
        add = np.bincount(idx, weights=a, minlength=len(self._hist)).tolist()
        self._hist = [h + x for h, x in zip(self._hist, add, strict=True)]
        finite = np.isfinite(ttft)
        self._ttft_sum += float(np.dot(a[finite], ttft[finite]))
        self._req_total += float(a.sum())
        self._served_total += total_served
        self._backlog = float(b_end[-1])
        self._k = k1

    def _run_scalar(self, k0: int, k1: int, R: int) -> None:
        """The same arithmetic as the vectorised path, tick by tick: cheaper than numpy's
        per-call overhead for the short stretches between frequent fleet changes."""
        a = self._a[k0:k1].tolist()
        dt = self.tick_s
        rate = R * self._mu
        cap = rate * dt
        b = b0 = self._backlog
        ends = []
        for x in a:
            b = b + x - cap
            if b < 0.0:
                b = 0.0
            ends.append(b)
        n = k1 - k0
        a_sum = sum(a)
        total_served = b0 + a_sum - b
        lam = total_served / (R * dt * n)
        rho = min(0.99, lam * self._p)
        p_eff = self._p + rho * self._p / (2.0 * (1.0 - rho))
        wstar = self._slo - p_eff
        ttfts, mets = [], []
        hist = self._hist
        tsum = 0.0
        prev = b0
        for x, be in zip(a, ends, strict=True):
            w0, w1 = prev / rate, be / rate
            prev = be
            tt = p_eff + 0.5 * (w0 + w1)
            if w1 == w0:
                m = 1.0 if w0 <= wstar else 0.0
            else:
                tau = (wstar - w0) / (w1 - w0)
                if w1 < w0:
                    tau = 1.0 - tau
                m = 0.0 if tau < 0.0 else (1.0 if tau > 1.0 else tau)
            ttfts.append(tt)
            mets.append(m)
            hist[bisect_left(TTFT_BUCKETS_S, tt)] += x
            tsum += x * tt
        self.ttft[k0:k1] = ttfts
        self.met[k0:k1] = mets
        self._ttft_sum += tsum
        bb, f = self._decoding(lam)
        self._busy += R * min(1.0, f + (1.0 - f) * (1.0 - math.exp(-bb))) * dt * n
        self._last_lam = (ends[-2] if n > 1 else b0) + a[-1] - ends[-1]
        self._last_lam /= R * dt
        self._req_total += a_sum
        self._served_total += total_served
        self._backlog = b
        self._k = k1

    def sample(self, t: float) -> EngineSample:
        R = len(self._ready)
        if R:
            b, f = self._decoding(self._last_lam)
            per = min(float(self.profile.max_num_seqs), b + f)
            running = R * per
            kv = min(1.0, per * (self._P + self._O) / self.profile.kv_cache_tokens)
        else:
            running, kv = 0.0, math.nan
        return EngineSample(
            t=t, requests_total=self._req_total,
            prompt_tokens_total=self._served_total * self._P,
            generation_tokens_total=self._served_total * self._O,
            ttft_buckets=tuple(accumulate(self._hist)), ttft_sum=self._ttft_sum,
            waiting=self._backlog, running=running, kv_usage=kv,
            gpu_busy_seconds_total=self._busy, ready_replicas=R,
        )

    def backlog(self) -> float:
        return self._backlog
