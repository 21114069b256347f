"""Collection gaps in per-second count traces: zero runs the traffic around them rules out.

A log that stops being written (a crash, a network outage, a hurricane) leaves a run of
zero seconds that looks like idle traffic. The rule is a class rule, not one tuned to a
trace:

    A run of ``L`` zero seconds (``L >= MIN_RUN_S``) is a gap when the traffic of the
    ``CONTEXT_S`` seconds on each side of it, pooled, makes a silence that long
    improbable: ``P(no arrival for L s) < MAX_PROBABILITY``.

The probability allows for bursty, varying traffic rather than assuming Poisson. The rate
is a gamma-distributed random level ``R`` with the mean ``r`` and variance ``s2`` of the
pooled context (``s2`` from its per-minute counts, after removing their Poisson part),
Poisson arrivals at that level, and the level redrawn every ``CONTEXT_S`` seconds (traffic
an hour away is a different level). For ``L <= CONTEXT_S``:
``P = E[exp(-R L)] = (1 + L s2 / r) ** (-r**2 / s2)`` (``exp(-r L)`` when ``s2 = 0``);
for longer runs ``P(CONTEXT_S) ** (L / CONTEXT_S)``.

Pooling both sides matters both ways. A step from a busy evening into a quiet night gives
a pooled context with a large variance, so a minute of silence at the start of the night
stays traffic; and an outage followed by a sparse recovery (NASA's Hurricane Erin: 37.7 h of
zeros, 44 requests/min before, 31 requests in the hour after) is still judged against the
traffic it interrupted.

Worked numbers: a quiet night at r = 0.3 req/s with per-minute counts of variance 100
(mean 18) has s2 = (100 - 18) / 3600 = 0.0228 and shape r^2/s2 = 3.9: a 10-minute silence has
P = (1 + 600 x 0.076)^-3.9 = 3e-7, not below the 1e-9 threshold, so it stays traffic; it
takes about 41 minutes of silence at that level. A service at 20 req/s (1,200 per minute,
per-minute variance 40,000) has s2 = 10.8 and shape 37: one silent minute has
P = (1 + 60 x 10.8 / 20)^-37 = 3e-57, an outage. Erin, pooled: r = 0.375 req/s,
s2 = 0.23, shape 0.61, P(1 h) = (1 + 3600 x 0.61)^-0.61 = 0.009, and 37.7 h of it give
0.009^37.7 = 1e-77. With a few hundred candidate runs in a trace, 1e-9 leaves about one
chance in ten million of a false gap under the model.

Reviewed on NASA's 49 short gaps (62 s to 22 min, 3.0 h in all; ``benchmarks/gap_review.py``):
they are not quiet minutes of the traffic model. Around them the traffic runs at about 1
req/s (median 60 hits per minute over the two hours around each), and a silence is judged
against that traffic's own minute-to-minute swings; 25 of the 49 come in clusters (another
within 30 minutes, a handful of requests between), the signature of a server or its log
stalling and recovering. Silences at the same traffic level form one continuous tail from
20 s up (at 1-2 req/s: 83 of 20-30 s, 35 of 30-40 s, 19 of 40-60 s, 22 of 60 s and more);
the ones below ``MIN_RUN_S`` are left as traffic only because a sub-minute silence costs a
15-s scrape nothing. Where the traffic itself has minute-long lulls, the same 75 s stays
traffic (``tests/test_traces_shape.py``). So the rule is kept as it is.

Runs at the start or the end of a trace (one side unknown) are left as traffic: a
trace's edges are where recording began and ended, not an outage inside it. Treating an
improbable silence as missing is the safe side of the project's rule that missing data
is not low load: a gap makes policies hold, never scale down.
"""

from __future__ import annotations

import math

import numpy as np

from autoscaler.traces.model import FloatArray, IntArray

MIN_RUN_S = 60
"""Zero runs shorter than this are never gaps: below a minute, a silence and a lost scrape
look alike to every consumer, and they are far too many to test one by one."""
CONTEXT_S = 3600
"""Seconds of traffic on each side of a run that set its expected level (an hour: long
enough to estimate a rate and its per-minute variance, short enough to follow a day)."""
MAX_PROBABILITY = 1e-9
"""A run is a gap when a silence that long has a smaller probability than this (see the
module doc for the model)."""
_MINUTE = 60


