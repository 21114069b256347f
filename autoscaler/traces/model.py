"""The in-memory trace: either individual requests or arrival rates per time bin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TokenMix:
    """Mean token lengths used when a trace carries no token counts (assumption stated)."""

    mean_prompt_tokens: float = 1155.0
    """Mean ContextTokens of the Azure 2023 conversation trace (its median is 1,020)."""
    mean_output_tokens: float = 211.0
    """Mean GeneratedTokens of the Azure 2023 conversation trace (its median is 129)."""


@dataclass(frozen=True)
class Trace:
    """A workload to replay.

    Request-level traces set ``arrivals_s`` (sorted seconds from the trace start) with
    ``prompt_tokens`` and ``output_tokens`` per request. Rate-level traces set ``rates_rps``
    (requests/s for each bin of ``resolution_s``) and carry a ``token_mix`` instead.
    ``duration_s`` is the span replayed (>= the last arrival).
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
    """Collection gaps, [start, end) seconds since the trace start: no traffic is known there
    (missing data, not zero load). The replay sends no arrivals, scores nothing and gives the
    policies' Prometheus no samples inside them."""

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

    def binned_rates(self, resolution_s: float) -> FloatArray:
        """Arrival rate (requests/s) in consecutive bins of ``resolution_s`` seconds
        covering [0, duration_s); the last bin may be partial and is scaled to its width."""
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
