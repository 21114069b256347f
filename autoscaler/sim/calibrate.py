"""Capacity at the SLO: how much steady load one replica takes while meeting it.

``capacity_at_slo`` bisects over the arrival rate of a seeded Poisson stream replayed on
one ready replica by the request engine (vLLM's scheduling: token budget with chunked
prefill, ``max_num_seqs``, KV blocks and preemption; see ``request_engine``). The answer
is the highest rate whose TTFT quantile stays within the SLO, and the concurrency that
goes with it by Little's law (rate x mean end-to-end latency). The same random draws are
reused at every rate (only scaled), so TTFT grows smoothly with the rate and the
bisection is well behaved.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from autoscaler.core.spec import Capacity
from autoscaler.errors import SpecError
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.sim.request_engine import run_fixed
from autoscaler.traces.model import TokenMix
from autoscaler.traces.scaling import sample_token_lengths

CALIBRATION_REQUESTS = 1500
"""Requests per trial run (the first 10% are warm-up and not judged)."""
MAX_SAMPLES = 2000
"""At most this many (prompt, output) pairs are kept from a sample (evenly spaced)."""
_ITERATIONS = 12  # bisection steps: the rate is known to 1/4096 of the bracket
STABLE_FRACTION = 0.95
"""The bracket's top: this fraction of the replica's full-batch throughput.

At or above full throughput a queue grows without bound, yet a finite trial can hide it:
with every request the same size, 1,500 requests at 100% load (about 135 s for the 8B
profile) leave the p99 TTFT under 2 s, and the bisection would report the saturation rate
itself as "capacity at the SLO". A fleet planned on that has no slack for any noise in the
arrivals. Capping the bracket at 95% keeps the answer a steady-state rate."""


TokenInput = TokenMix | tuple[float, float] | tuple[npt.ArrayLike, npt.ArrayLike]
"""A ``TokenMix``, one (prompt, output) pair, or (prompt samples, output samples)."""


def _pairs(token_mix: TokenInput) -> tuple[tuple[int, int], ...]:
    if isinstance(token_mix, TokenMix):
        # Real requests vary in length, and the variation is what makes queues form below
        # full load; draw the same lognormal mix a rate-level trace is expanded with.
        drawn_p, drawn_o = sample_token_lengths(np.random.default_rng(0), MAX_SAMPLES,
                                                token_mix)
        return tuple(zip(drawn_p.tolist(), drawn_o.tolist(), strict=True))
    prompts, outputs = token_mix
    if isinstance(prompts, int | float) and isinstance(outputs, int | float):
        return ((round(prompts), round(outputs)),)
    p = np.asarray(prompts, dtype=np.int64)
    o = np.asarray(outputs, dtype=np.int64)
    if p.shape != o.shape or p.ndim != 1 or len(p) == 0:
        raise SpecError("tokenMix", (len(p), len(o)), "two equally long, non-empty samples")
    if len(p) > MAX_SAMPLES:
        idx = np.linspace(0, len(p) - 1, MAX_SAMPLES).astype(np.int64)
        p, o = p[idx], o[idx]
    return tuple(zip(np.maximum(p, 1).tolist(), np.maximum(o, 1).tolist(), strict=True))


def capacity_at_slo(
    profile: ReplicaProfile,
    slo_ttft_s: float,
    token_mix: TokenInput,
    *,
    quantile: float = 0.99,
    slo_per_prompt_token: float = 0.0,
) -> Capacity:
    """Highest steady Poisson rate one replica sustains with TTFT ``quantile`` <= SLO.

    ``token_mix``: a ``TokenMix`` (lognormal lengths around its means), a pair of numbers
    (prompt, output), or a pair of samples (prompt tokens, output tokens) to draw from.
    ``slo_per_prompt_token``: the length-aware part of the objective
    (``core.spec.ttft_objective``): a request meets it when TTFT <= SLO + this x its prompt
    tokens, i.e. when TTFT - this x prompt <= SLO, so that shifted TTFT is what is judged.
    Raises ``SpecError`` when even an idle replica misses the SLO. Cached in-process.
    """
    if not 0.0 < quantile < 1.0:
        raise SpecError("quantile", quantile, "> 0 and < 1")
    if not slo_ttft_s > 0:
        raise SpecError("slo.ttftSeconds", slo_ttft_s, "> 0")
    rps, conc = _capacity(profile, float(slo_ttft_s), _pairs(token_mix), float(quantile),
                          float(slo_per_prompt_token))
    return Capacity(requests_per_second=rps, concurrency=conc)


def _trial(profile: ReplicaProfile, pairs: tuple[tuple[int, int], ...], rate: float,
           quantile: float, per_token: float = 0.0) -> tuple[float, float]:
    """(TTFT quantile, mean e2e) of one replica under a Poisson stream at ``rate``."""
    rng = np.random.default_rng(0)
    gaps = rng.exponential(1.0, CALIBRATION_REQUESTS)
    pick = rng.integers(0, len(pairs), CALIBRATION_REQUESTS)
    tok = np.asarray(pairs, dtype=np.int64)[pick]
    arrivals = np.cumsum(gaps) / rate
    eng = run_fixed(profile, arrivals, tok[:, 0], tok[:, 1])
    judged = slice(CALIBRATION_REQUESTS // 10, None)
    ttft = eng.ttft[judged] - per_token * tok[judged, 0]
    return float(np.quantile(ttft, quantile)), float(np.mean(eng.e2e[judged]))


@lru_cache(maxsize=256)
def _capacity(profile: ReplicaProfile, slo: float, pairs: tuple[tuple[int, int], ...],
              quantile: float, per_token: float = 0.0) -> tuple[float, float]:
    mean_p = float(np.mean([p for p, _ in pairs]))
    mean_o = float(np.mean([o for _, o in pairs]))
    hi = STABLE_FRACTION * profile.max_throughput_rps(mean_p, mean_o)
    lo = hi / 1000.0
    q_lo, e2e_lo = _trial(profile, pairs, lo, quantile, per_token)
    if q_lo > slo:
        raise SpecError("slo.ttftSeconds", slo,
                        f"> the TTFT p{quantile * 100:g} of an idle {profile.name} replica "
                        f"({q_lo:.3f} s) for this token mix")
    q_hi, e2e_hi = _trial(profile, pairs, hi, quantile, per_token)
    if q_hi <= slo:
        return hi, hi * e2e_hi
    best_e2e = e2e_lo
    for _ in range(_ITERATIONS):
        mid = 0.5 * (lo + hi)
        q, e2e = _trial(profile, pairs, mid, quantile, per_token)
        if q <= slo and math.isfinite(q):
            lo, best_e2e = mid, e2e
        else:
            hi = mid
    return lo, lo * best_e2e
