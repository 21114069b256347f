"""The in-memory trace: either individual requests or arrival rates per time bin."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

REQUEST_ENGINE_BYTES_PER_REQUEST = 700
"""Peak resident bytes per request of the request engine, with a margin; the one figure
every memory check uses (``autoscaler.sim.replay.check_memory`` reads it from here).
Measured: 400,000 requests (lognormal lengths around 1,000 / 150 tokens, a static fleet of
6) raised the peak RSS by 338 bytes per request (Python lists of floats and ints,
per-request and result arrays). Twice that covers the temporaries of expanding a rate-level
trace into requests: 2 x 338 = 676, rounded up to 700."""
FLUID_ENGINE_BYTES_PER_BIN = 128
"""Estimated memory of the fluid engine per 1-s tick (bytes): the rate, the per-time token
means and the engine's outputs (arrivals, TTFT, met, queue, ...): about 16 float64 arrays."""


@dataclass(frozen=True)
class TokenMix:
    """Mean token lengths used when a trace carries no token counts (assumption stated)."""

    mean_prompt_tokens: float = 1155.0
    """Mean ContextTokens of the Azure 2023 conversation trace (its median is 1,020)."""
    mean_output_tokens: float = 211.0
    """Mean GeneratedTokens of the Azure 2023 conversation trace (its median is 129)."""


@dataclass(frozen=True)
class TokenWindows:
    """Mean token lengths per time window of a rate-level trace.

    Window ``i`` covers ``[i * resolution_s, (i + 1) * resolution_s)`` seconds from the
    trace start; NaN means unknown there (callers fall back to the trace's ``token_mix``).
    """

    resolution_s: float
    """Window length, seconds (21,600 = 6 h for ServeGen)."""
    mean_prompt: FloatArray
    """Mean prompt (input) tokens per request in each window."""
    mean_output: FloatArray
    """Mean output tokens per request in each window."""


@dataclass(frozen=True)
class TokenDistribution:
    """An empirical distribution of token lengths: ``values[i]`` with ``probs[i]``
    (probabilities sum to 1). Prompt and output lengths are independent marginals."""

    prompt_values: IntArray
    prompt_probs: FloatArray
    output_values: IntArray
    output_probs: FloatArray


@dataclass(frozen=True)
class TraceSize:
    """An up-front estimate of what replaying a trace costs, before any engine exists."""

    requests: float
    """Requests replayed (exact for request-level traces, expected for rate-level ones)."""
    bins_1s: int
    """One-second ticks the fluid engine steps through."""
    request_engine_bytes: float
    """Estimated memory of the request engine (``REQUEST_ENGINE_BYTES_PER_REQUEST``)."""
    fluid_engine_bytes: float
    """Estimated memory of the fluid engine (``FLUID_ENGINE_BYTES_PER_BIN``)."""


