"""Reshape traces: scale their rate or time axis, and expand rates into requests.

Both functions are deterministic: randomness comes only from ``numpy.random.default_rng``
seeded by the ``seed`` argument, so the same call always returns the same trace.
"""

from __future__ import annotations

import math

import numpy as np

from autoscaler.errors import SpecError, TraceError
from autoscaler.traces.model import FloatArray, IntArray, TokenMix, Trace

PROMPT_LOG_SIGMA = 1.0
"""Log-space standard deviation of expanded prompt lengths (the Azure 2023 conversation
trace's ``ln(ContextTokens)`` has a standard deviation of 0.99)."""
OUTPUT_LOG_SIGMA = 0.85
"""Log-space standard deviation of expanded output lengths (Azure conversation: 0.86)."""
PROMPT_TOKENS_BOUNDS = (1, 32_768)
"""Expanded prompt lengths are clipped to this range (a 32k context window)."""
OUTPUT_TOKENS_BOUNDS = (1, 4_096)
"""Expanded output lengths are clipped to this range."""


def _factor(field: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise SpecError(field, value, "a finite number > 0")
    return float(value)


def scale_trace(trace: Trace, *, rate: float = 1.0, time: float = 1.0, seed: int = 0) -> Trace:
    """Scale a trace's request rate by ``rate`` and stretch its time axis by ``time``.

    ``time`` (applied first) multiplies every timestamp, ``duration_s`` and
    ``resolution_s`` by ``time``, so a 1-hour trace with ``time=2`` lasts 2 hours; the
    request count is unchanged and every rate is divided by ``time``.

    ``rate`` multiplies the arrival rate everywhere while keeping the time axis:

    * rate-level traces: ``rates_rps`` is multiplied by ``rate`` (exact, no randomness);
    * request-level traces: with ``rate = k + f`` (``k`` whole, ``0 <= f < 1``), every
      request is kept ``k`` times, plus once more with probability ``f`` (an independent
      draw per request from ``seed``). So the count is exactly ``k * n`` plus a
      Binomial(n, f) number: exact for whole ``rate``, ``rate * n`` on average otherwise.
      ``rate < 1`` is thinning, which keeps a Poisson process Poisson. Each extra copy
      keeps the original's token lengths and lands uniformly between the original's
      arrival and the next arrival (or ``duration_s``), so the rate profile is preserved
      at the scale of one inter-arrival gap and no two copies share a timestamp.

    A scaled trace's name records the factors, e.g. ``azure_conv[rate=2,time=0.5]``.
    """
    r = _factor("rate", rate)
    t = _factor("time", time)
    tags = [f"{label}={v:g}" for label, v in (("rate", r), ("time", t)) if v != 1.0]
    name = f"{trace.name}[{','.join(tags)}]" if tags else trace.name
    duration = trace.duration_s * t
    if trace.arrivals_s is None:
        assert trace.rates_rps is not None and trace.resolution_s is not None
        return Trace(
            name=name,
            duration_s=duration,
            rates_rps=np.asarray(trace.rates_rps * (r / t), dtype=np.float64),
            resolution_s=trace.resolution_s * t,
            token_mix=trace.token_mix,
        )
    assert trace.prompt_tokens is not None and trace.output_tokens is not None
    arrivals = np.asarray(trace.arrivals_s * t, dtype=np.float64)
    prompt, output = trace.prompt_tokens, trace.output_tokens
    if r != 1.0:
        arrivals, prompt, output = _scale_requests(arrivals, prompt, output, duration, r, seed)
    return Trace(
        name=name,
        duration_s=duration,
        arrivals_s=arrivals,
        prompt_tokens=prompt,
        output_tokens=output,
        token_mix=trace.token_mix,
    )


def _scale_requests(
    arrivals: FloatArray,
    prompt: IntArray,
    output: IntArray,
    duration_s: float,
    rate: float,
    seed: int,
) -> tuple[FloatArray, IntArray, IntArray]:
    rng = np.random.default_rng(seed)
    n = arrivals.size
    if n == 0:
        return arrivals, prompt, output
    whole = math.floor(rate)
    frac = rate - whole
    copies = whole + (rng.random(n) < frac).astype(np.int64)
    source = np.repeat(np.arange(n), copies)
    # The first copy of each request keeps its time; later copies fall in the gap after it.
    group_start = np.concatenate(([0], np.cumsum(copies)[:-1]))
    is_first = np.zeros(source.size, dtype=bool)
    is_first[group_start[copies > 0]] = True
    gaps = np.diff(np.concatenate((arrivals, [max(duration_s, float(arrivals[-1]))])))
    offsets = np.where(is_first, 0.0, rng.random(source.size) * gaps[source])
    times = arrivals[source] + offsets
    order = np.argsort(times, kind="stable")
    return (
        np.asarray(times[order], dtype=np.float64),
        np.asarray(prompt[source][order], dtype=np.int64),
        np.asarray(output[source][order], dtype=np.int64),
    )


def sample_token_lengths(
    rng: np.random.Generator, n: int, mix: TokenMix
) -> tuple[IntArray, IntArray]:
    """Prompt and output lengths for ``n`` requests, lognormal around ``mix``'s means.

    Each length is ``round(exp(N(mu, sigma)))`` with ``mu = ln(mean) - sigma**2 / 2``, so
    the unclipped mean equals the ``TokenMix`` mean (the median is ``mean * exp(-s**2/2)``:
    701 prompt and 147 output tokens for the defaults 1155 and 211). The sigmas are
    ``PROMPT_LOG_SIGMA`` and ``OUTPUT_LOG_SIGMA``; results are clipped to
    ``PROMPT_TOKENS_BOUNDS`` and ``OUTPUT_TOKENS_BOUNDS``, which moves the mean by far less
    than 1% for means under a few thousand tokens.
    """
    prompt = _lognormal_ints(rng, n, mix.mean_prompt_tokens, PROMPT_LOG_SIGMA, PROMPT_TOKENS_BOUNDS)
    output = _lognormal_ints(rng, n, mix.mean_output_tokens, OUTPUT_LOG_SIGMA, OUTPUT_TOKENS_BOUNDS)
    return prompt, output


def _lognormal_ints(
    rng: np.random.Generator, n: int, mean: float, sigma: float, bounds: tuple[int, int]
) -> IntArray:
    mu = math.log(max(mean, 1.0)) - sigma * sigma / 2.0
    values = np.rint(rng.lognormal(mu, sigma, n))
    return np.asarray(np.clip(values, bounds[0], bounds[1]), dtype=np.int64)


def expand_to_requests(
    trace: Trace, *, seed: int = 0, max_requests: int | None = None
) -> Trace:
    """Turn a rate-level trace into a request-level one (a request-level one is returned
    unchanged).

    Arrivals are a non-homogeneous Poisson process with the trace's piecewise-constant
    rate: bin ``i`` (``[i*res, min((i+1)*res, duration_s))``) gets a Poisson number of
    requests with mean ``rate_i * width_i``, placed uniformly at random inside the bin.
    Token lengths come from :func:`sample_token_lengths` around ``trace.token_mix``.

    Raises :class:`TraceError` (naming the trace) when the drawn number of requests is
    above ``max_requests``; the draw is checked before any arrival is generated, so a
    too-large trace fails fast and without the memory.
    """
    if trace.arrivals_s is not None:
        return trace
    assert trace.rates_rps is not None and trace.resolution_s is not None
    res = trace.resolution_s
    rates = trace.rates_rps
    lefts = np.arange(rates.size) * res
    widths = np.clip(np.minimum(lefts + res, trace.duration_s) - lefts, 0.0, None)
    expected = rates * widths
    rng = np.random.default_rng(seed)
    counts = rng.poisson(expected)
    total = int(counts.sum())
    if max_requests is not None and total > max_requests:
        raise TraceError(
            trace.name,
            f"expanding to requests would create {total:,} requests (about "
            f"{float(expected.sum()):,.0f} expected), more than max_requests={max_requests:,}; "
            "scale the trace down with scale_trace(rate=...) or raise max_requests",
        )
    arrivals = np.repeat(lefts, counts) + rng.random(total) * np.repeat(widths, counts)
    arrivals.sort()
    prompt, output = sample_token_lengths(rng, total, trace.token_mix)
    return Trace(
        name=trace.name,
        duration_s=trace.duration_s,
        arrivals_s=np.asarray(arrivals, dtype=np.float64),
        prompt_tokens=prompt,
        output_tokens=output,
        token_mix=trace.token_mix,
    )
