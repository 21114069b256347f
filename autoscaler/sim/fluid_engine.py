"""Fluid engine: arrivals as a rate, the fleet as a server of known capacity, 1 s ticks.

For multi-day, high-rate traces (14 days at ~1,000 req/s) simulating each request is too
slow; here each tick moves ``rate x dt`` requests into a backlog and the ready replicas
serve up to their capacity. It approximates the request engine's vLLM-like scheduler
(token budget with chunked prefill, ``max_num_seqs``, KV blocks) with the same
``ReplicaProfile``:

* capacity per replica ``mu_k`` = ``profile.max_throughput_rps(P_k, O_k)`` for the mean
  prompt P_k and output O_k tokens of tick k (per-time means when the trace has them,
  see ``token_means_per_tick``). Its full batch is the smallest of ``max_num_seqs``, what
  the KV cache holds and what the token budget per step allows (``max_batch``), so the
  queue grows once the budget per second or the KV cache binds, not only at
  ``max_num_seqs``;
* the backlog (requests waiting for admission) follows Lindley's recursion
  B_k = max(0, B_{k-1} + a_k - c_k), computed for a stretch of ticks with constant fleet
  in closed form: with S_k the cumulative sum of (a - c), B_k = S_k - min(-B_0,
  min_{j<=k} S_j);
* TTFT of a tick's arrivals = backlog drain time B / (R x mu) (read linearly between the
  tick's start and end) + the idle replica's TTFT (``ceil(P / budget)`` steps of
  ``step_base_s`` plus P prefill tokens) + the M/D/1 wait behind other prefills at the
  prefill utilisation rho = lambda x P x ``step_per_prefill_token_s``, i.e.
  rho x p / (2 (1 - rho)). Attainment of a tick = the fraction of its arrivals whose
  TTFT, so read, is within the SLO;
* the exported gauges follow the same steady state: ``waiting`` = the backlog plus the
  requests in that M/D/1 wait (Little's law), ``running`` = decoding batch + prefilling,
  ``kv_usage`` = batch x (P + O/2 + block_size/2) / KV tokens; ``first_tokens_total``
  counts requests served, so it flattens at capacity under overload;
* preemptions are not modelled (``preemptions_total`` stays 0; the request engine has
  them). Why: they come from vLLM admitting against the blocks a request holds *now*
  and running out as decodes grow, a transient of individual requests that a rate has
  no trace of, and their number depends on the length distribution, not on the means the
  fluid engine keeps; no closed form of it was found that could be checked. How much it
  matters (``benchmarks/engine_preemption.py``, fixed fleets, both engines on the same
  arrivals): only where the KV cache binds before ``max_num_seqs`` (mean prompt +
  output / 2 above ``kv_cache_tokens / max_num_seqs``, 1,548 tokens on llama3-8b-h100;
  none of the public traces), and only near saturation. Up to 0.90 of ``mu`` both
  engines meet the SLO (98.4-100%); at 0.95 the request engine thrashes (18-59%
  attainment, 0.17-1.21 preemptions per request, sustained throughput 0.81-0.91 of
  ``mu``) while this engine still gives 92-95%. So near a KV-bound fleet's capacity this
  engine is optimistic by about 10-19% of throughput;
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
from autoscaler.traces.model import Trace

_BOUNDS = np.asarray(TTFT_BUCKETS_S, dtype=np.float64)
_SCALAR_MAX_TICKS = 12
"""Stretches up to this many ticks run in plain Python (numpy's call overhead dominates)."""

FloatArray = npt.NDArray[np.float64]


def token_means_per_tick(trace: Trace, n_ticks: int, tick_s: float = 1.0
                         ) -> tuple[FloatArray, FloatArray] | tuple[float, float]:
    """Mean (prompt, output) tokens of the arrivals in each tick (at the tick's middle).

    A request-level trace uses its own requests' means; a rate-level trace with
    ``token_windows`` (e.g. ServeGen's per-6-hour lengths) reads ``trace.token_means_at``,
    which falls back to ``token_mix`` where a window is unknown; otherwise ``token_mix``.
    Constant means come back as two numbers.
    """
    if trace.prompt_tokens is not None and trace.output_tokens is not None and len(
            trace.prompt_tokens):
        return float(np.mean(trace.prompt_tokens)), float(np.mean(trace.output_tokens))
    p0, o0 = trace.token_mix.mean_prompt_tokens, trace.token_mix.mean_output_tokens
    if trace.token_windows is None or n_ticks == 0:
        return p0, o0
    p, o = trace.token_means_at((np.arange(n_ticks, dtype=np.float64) + 0.5) * tick_s)
    if np.all(p == p[0]) and np.all(o == o[0]):
        return float(p[0]), float(o[0])
    return p, o


def _max_batch(profile: ReplicaProfile, p: FloatArray, o: FloatArray) -> FloatArray:
    """``ReplicaProfile.max_batch`` for arrays of token means."""
    p = np.maximum(1.0, p)
    o = np.maximum(1.0, o)
    kv = np.floor(profile.kv_cache_tokens / (p + o / 2.0 + profile.block_size / 2.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        budget = np.where(o > 1.0, np.floor(profile.max_num_batched_tokens * (o - 1.0)
                                            / (o - 1.0 + p)), np.inf)
    b = np.minimum(np.minimum(float(profile.max_num_seqs), kv), budget)
    return np.asarray(np.maximum(1.0, b), dtype=np.float64)


def throughput_rps(profile: ReplicaProfile, prompt_tokens: npt.ArrayLike,
                   output_tokens: npt.ArrayLike) -> FloatArray:
    """``ReplicaProfile.max_throughput_rps`` for arrays of token means: what one replica of
    the fluid engine serves per second at each (prompt, output) mean."""
    pm = np.maximum(1.0, np.asarray(prompt_tokens, dtype=np.float64))
    om = np.maximum(1.0, np.asarray(output_tokens, dtype=np.float64))
    b = _max_batch(profile, pm, om)
    step_b = profile.step_base_s + profile.step_per_decode_seq_s * b
    return np.asarray(1.0 / (pm * profile.step_per_prefill_token_s + (om - 1.0) * step_b / b),
                      dtype=np.float64)


class FluidEngine:
    """Tick-based fluid approximation of the fleet."""

    name = "fluid"

    def __init__(
        self,
        profile: ReplicaProfile,
        rates_rps: npt.ArrayLike,
        *,
        prompt_tokens: float | npt.ArrayLike,
        output_tokens: float | npt.ArrayLike,
        slo_ttft_s: float | npt.ArrayLike,
        initial_replicas: int,
        seed: int = 0,
        tick_s: float = 1.0,
    ) -> None:
        """``prompt_tokens`` / ``output_tokens``: mean tokens, one number or one per tick;
        ``slo_ttft_s`` likewise (a TTFT objective that grows with the prompt)."""
        self.profile = profile
        self.tick_s = tick_s
        rates = np.asarray(rates_rps, dtype=np.float64)
        self._a = rates * tick_s  # arrivals per tick
        n = len(self._a)
        pm = np.maximum(1.0, np.broadcast_to(np.asarray(prompt_tokens, dtype=np.float64),
                                             (n,)))
        om = np.maximum(1.0, np.broadcast_to(np.asarray(output_tokens, dtype=np.float64),
                                             (n,)))
        self._P = np.ascontiguousarray(pm)
        self._O = np.ascontiguousarray(om)
        slo = np.asarray(slo_ttft_s, dtype=np.float64)
        self._slo = np.ascontiguousarray(np.broadcast_to(slo, (n,)))
        """TTFT objective per tick (seconds)."""
        b = _max_batch(profile, pm, om)
        self._bmax = b
        per_tok = profile.step_per_prefill_token_s
        step_b = profile.step_base_s + profile.step_per_decode_seq_s * b
        self._mu = 1.0 / (pm * per_tok + (om - 1.0) * step_b / b)
        """Capacity of one replica per tick (req/s)."""
        self._pf = pm * per_tok
        """Prefill work per request (seconds of step time)."""
        self._p = np.ceil(pm / profile.max_num_batched_tokens) * profile.step_base_s + self._pf
        """TTFT of a request on an idle replica (seconds)."""
        self._const = bool(n == 0 or (np.all(pm == pm[0]) and np.all(om == om[0])
                                      and np.all(self._slo == self._slo[0])))
        """Token means the same in every tick (enables the one-bucket fast path)."""
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
        self._prompt_total = 0.0
        self._gen_total = 0.0
        self._busy = 0.0
        for _ in range(initial_replicas):
            rec = ReplicaRecord(requested_at=0.0, ready_at=0.0)
            self._records.append(rec)
            self._ready.append(rec)

    @property
    def capacity_rps(self) -> float:
        """Sustainable requests/s of one replica for the mean token mix of the trace."""
        return float(np.mean(self._mu)) if len(self._mu) else 0.0

    def _tick(self) -> int:
        """Index of the last simulated tick (for the token means in force now)."""
        return min(max(0, self._k - 1), len(self._a) - 1) if len(self._a) else 0

    # --- load-dependent steady-state quantities ---------------------------------------
    def _decoding(self, lam: float, k: int) -> tuple[float, float]:
        """(sequences decoding, prefill share of step time) on one replica serving
        ``lam`` req/s with tick ``k``'s token means.

        Little's law on the decode phase: a request decodes for O - 1 steps, and a step
        lasts (base + per_seq x b) / (1 - f), f = lam x P x per_token being the share of
        step time spent on prefill chunks. So b = lam (O - 1) (base + per_seq x b) /
        (1 - f), solved for b, capped at the full batch.
        """
        if not len(self._a):
            return 0.0, 0.0
        prof = self.profile
        f = min(0.999, lam * float(self._pf[k]))
        kk = lam * max(0.0, float(self._O[k]) - 1.0) / (1.0 - f)
        denom = 1.0 - kk * prof.step_per_decode_seq_s
        bmax = float(self._bmax[k])
        b = bmax if denom <= 0 else min(bmax, kk * prof.step_base_s / denom)
        return b, f

    def _e2e_s(self, lam: float) -> float:
        if not len(self._a):
            return 0.0
        k = self._tick()
        b, f = self._decoding(lam, k)
        step = self.profile.step_time_s(max(1, round(b)))
        return float(self._p[k]) + max(0.0, float(self._O[k]) - 1.0) * step / (1.0 - f)

    def _queue_wait(self, lam: float, k: int) -> float:
        """Mean M/D/1 wait behind other prefills on one replica serving ``lam`` req/s."""
        rho = min(0.99, lam * float(self._pf[k]))
        return rho * float(self._p[k]) / (2.0 * (1.0 - rho))

    def _busy_share(self, lam: float, k: int) -> float:
        b, f = self._decoding(lam, k)
        return min(1.0, f + (1.0 - f) * (1.0 - math.exp(-b)))
    # --- fleet ------------------------------------------------------------------------
    def records(self) -> list[ReplicaRecord]:
        return self._records

    def ready_count(self) -> int:
        return len(self._ready)

    def provisioned_count(self) -> int:
        if self._draining:  # called at every scrape; usually nothing drains
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
        n = k1 - k0
        if R > 0:
            rate = R * self._mu[k0:k1]
            s = np.cumsum(a - rate * dt)
        else:
            s = np.cumsum(a)
        b_end = s - np.minimum(-self._backlog, np.minimum.accumulate(s))
        np.maximum(b_end, 0.0, out=b_end)  # float noise
        b_start = np.empty_like(b_end)
        b_start[0] = self._backlog
        b_start[1:] = b_end[:-1]
        a_sum = float(a.sum())
        total_served = self._backlog + a_sum - float(b_end[-1])
        if R > 0 and self._const and self._backlog == 0.0 and float(b_end.max()) <= 0.0:
            # Under capacity the whole stretch with fixed token means: no backlog, every
            # arrival sees the same TTFT, one histogram bucket. The test is on the backlog
            # itself, not on the cumulative surplus ``s``: after a dip a burst can leave a
            # backlog while ``s`` stays negative (s = [-5, -2] leaves 3 waiting), and the
            # fast path would then drop those 3 requests.
            lam = total_served / (R * dt * n)
            p0, pf0 = float(self._p[k0]), float(self._pf[k0])
            rho = min(0.99, lam * pf0)
            p_eff = p0 + rho * p0 / (2.0 * (1.0 - rho))
            self.ttft[k0:k1] = p_eff
            self.met[k0:k1] = 1.0 if p_eff <= float(self._slo[k0]) else 0.0
            self._hist[int(np.searchsorted(_BOUNDS, p_eff, side="left"))] += a_sum
            self._ttft_sum += a_sum * p_eff
            self._busy += R * self._busy_share(lam, k1 - 1) * dt * n
            self._last_lam = float(a[-1]) / (R * dt)
            self._req_total += a_sum
            self._served_total += total_served
            self._prompt_total += total_served * float(self._P[k0])
            self._gen_total += total_served * float(self._O[k0])
            self._backlog = 0.0
            self._k = k1
            return
        served = b_start + a - b_end
        if R > 0:
            lam = total_served / (R * dt * n)
            pf = self._pf[k0:k1]
            p = self._p[k0:k1]
            rho_k = np.minimum(0.99, lam * pf)
            p_eff_k = p + rho_k * p / (2.0 * (1.0 - rho_k))
            w0 = b_start / rate
            w1 = b_end / rate
            ttft = p_eff_k + 0.5 * (w0 + w1)
            wstar = self._slo[k0:k1] - p_eff_k
            dw = w1 - w0
            with np.errstate(divide="ignore", invalid="ignore"):
                tau = np.where(dw != 0.0, (wstar - w0) / dw, 0.0)
            flat = np.where(w0 <= wstar, 1.0, 0.0)
            met = np.where(dw > 0, np.clip(tau, 0.0, 1.0),
                           np.where(dw < 0, np.clip(1.0 - tau, 0.0, 1.0), flat))
            self._busy += R * self._busy_share(lam, k1 - 1) * dt * n
            self._last_lam = float(served[-1]) / (R * dt)
        else:
            ttft = np.full(n, math.inf)
            met = np.zeros(n)
            self._last_lam = 0.0
        self.ttft[k0:k1] = ttft
        self.met[k0:k1] = met
        idx = np.searchsorted(_BOUNDS, ttft, side="left")
        add = np.bincount(idx, weights=a, minlength=len(self._hist)).tolist()
        self._hist = [h + x for h, x in zip(self._hist, add, strict=True)]
        finite = np.isfinite(ttft)
        self._ttft_sum += float(np.dot(a[finite], ttft[finite]))
        self._req_total += a_sum
        self._served_total += total_served
        self._prompt_total += float(np.dot(served, self._P[k0:k1]))
        self._gen_total += float(np.dot(served, self._O[k0:k1]))
        self._backlog = float(b_end[-1])
        self._k = k1

    def _run_scalar(self, k0: int, k1: int, R: int) -> None:
        """The same arithmetic as the vectorised path, tick by tick: cheaper than numpy's
        per-call overhead for the short stretches between frequent fleet changes."""
        a = self._a[k0:k1].tolist()
        mu = self._mu[k0:k1].tolist()
        p_l = self._p[k0:k1].tolist()
        pf_l = self._pf[k0:k1].tolist()
        pm_l = self._P[k0:k1].tolist()
        om_l = self._O[k0:k1].tolist()
        dt = self.tick_s
        b = b0 = self._backlog
        ends = []
        for x, m in zip(a, mu, strict=True):
            b = b + x - R * m * dt
            if b < 0.0:
                b = 0.0
            ends.append(b)
        n = k1 - k0
        a_sum = sum(a)
        total_served = b0 + a_sum - b
        lam = total_served / (R * dt * n)
        ttfts, mets = [], []
        hist = self._hist
        tsum = psum = osum = 0.0
        prev = b0
        slo_l = self._slo[k0:k1].tolist()
        for j, (x, be, m) in enumerate(zip(a, ends, mu, strict=True)):
            p = p_l[j]
            rho = lam * pf_l[j]
            if rho > 0.99:
                rho = 0.99
            p_eff = p + rho * p / (2.0 * (1.0 - rho))
            rate = R * m
            w0, w1 = prev / rate, be / rate
            served = prev + x - be
            psum += served * pm_l[j]
            osum += served * om_l[j]
            prev = be
            tt = p_eff + 0.5 * (w0 + w1)
            wstar = slo_l[j] - p_eff
            if w1 == w0:
                met = 1.0 if w0 <= wstar else 0.0
            else:
                tau = (wstar - w0) / (w1 - w0)
                if w1 < w0:
                    tau = 1.0 - tau
                met = 0.0 if tau < 0.0 else (1.0 if tau > 1.0 else tau)
            ttfts.append(tt)
            mets.append(met)
            hist[bisect_left(TTFT_BUCKETS_S, tt)] += x
            tsum += x * tt
        self.ttft[k0:k1] = ttfts
        self.met[k0:k1] = mets
        self._ttft_sum += tsum
        self._busy += R * self._busy_share(lam, k1 - 1) * dt * n
        self._last_lam = (ends[-2] if n > 1 else b0) + a[-1] - ends[-1]
        self._last_lam /= R * dt
        self._req_total += a_sum
        self._served_total += total_served
        self._prompt_total += float(psum)
        self._gen_total += float(osum)
        self._backlog = b
        self._k = k1

    def sample(self, t: float) -> EngineSample:
        R = len(self._ready)
        prof = self.profile
        if R and len(self._a):
            k = self._tick()
            lam = self._last_lam
            b, _ = self._decoding(lam, k)
            prefilling = lam * float(self._p[k])  # Little: requests inside their prefill step
            queued = lam * self._queue_wait(lam, k)  # Little: waiting behind prefills
            per = min(float(prof.max_num_seqs), b + prefilling)
            running = R * per
            waiting = self._backlog + R * queued
            held = float(self._P[k]) + float(self._O[k]) / 2.0 + prof.block_size / 2.0
            kv = min(1.0, per * held / prof.kv_cache_tokens)
        else:
            running, waiting, kv = 0.0, self._backlog, math.nan
        return EngineSample(
            t=t, requests_total=self._req_total,
            prompt_tokens_total=self._prompt_total,
            generation_tokens_total=self._gen_total,
            ttft_buckets=tuple(accumulate(self._hist)), ttft_sum=self._ttft_sum,
            waiting=waiting, running=running, kv_usage=kv,
            gpu_busy_seconds_total=self._busy, ready_replicas=R,
            first_tokens_total=self._served_total, preemptions_total=0.0,
        )

    def backlog(self) -> float:
        return self._backlog
