"""Reshape traces: scale their rate (thinning or superposition) or time axis, and expand
rates into requests.

Both functions are deterministic: randomness comes only from ``numpy.random.default_rng``
seeded by the ``seed`` argument, so the same call always returns the same trace.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from autoscaler.errors import SpecError, TraceError
from autoscaler.traces.limits import MAX_REQUESTS, MAX_SPAN_S, MAX_SUPERPOSED_COPIES
from autoscaler.traces.model import FloatArray, IntArray, TokenMix, TokenWindows, Trace

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


SHIFT_RANGE_S = (60.0, 600.0)
"""Random time shifts of superposed copies of a trace shorter than two days, seconds
(either sign, wrapping at the trace's end). Longer than the bursts of the real traces
(the Azure code trace's idle gaps run up to 216 s), so copies are independent at the
scales a fleet reacts to; shorter than the slow drift (the Azure conversation trace ramps
over tens of minutes), which the copies therefore keep."""
DAY_S = 86_400.0


def scale_trace(trace: Trace, *, rate: float = 1.0, time: float = 1.0, seed: int = 0) -> Trace:
    """Scale a trace's request rate by ``rate`` and stretch its time axis by ``time``.

    ``time`` (applied first) multiplies every timestamp, gap, ``duration_s`` and
    ``resolution_s`` by ``time``, so a 1-hour trace with ``time=2`` lasts 2 hours; the
    request count is unchanged and every rate is divided by ``time``.

    ``rate`` changes the arrival rate the way more (or fewer) independent users would:
    the variance of the count in a window grows like ``rate``, not ``rate**2`` as plain
    multiplication would give (x20 would make the per-second variance 400 times larger
    instead of 20 times). With ``rate = k + f`` (``k`` whole, ``0 <= f < 1``):

    * ``rate < 1`` is independent **thinning**: each request (or each counted request of
      a count trace, via a binomial draw per bin) is kept with probability ``rate``;
    * ``rate >= 1`` **superposes** the trace and ``k - 1`` independent copies, plus one
      more copy thinned to ``f``.

      Count traces (whole counts per 1-s bin: NASA, bursty ServeGen) and request traces
      take their copies from the trace itself:

      - a trace spanning at least two days uses **whole-day offsets** (+1, -1, +2, -2, ...
        days, wrapping at the end): each second adds the same time of day on other days,
        so the diurnal phase is kept while the noise is independent. At most as many
        copies as whole days (``rate <= days``; NASA's 58 days allow x58, ServeGen's 14
        days x14). The weekly phase is not kept. A copy whose source second falls in a
        collection gap takes the next day instead;
      - a shorter trace uses **random time shifts** of 60-600 s (either sign, wrapping;
        see ``SHIFT_RANGE_S``), at most ``MAX_SUPERPOSED_COPIES`` copies.

      Request copies keep their requests' token lengths.
    * a rate-level trace that is not whole counts per 1-s bin (smooth rates such as
      ServeGen's 600-s window means) has no count noise to scale: its rates are
      multiplied (exact, no randomness).

    Gaps stay gaps: no copy puts traffic into one. Too large a factor for the trace (more
    copies than it can honestly supply, more than ``MAX_REQUESTS`` requests, or a time
    axis beyond ``MAX_SPAN_S``) is a ``SpecError`` naming ``rate`` or ``time`` and its
    allowed range, raised before any allocation.
    A scaled trace's name records the factors, e.g. ``azure_conv[rate=2,time=0.5]``.
    """
    r = _factor("rate", rate)
    t = _factor("time", time)
    tags = [f"{label}={v:g}" for label, v in (("rate", r), ("time", t)) if v != 1.0]
    name = f"{trace.name}[{','.join(tags)}]" if tags else trace.name
    duration = trace.duration_s * t
    if duration > MAX_SPAN_S and t > 1.0:
        # Replays step through 1-s ticks: a 1-hour trace x1e6 would be 114 years of them.
        raise SpecError("time", t, f"> 0 and <= {MAX_SPAN_S / trace.duration_s:.4g} for this "
                        f"trace ({trace.duration_s:,.0f} s; at most {MAX_SPAN_S:,.0f} s, "
                        "400 days, after scaling)")
    gaps = tuple((a * t, b * t) for a, b in trace.gaps)
    windows = trace.token_windows
    if windows is not None and t != 1.0:
        windows = TokenWindows(windows.resolution_s * t, windows.mean_prompt,
                               windows.mean_output)
    common = {"token_mix": trace.token_mix, "gaps": gaps, "token_windows": windows,
              "token_distribution": trace.token_distribution}
    if trace.arrivals_s is None:
        assert trace.rates_rps is not None and trace.resolution_s is not None
        res = trace.resolution_s * t
        counts = trace.rates_rps * trace.resolution_s
        if r == 1.0 or trace.resolution_s != 1.0 or not _whole_counts(counts):
            return Trace(name=name, duration_s=duration,
                         rates_rps=np.asarray(trace.rates_rps * (r / t), dtype=np.float64),
                         resolution_s=res, **common)  # type: ignore[arg-type]
        scaled = _scale_counts(counts, trace, r, seed, res, duration)
        return Trace(name=name, duration_s=duration, rates_rps=scaled / res,
                     resolution_s=res, **common)  # type: ignore[arg-type]
    assert trace.prompt_tokens is not None and trace.output_tokens is not None
    arrivals = np.asarray(trace.arrivals_s * t, dtype=np.float64)
    prompt, output = trace.prompt_tokens, trace.output_tokens
    if r != 1.0:
        limit = MAX_REQUESTS / max(1, arrivals.size)
        if r > limit:
            raise SpecError("rate", r, f"> 0 and <= {limit:.4g} for this trace "
                            f"({arrivals.size:,} requests; at most {MAX_REQUESTS:,} after "
                            "scaling)")
        arrivals, prompt, output = _scale_requests(arrivals, prompt, output, duration, r,
                                                   seed, gaps)
    return Trace(name=name, duration_s=duration, arrivals_s=arrivals, prompt_tokens=prompt,
                 output_tokens=output, **common)  # type: ignore[arg-type]


def _whole_counts(counts: FloatArray) -> bool:
    return bool(np.all(np.abs(counts - np.rint(counts)) < 1e-9))


def _copy_plan(duration_s: float, copies: int, rate: float) -> str:
    """``"days"`` or ``"shift"``; SpecError when the trace cannot supply the copies."""
    days = int(duration_s // DAY_S)
    if days >= 2:
        if copies > days:
            raise SpecError("rate", rate, f"> 0 and <= {days} for this trace: it spans "
                            f"{days} whole days, and each superposed copy needs its own day")
        return "days"
    if copies > MAX_SUPERPOSED_COPIES:
        raise SpecError("rate", rate, f"> 0 and <= {MAX_SUPERPOSED_COPIES} for a trace "
                        "shorter than two days (random-shift copies)")
    return "shift"


def _day_offsets(extra: int) -> list[int]:
    """+1, -1, +2, -2, ... days: near days first, they resemble each other most."""
    out: list[int] = []
    k = 1
    while len(out) < extra:
        out.append(k)
        if len(out) < extra:
            out.append(-k)
        k += 1
    return out


def _random_shifts(rng: np.random.Generator, extra: int, duration_s: float) -> FloatArray:
    lo, hi = SHIFT_RANGE_S
    hi = min(hi, duration_s / 2.0)
    lo = min(lo, hi / 2.0)
    size = rng.uniform(lo, hi, extra)
    sign = np.where(rng.random(extra) < 0.5, -1.0, 1.0)
    return np.asarray(size * sign, dtype=np.float64)


def _scale_counts(counts: FloatArray, trace: Trace, rate: float, seed: int, res: float,
                  duration_s: float) -> FloatArray:
    """Whole counts per bin, thinned or superposed (see :func:`scale_trace`)."""
    rng = np.random.default_rng(seed)
    whole = math.floor(rate)
    frac = rate - whole
    x = np.rint(counts).astype(np.int64)
    if whole == 0:
        return np.asarray(rng.binomial(x, frac), dtype=np.float64)
    extra = whole - 1 + (1 if frac > 0 else 0)
    plan = _copy_plan(duration_s, whole + (1 if frac > 0 else 0), rate)
    mask = trace.gap_mask(trace.resolution_s or 1.0)[: x.size]
    n = x.size
    if plan == "days":
        per_day = DAY_S / res
        if abs(per_day - round(per_day)) > 1e-9:
            raise SpecError("rate", rate, f"1 or less for this trace: its {res:g}-s bins do "
                            "not divide a day, so whole-day copies cannot be aligned")
        shifts = [round(d * per_day) for d in _day_offsets(extra)]
        step = round(per_day)
    else:
        shifts = [round(s / res) or 1 for s in _random_shifts(rng, extra, duration_s)]
        step = max(1, n // 7)
    out = x.astype(np.float64)
    for j, shift in enumerate(shifts):
        copy = _shifted(x, mask, shift, step)
        if j == len(shifts) - 1 and frac > 0:
            copy = rng.binomial(copy, frac)
        out += copy
    out[mask] = 0.0
    return out


def _shifted(x: IntArray, mask: npt.NDArray[np.bool_], shift: int, step: int) -> IntArray:
    """``x`` read ``shift`` bins ahead (wrapping); bins whose source is in a gap read a
    further ``step`` bins ahead (a day for day copies), up to a full turn."""
    n = x.size
    src = (np.arange(n) + shift) % n
    if mask.any():
        for _ in range(max(1, n // max(1, step))):
            bad = mask[src]
            if not bad.any():
                break
            src[bad] = (src[bad] + step) % n
    return np.asarray(x[src], dtype=np.int64)


def _scale_requests(
    arrivals: FloatArray,
    prompt: IntArray,
    output: IntArray,
    duration_s: float,
    rate: float,
    seed: int,
    gaps: tuple[tuple[float, float], ...] = (),
) -> tuple[FloatArray, IntArray, IntArray]:
    rng = np.random.default_rng(seed)
    n = arrivals.size
    if n == 0:
        return arrivals, prompt, output
    whole = math.floor(rate)
    frac = rate - whole
    if whole == 0:
        keep = rng.random(n) < frac
        return arrivals[keep], prompt[keep], output[keep]
    extra = whole - 1 + (1 if frac > 0 else 0)
    plan = _copy_plan(duration_s, whole + (1 if frac > 0 else 0), rate)
    shifts = (np.asarray(_day_offsets(extra), dtype=np.float64) * DAY_S if plan == "days"
              else _random_shifts(rng, extra, duration_s))
    times = [arrivals]
    source = [np.arange(n)]
    for j, shift in enumerate(shifts):
        pick = (np.flatnonzero(rng.random(n) < frac) if j == len(shifts) - 1 and frac > 0
                else np.arange(n))
        times.append(np.mod(arrivals[pick] + shift, duration_s))
        source.append(pick)
    t_all = np.concatenate(times)
    s_all = np.concatenate(source)
    if gaps:
        inside = np.zeros(t_all.size, dtype=bool)
        for a, b in gaps:
            inside |= (t_all >= a) & (t_all < b)
        t_all, s_all = t_all[~inside], s_all[~inside]
    order = np.argsort(t_all, kind="stable")
    return (
        np.asarray(t_all[order], dtype=np.float64),
        np.asarray(prompt[s_all[order]], dtype=np.int64),
        np.asarray(output[s_all[order]], dtype=np.int64),
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
    Token lengths come from the trace's pooled empirical distribution when it has one
    (ServeGen), else from :func:`sample_token_lengths` around ``trace.token_mix``.

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
    dist = trace.token_distribution
    if dist is not None and dist.prompt_values.size and dist.output_values.size:
        prompt = np.asarray(rng.choice(dist.prompt_values, size=total, p=dist.prompt_probs),
                            dtype=np.int64)
        output = np.asarray(rng.choice(dist.output_values, size=total, p=dist.output_probs),
                            dtype=np.int64)
    else:
        prompt, output = sample_token_lengths(rng, total, trace.token_mix)
    return Trace(
        name=trace.name,
        duration_s=trace.duration_s,
        arrivals_s=np.asarray(arrivals, dtype=np.float64),
        prompt_tokens=prompt,
        output_tokens=output,
        token_mix=trace.token_mix,
        gaps=trace.gaps,
        token_windows=trace.token_windows,
        token_distribution=trace.token_distribution,
    )