@dataclass(frozen=True)
class Trace:
    """A workload to replay.

    Request-level traces set ``arrivals_s`` (sorted seconds from the trace start) with
    ``prompt_tokens`` and ``output_tokens`` per request. Rate-level traces set ``rates_rps``
    (requests/s for each bin of ``resolution_s``) and carry a ``token_mix`` instead.
    ``duration_s`` is the span replayed (>= the last arrival).

    ``gaps`` are collection gaps, ``[start, end)`` seconds since the trace start, sorted and
    disjoint: the data is *missing* there (a monitoring outage), not zero traffic. Inside a
    gap there is no traffic, nothing is scored, and the policies' Prometheus has no samples.
    """

    name: str
    duration_s: float
    arrivals_s: FloatArray | None = None
    prompt_tokens: IntArray | None = None
    output_tokens: IntArray | None = None
    rates_rps: FloatArray | None = None
    resolution_s: float | None = None
    token_mix: TokenMix = TokenMix()
    gaps: tuple[tuple[float, float], ...] = ()
    token_windows: TokenWindows | None = None
    token_distribution: TokenDistribution | None = field(default=None, repr=False)
    """The pooled empirical token-length distribution, when the source has one."""

    @property
    def is_request_level(self) -> bool:
        return self.arrivals_s is not None

    @property
    def request_count(self) -> float:
        """Requests in the trace (expected count for a rate-level trace)."""
        if self.arrivals_s is not None:
            return float(len(self.arrivals_s))
        assert self.rates_rps is not None and self.resolution_s is not None
        return float(self.rates_rps.sum() * self.resolution_s)

    @property
    def estimated_request_count(self) -> float:
        """Same as :attr:`request_count`; named for the up-front size checks."""
        return self.request_count

    def size_estimate(self) -> TraceSize:
        """What replaying this trace would cost (see :class:`TraceSize`); O(1) memory.

        Worked number: 14 days of ServeGen carry about 1.04e9 requests, so the request
        engine would need about 1.04e9 x 700 B = 728 GB, while the fluid engine's
        1,209,600 ticks need about 155 MB.
        """
        requests = self.request_count
        bins = max(1, math.ceil(self.duration_s - 1e-9)) if math.isfinite(self.duration_s) else 0
        return TraceSize(
            requests=requests,
            bins_1s=bins,
            request_engine_bytes=requests * REQUEST_ENGINE_BYTES_PER_REQUEST,
            fluid_engine_bytes=float(bins) * FLUID_ENGINE_BYTES_PER_BIN,
        )

    def binned_rates(self, resolution_s: float) -> FloatArray:
        """Arrival rate (requests/s) in consecutive bins of ``resolution_s`` seconds
        covering [0, duration_s); the last bin may be partial and is scaled to its width.

        Gap bins come out as 0 here: engines want the traffic that arrives (none in a gap).
        Forecasters and anything that *learns* from the rate must not read a gap as zero
        load: they use :meth:`binned_rates_missing` (NaN in gap bins) instead.
        """
        n = max(1, int(np.ceil(self.duration_s / resolution_s - 1e-9)))
        if self.arrivals_s is not None:
            idx = np.minimum((self.arrivals_s // resolution_s).astype(np.int64), n - 1)
            counts = np.bincount(idx, minlength=n).astype(np.float64)
        else:
            assert self.rates_rps is not None and self.resolution_s is not None
            # Integrate the piecewise-constant source rate over each target bin.
            src_edges = np.arange(len(self.rates_rps) + 1) * self.resolution_s
            cum = np.concatenate(([0.0], np.cumsum(self.rates_rps * self.resolution_s)))
            edges = np.minimum(np.arange(n + 1) * resolution_s, src_edges[-1])
            counts = np.diff(np.interp(edges, src_edges, cum))
        widths = np.minimum(np.arange(1, n + 1) * resolution_s, self.duration_s) - (
            np.arange(n) * resolution_s
        )
        return np.asarray(counts / np.maximum(widths, 1e-12), dtype=np.float64)

    def gap_mask(self, resolution_s: float) -> BoolArray:
        """True for every bin of ``binned_rates(resolution_s)`` that overlaps a gap.

        A bin only partly inside a gap is masked too: its rate averages real traffic with
        missing data, so it is neither a clean observation nor zero (a 600-s bin with 300 s
        of outage would read half its real rate).
        """
        n = max(1, int(np.ceil(self.duration_s / resolution_s - 1e-9)))
        mask = np.zeros(n, dtype=bool)
        for start, end in self.gaps:
            lo = max(0, math.floor(start / resolution_s + 1e-9))
            hi = min(n, math.ceil(end / resolution_s - 1e-9))
            if hi > lo:
                mask[lo:hi] = True
        return mask

    def binned_rates_missing(self, resolution_s: float) -> FloatArray:
        """:meth:`binned_rates` with NaN in every bin that overlaps a collection gap.

        Use this wherever the rate is *learnt from* or *scored*: forecast fitting and
        backtests, tuning objectives, capacity learning. Engines and plots of the traffic
        fed to the fleet use :meth:`binned_rates`.
        """
        rates = self.binned_rates(resolution_s)
        rates[self.gap_mask(resolution_s)] = np.nan
        return rates

    def token_means_at(self, t_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Mean prompt and output tokens per request at times ``t_s`` (seconds).

        From ``token_windows`` where known; otherwise (no windows, a NaN window, or a time
        outside them) the trace-wide ``token_mix`` means.
        """
        t = np.asarray(t_s, dtype=np.float64)
        prompt = np.full(t.shape, self.token_mix.mean_prompt_tokens, dtype=np.float64)
        output = np.full(t.shape, self.token_mix.mean_output_tokens, dtype=np.float64)
        tw = self.token_windows
        if tw is None or tw.mean_prompt.size == 0:
            return prompt, output
        with np.errstate(invalid="ignore"):
            idx = np.floor(t / tw.resolution_s)
        inside = np.isfinite(idx) & (idx >= 0) & (idx < tw.mean_prompt.size)
        k = np.where(inside, idx, 0).astype(np.int64)
        p, o = tw.mean_prompt[k], tw.mean_output[k]
        prompt = np.where(inside & np.isfinite(p), p, prompt)
        output = np.where(inside & np.isfinite(o), o, output)
        return np.asarray(prompt, dtype=np.float64), np.asarray(output, dtype=np.float64)

    def token_sample(self, n: int, seed: int = 0) -> tuple[IntArray, IntArray]:
        """``n`` (prompt, output) token lengths drawn from the trace's own lengths.

        Request-level traces resample their requests' pairs; traces with a pooled empirical
        distribution draw from its marginals; otherwise lognormal lengths around
        ``token_mix`` (see :func:`autoscaler.traces.scaling.sample_token_lengths`).
        """
        rng = np.random.default_rng(seed)
        if (self.prompt_tokens is not None and self.output_tokens is not None
                and self.prompt_tokens.size):
            pick = rng.integers(0, self.prompt_tokens.size, size=n)
            return (np.asarray(self.prompt_tokens[pick], dtype=np.int64),
                    np.asarray(self.output_tokens[pick], dtype=np.int64))
        dist = self.token_distribution
        if dist is not None and dist.prompt_values.size and dist.output_values.size:
            prompt = rng.choice(dist.prompt_values, size=n, p=dist.prompt_probs)
            output = rng.choice(dist.output_values, size=n, p=dist.output_probs)
            return np.asarray(prompt, dtype=np.int64), np.asarray(output, dtype=np.int64)
        from autoscaler.traces.scaling import sample_token_lengths

        return sample_token_lengths(rng, n, self.token_mix)
