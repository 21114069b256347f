"""The embedded synthetic workload: a seeded, request-level LLM serving day in 4 hours.

No file is needed, so every example and test can run without the real traces. The shape
(a compressed diurnal cycle with two sharp bursts) is fixed and documented; the seed
changes only the random draws (arrival times and token lengths).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from autoscaler.errors import SpecError
from autoscaler.traces.model import FloatArray, IntArray, TokenMix, Trace

MEAN_RATE_RPS = 9.0
"""Mean of the diurnal part of the rate (requests/s); the bursts add about 6% on top."""
PEAK_TO_TROUGH = 2.5
"""Ratio of the diurnal peak (mid-window) to the trough (both ends)."""
_AMPLITUDE = (PEAK_TO_TROUGH - 1.0) / (PEAK_TO_TROUGH + 1.0)
"""With rate = mean * (1 - A cos(2 pi t / D)), peak/trough = (1 + A) / (1 - A); 2.5 -> 3/7."""


@dataclass(frozen=True)
class Burst:
    """A sharp surge multiplying the rate by ``height`` (smooth S-shaped edges)."""

    start_fraction: float
    """Where the rise begins, as a fraction of the workload's duration."""
    height: float
    """Rate multiplier at the plateau."""
    hold_s: float
    """Plateau length after the rise, seconds."""
    rise_s: float = 30.0
    """0 -> full height in this many seconds."""
    fall_s: float = 120.0
    """Full height -> 0 in this many seconds."""


BURSTS = (
    Burst(start_fraction=0.30, height=2.4, hold_s=240.0),
    Burst(start_fraction=0.68, height=2.2, hold_s=180.0),
)
"""On the default 4-hour window: 72 min in, x2.4 for 4 min (about 24.5 req/s at the top);
163 min in, x2.2 for 3 min (about 23.4 req/s)."""

LONG_PROMPT_FRACTION = 0.08
"""Share of requests in the long-prompt class (document / RAG style)."""
PROMPT_MEDIAN, PROMPT_LOG_SIGMA, PROMPT_BOUNDS = 1000.0, 0.9, (16, 8192)
LONG_PROMPT_MEDIAN, LONG_PROMPT_LOG_SIGMA, LONG_PROMPT_BOUNDS = 6000.0, 0.35, (2048, 16384)
OUTPUT_MEDIAN, OUTPUT_LOG_SIGMA, OUTPUT_BOUNDS = 130.0, 0.8, (4, 2048)


def _smoothstep(x: FloatArray) -> FloatArray:
    c = np.clip(x, 0.0, 1.0)
    return np.asarray(c * c * (3.0 - 2.0 * c), dtype=np.float64)


def default_workload_rate(t_s: FloatArray, duration_s: float = 4 * 3600) -> FloatArray:
    """The true arrival rate (requests/s) of :func:`default_workload` at times ``t_s``.

    ``rate(t) = MEAN_RATE_RPS * (1 - A cos(2 pi t / D)) * prod_b (1 + (h_b - 1) e_b(t))``
    with ``A = 3/7`` (trough 5.1 req/s at both ends, peak 12.9 req/s mid-window) and
    ``e_b`` each burst's envelope: a smoothstep from 0 to 1 over ``rise_s``, a plateau of
    ``hold_s`` and a smoothstep back to 0 over ``fall_s``.
    """
    t = np.asarray(t_s, dtype=np.float64)
    rate = MEAN_RATE_RPS * (1.0 - _AMPLITUDE * np.cos(2.0 * math.pi * t / duration_s))
    for b in BURSTS:
        t0 = b.start_fraction * duration_s
        rise = _smoothstep((t - t0) / b.rise_s)
        fall = 1.0 - _smoothstep((t - (t0 + b.rise_s + b.hold_s)) / b.fall_s)
        rate = rate * (1.0 + (b.height - 1.0) * np.minimum(rise, fall))
    return np.asarray(rate, dtype=np.float64)