def silence_probability(counts: FloatArray, length_s: float,
                        level_s: float = CONTEXT_S) -> float:
    """P(no arrival for ``length_s`` s) given per-second context ``counts`` (see the module
    doc; the level is redrawn every ``level_s`` seconds). 1.0 when the context carries no
    traffic."""
    n = counts.size // _MINUTE * _MINUTE
    if n == 0:
        return 1.0
    per_min = counts[:n].reshape(-1, _MINUTE).sum(axis=1)
    r = float(per_min.mean()) / _MINUTE
    if r <= 0:
        return 1.0
    var_min = float(per_min.var(ddof=1)) if per_min.size > 1 else 0.0
    # Per-minute variance = Poisson part (mean) + rate variance x 60^2.
    s2 = max(0.0, var_min - float(per_min.mean())) / (_MINUTE * _MINUTE)
    span = min(length_s, level_s)
    log_p = -r * span if s2 <= 0 else -(r * r / s2) * math.log1p(span * s2 / r)
    return math.exp(log_p * max(1.0, length_s / level_s))


def count_gaps(counts: FloatArray, *, min_run_s: int = MIN_RUN_S, context_s: int = CONTEXT_S,
               max_probability: float = MAX_PROBABILITY) -> tuple[tuple[float, float], ...]:
    """Collection gaps ``[start, end)`` (seconds) in per-second ``counts``; see the module
    doc.

    A run's context is the ``context_s`` seconds nearest to it on each side, *including*
    every shorter silence (a quiet spell is part of the traffic it is judged against) but
    skipping silences at least as long as the run (they are candidates themselves, and
    an outage is no evidence of the traffic level). Worked case: NASA's Hurricane Erin
    outage (37.7 h of zeros) is followed by 350 s of sparse traffic and then a 45-minute
    silence; the context after it therefore reaches past that silence into the morning.
    """
    x = np.asarray(counts, dtype=np.float64)
    zero = np.concatenate(([False], x == 0, [False]))
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    long = (ends - starts) >= min_run_s
    starts, ends = starts[long], ends[long]
    lengths = ends - starts
    gaps: list[tuple[float, float]] = []
    for k in range(starts.size):
        a, b = int(starts[k]), int(ends[k])
        if a == 0 or b == x.size:
            continue
        length = int(lengths[k])
        after = _context(x, starts, ends, lengths, k, length, context_s, forward=True)
        before = _context(x, starts, ends, lengths, k, length, context_s, forward=False)
        # Whole minutes of each side, nearest first, pooled.
        pooled = np.concatenate((before[: before.size // _MINUTE * _MINUTE],
                                 after[: after.size // _MINUTE * _MINUTE]))
        if silence_probability(pooled, float(length), float(context_s)) < max_probability:
            gaps.append((float(a), float(b)))
    return tuple(gaps)


def _context(x: FloatArray, starts: IntArray, ends: IntArray, lengths: IntArray, k: int,
             length: int, context_s: int, *, forward: bool) -> FloatArray:
    """Up to ``context_s`` seconds next to run ``k`` (nearest first), skipping runs at
    least ``length`` long."""
    parts: list[FloatArray] = []
    need = context_s
    if forward:
        pos, j = int(ends[k]), k + 1
        while need > 0 and pos < x.size:
            while j < starts.size and (lengths[j] < length or ends[j] <= pos):
                j += 1
            stop = int(starts[j]) if j < starts.size else x.size
            take = x[pos:min(stop, pos + need)]
            parts.append(take)
            need -= take.size
            pos = int(ends[j]) if j < starts.size else x.size
            j += 1
    else:
        pos, j = int(starts[k]), k - 1
        while need > 0 and pos > 0:
            while j >= 0 and (lengths[j] < length or starts[j] >= pos):
                j -= 1
            stop = int(ends[j]) if j >= 0 else 0
            take = x[max(stop, pos - need):pos][::-1]
            parts.append(take)
            need -= take.size
            pos = int(starts[j]) if j >= 0 else 0
            j -= 1
    return np.concatenate(parts) if parts else np.zeros(0)
