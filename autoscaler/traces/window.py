"""Cut a window out of a trace: ``start`` and ``duration`` in seconds or as ``2d``/``6h``.

Gaps and token windows shift with the cut, so a window of a trace replays exactly like
the same stretch of the whole trace.
"""

from __future__ import annotations

import math
import re

import numpy as np

from autoscaler.errors import SpecError
from autoscaler.traces.model import TokenWindows, Trace

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*([smhdw]?)\s*")
MAX_WINDOW_S = 1e9
"""Largest start or duration accepted, seconds (about 31.7 years): far beyond any trace,
small enough that every sum of such numbers stays exact in float64."""


def parse_duration(field: str, value: str | float | int, *, allow_zero: bool) -> float:
    """Seconds from a number or a string such as ``90``, ``90s``, ``90m``, ``6h``, ``2d``,
    ``1w``. ``SpecError`` naming ``field`` (the option) with the allowed form otherwise."""
    allowed = ("a number of seconds or a number with a unit s, m, h, d or w (e.g. 90m, 6h, "
               f"2d), {'>= 0' if allow_zero else '> 0'} and <= {MAX_WINDOW_S:.0e} s")
    if isinstance(value, bool):
        raise SpecError(field, value, allowed)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value)
        m = _DURATION_RE.fullmatch(text) if len(text) < 40 else None
        if m is None:
            raise SpecError(field, text[:40], allowed)
        number = text.strip().rstrip("smhdw").strip()
        seconds = float(number) * _UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero) \
            or seconds > MAX_WINDOW_S:
        raise SpecError(field, value, allowed)
    return seconds


def window_trace(trace: Trace, start_s: float = 0.0, duration_s: float | None = None) -> Trace:
    """The part of ``trace`` in ``[start_s, start_s + duration_s)``, re-based to start at 0.

    ``duration_s=None`` runs to the trace's end; a window reaching past the end is cut
    there. Request-level traces keep the requests inside (times shifted by ``-start_s``).
    Rate-level traces are cut at bin edges, so ``start_s`` and ``duration_s`` must be
    multiples of ``resolution_s`` (1 s for counts and bursty ServeGen) unless the window
    ends at the trace's end. Gaps are clipped and shifted; token windows are shifted (at a
    finer resolution when the start is not on their grid).
    """
    if not (math.isfinite(start_s) and start_s >= 0):
        raise SpecError("start", start_s, ">= 0 seconds")
    if start_s >= trace.duration_s:
        raise SpecError("start", f"{start_s:g} s",
                        f"less than the trace's duration ({trace.duration_s:g} s)")
    end = trace.duration_s if duration_s is None else min(trace.duration_s,
                                                          start_s + duration_s)
    if start_s == 0 and end == trace.duration_s:
        return trace
    span = end - start_s
    tag = f"{trace.name}[{window_label(start_s, span)}]"
    gaps = tuple((max(0.0, a - start_s), min(span, b - start_s)) for a, b in trace.gaps
                 if b > start_s and a < end)
    windows = _shift_windows(trace.token_windows, start_s)
    if trace.arrivals_s is not None:
        lo, hi = np.searchsorted(trace.arrivals_s, [start_s, end], side="left")
        return Trace(
            name=tag, duration_s=span, arrivals_s=trace.arrivals_s[lo:hi] - start_s,
            prompt_tokens=None if trace.prompt_tokens is None else trace.prompt_tokens[lo:hi],
            output_tokens=None if trace.output_tokens is None else trace.output_tokens[lo:hi],
            token_mix=trace.token_mix, gaps=gaps, token_windows=windows,
            token_distribution=trace.token_distribution,
        )
    assert trace.rates_rps is not None and trace.resolution_s is not None
    res = trace.resolution_s
    b0 = start_s / res
    b1 = end / res
    if abs(b0 - round(b0)) > 1e-9 or (end < trace.duration_s and abs(b1 - round(b1)) > 1e-9):
        raise SpecError("start/duration", f"{start_s:g} s + {span:g} s",
                        f"multiples of the trace's {res:g}-s bins")
    lo, hi = round(b0), math.ceil(b1 - 1e-9)
    return Trace(name=tag, duration_s=span, rates_rps=trace.rates_rps[lo:hi],
                 resolution_s=res, token_mix=trace.token_mix, gaps=gaps,
                 token_windows=windows, token_distribution=trace.token_distribution)


def _shift_windows(tw: TokenWindows | None, start_s: float) -> TokenWindows | None:
    if tw is None or start_s == 0:
        return tw
    res = tw.resolution_s
    k = start_s / res
    if abs(k - round(k)) < 1e-9:
        i = round(k)
        return TokenWindows(res, tw.mean_prompt[i:], tw.mean_output[i:])
    # Refine to a resolution that divides both the window and the start (whole seconds).
    if res != int(res) or start_s != int(start_s):
        step = 1.0
    else:
        step = float(math.gcd(int(res), int(start_s)))
    rep = round(res / step)
    first = round(start_s / step)
    return TokenWindows(step, np.repeat(tw.mean_prompt, rep)[first:],
                        np.repeat(tw.mean_output, rep)[first:])


def window_label(start_s: float, span_s: float) -> str:
    """``2d+6h``-style label of a window, for trace names."""
    return f"{_fmt(start_s)}+{_fmt(span_s)}"


def _fmt(seconds: float) -> str:
    for unit, size in (("d", 86_400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