def default_workload(seed: int = 0, *, duration_s: float = 4 * 3600) -> Trace:
    """A deterministic request-level workload: same ``seed``, same trace.

    Shape (for the default 4 hours; the cycle and burst positions scale with
    ``duration_s``, burst widths do not):

    * a day compressed into the window: the rate rises smoothly from a trough of 5.1 req/s
      at t=0 to a peak of 12.9 req/s at 2 h and falls back (peak/trough 2.5, mean 9 req/s);
    * two sharp bursts, each rising within 30 s: x2.4 for 4 min from 72 min (to about
      24.5 req/s) and x2.2 for 3 min from 163 min (to about 23.4 req/s);
    * arrivals are a non-homogeneous Poisson process, drawn by thinning (Lewis & Shedler):
      homogeneous candidates at the maximum rate, each kept with probability
      ``rate(t) / max rate``; about 137,000 requests (9.5 req/s on average);
    * token lengths: 92% of prompts lognormal with median 1000 (log-sigma 0.9, clipped to
      16-8192), 8% long prompts with median 6000 (log-sigma 0.35, clipped to 2048-16384);
      outputs lognormal with median 130 (log-sigma 0.8, clipped to 4-2048).

    Sizing: a 7-8B model on one H100 serving at a few req/s under a TTFT SLO needs about
    2 replicas at the trough and 6-8 in the bursts. Generation takes about 0.1 s.
    """
    if not (isinstance(duration_s, int | float) and math.isfinite(duration_s) and duration_s > 0):
        raise SpecError("duration_s", duration_s, "a finite number of seconds > 0")
    rng = np.random.default_rng(seed)
    peak = MEAN_RATE_RPS * (1.0 + _AMPLITUDE) * _burst_bound(duration_s)
    candidates = int(rng.poisson(peak * duration_s))
    times = rng.random(candidates) * duration_s
    keep = rng.random(candidates) * peak < default_workload_rate(times, duration_s)
    # Thinning decides each candidate on its own, so sorting only the kept third is
    # the same as sorting all candidates first, and three times cheaper.
    times = np.sort(times[keep])
    arrivals = np.asarray(times, dtype=np.float64)
    n = arrivals.size
    long_class = rng.random(n) < LONG_PROMPT_FRACTION
    prompt = np.where(
        long_class,
        _lognormal(rng, n, LONG_PROMPT_MEDIAN, LONG_PROMPT_LOG_SIGMA, LONG_PROMPT_BOUNDS),
        _lognormal(rng, n, PROMPT_MEDIAN, PROMPT_LOG_SIGMA, PROMPT_BOUNDS),
    )
    output = _lognormal(rng, n, OUTPUT_MEDIAN, OUTPUT_LOG_SIGMA, OUTPUT_BOUNDS)
    return Trace(
        name=f"synthetic-default-seed{seed}",
        duration_s=float(duration_s),
        arrivals_s=arrivals,
        prompt_tokens=np.asarray(prompt, dtype=np.int64),
        output_tokens=output,
        token_mix=TokenMix(
            mean_prompt_tokens=float(prompt.mean()) if n else TokenMix().mean_prompt_tokens,
            mean_output_tokens=float(output.mean()) if n else TokenMix().mean_output_tokens,
        ),
    )


def _burst_bound(duration_s: float) -> float:
    """Largest product of burst heights over any instant: between consecutive burst edges
    the set of bursts that may be active is fixed, so take the worst such set (2.4 on the
    default window, where the bursts do not overlap)."""
    spans = [
        (b.start_fraction * duration_s, b.start_fraction * duration_s + b.rise_s + b.hold_s
         + b.fall_s, b.height)
        for b in BURSTS
    ]
    edges = sorted({e for lo, hi, _ in spans for e in (lo, hi)})
    bound = 1.0
    for lo, hi in itertools.pairwise(edges):
        mid = (lo + hi) / 2.0
        bound = max(bound, math.prod(h for s, e, h in spans if s < mid < e))
    return bound


def _lognormal(
    rng: np.random.Generator, n: int, median: float, sigma: float, bounds: tuple[int, int]
) -> IntArray:
    values = np.rint(rng.lognormal(math.log(median), sigma, n))
    return np.asarray(np.clip(values, bounds[0], bounds[1]), dtype=np.int64)
