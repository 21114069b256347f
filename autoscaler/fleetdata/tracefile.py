"""A reconstructed workload as a file: JSON (gzip when the name ends in ``.gz``) holding the
per-step rates, the collection gaps and the token means per window, which
``autoscaler replay --trace FILE`` reads back.

``anonymise=True`` drops everything that names the fleet (namespace, workload, pods, the
Prometheus URL and the absolute start time): what is left is rates, gaps and token means.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.errors import TraceError
from autoscaler.fleetdata.history import Reconstruction
from autoscaler.traces.model import TokenMix, TokenWindows, Trace

FORMAT = "autoscaler-fleet-trace/v1"


def _floats(values: Any) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), 6) for v in values]


def trace_document(rec: Reconstruction, *, source: dict[str, str] | None,
                   anonymise: bool) -> dict[str, Any]:
    tr = rec.trace
    doc: dict[str, Any] = {
        "format": FORMAT,
        "name": "anonymised fleet trace" if anonymise else tr.name,
        "step_s": rec.step_s,
        "duration_s": tr.duration_s,
        "rates_rps": _floats(tr.rates_rps if tr.rates_rps is not None else []),
        "gaps": [[a, b] for a, b in tr.gaps],
        "token_mix": {"mean_prompt_tokens": tr.token_mix.mean_prompt_tokens,
                      "mean_output_tokens": tr.token_mix.mean_output_tokens},
    }
    if tr.token_windows is not None:
        tw = tr.token_windows
        doc["token_windows"] = {"resolution_s": tw.resolution_s,
                                "mean_prompt": _floats(tw.mean_prompt),
                                "mean_output": _floats(tw.mean_output)}
    if not anonymise:
        doc["start_unix"] = rec.start_unix
        if source:
            doc["source"] = dict(source)
    return doc


def write_trace(path: Path, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")


def is_fleet_trace(path: Path) -> bool:
    """True when ``path`` looks like one of our files (cheap: the first bytes only)."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path) as fh:
                raw = fh.read(4096)
        else:
            with path.open("rb") as fh:
                raw = fh.read(4096)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    return FORMAT.encode() in raw


def _array(path: Path, doc: dict[str, Any], key: str) -> np.ndarray:
    values = doc.get(key)
    if not isinstance(values, list):
        raise TraceError(str(path), f"{key}: a list of numbers")
    try:
        return np.asarray([math.nan if v is None else float(v) for v in values],
                          dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TraceError(str(path), f"{key}: a list of numbers ({exc})") from exc


def load_trace_file(path: Path) -> Trace:
    """Read a file written by ``write_trace``; ``TraceError`` names the file and field."""
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        doc = json.loads(raw)
    except (OSError, ValueError, EOFError) as exc:
        raise TraceError(str(path), f"a readable {FORMAT} JSON file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TraceError(str(path), f'format: "{FORMAT}"')
    step = doc.get("step_s")
    if not isinstance(step, int | float) or not step > 0:
        raise TraceError(str(path), "step_s: a number of seconds > 0")
    rates = _array(path, doc, "rates_rps")
    if (rates[np.isfinite(rates)] < 0).any():
        raise TraceError(str(path), "rates_rps: numbers >= 0")
    rates = np.nan_to_num(rates, nan=0.0)
    # Rates are written to 6 decimals: a whole count per step reads back within
    # step x 5e-7 of a whole number (7 requests in 60 s: 0.116667 x 60 = 7.00002). A real
    # fleet's counts are whole; snapping them keeps them counts for --rate-scale.
    counts = rates * float(step)
    if np.all(np.abs(counts - np.rint(counts)) <= float(step) * 5e-7 + 1e-9):
        rates = np.rint(counts) / float(step)
    gaps_raw = doc.get("gaps", [])
    try:
        gaps = tuple((float(a), float(b)) for a, b in gaps_raw)
    except (TypeError, ValueError) as exc:
        raise TraceError(str(path), "gaps: a list of [start, end] seconds") from exc
    mix_raw = doc.get("token_mix") or {}
    mix = TokenMix(float(mix_raw.get("mean_prompt_tokens", TokenMix().mean_prompt_tokens)),
                   float(mix_raw.get("mean_output_tokens", TokenMix().mean_output_tokens)))
    tw = None
    if isinstance(doc.get("token_windows"), dict):
        w = doc["token_windows"]
        tw = TokenWindows(resolution_s=float(w["resolution_s"]),
                          mean_prompt=_array(path, w, "mean_prompt"),
                          mean_output=_array(path, w, "mean_output"))
    return Trace(name=str(doc.get("name", path.name)),
                 duration_s=float(doc.get("duration_s", rates.size * step)),
                 rates_rps=rates, resolution_s=float(step), token_mix=mix, gaps=gaps,
                 token_windows=tw)


def whole_counts(trace: Trace) -> bool:
    """Whole requests per bin (a real fleet's reconstruction), not fractional rates."""
    if trace.rates_rps is None or trace.resolution_s is None:
        return False
    counts = trace.rates_rps * trace.resolution_s
    return bool(np.all(np.abs(counts - np.rint(counts)) < 1e-6))


def scale_fleet_trace(trace: Trace, *, rate: float = 1.0, time: float = 1.0,
                      seed: int = 0) -> Trace:
    """``traces.scale_trace`` for an exported fleet trace, whose whole counts sit in
    steps of 60 s (or whatever ``--step`` was), not in the 1-s bins ``scale_trace`` treats
    as counts.

    A step's count is spread over its seconds as evenly as whole requests allow (7 in 60 s:
    one in each of the first 7 seconds), scaled as a count trace (thinning, or superposed
    copies from other whole days, or shifted by 60-600 s when it spans less than two
    days), and summed back into steps. Day copies and thinning are then exactly the
    count-trace law per step (a binomial per second sums to a binomial per step); a
    shifted copy's step takes the parts of the two steps it overlaps. Fractional rates
    (the twin's fluid reconstruction) are multiplied, as for any smooth rate trace.
    """
    from autoscaler.traces.scaling import scale_trace

    if rate == 1.0 or not whole_counts(trace):
        return scale_trace(trace, rate=rate, time=time, seed=seed)
    assert trace.rates_rps is not None and trace.resolution_s is not None
    step = trace.resolution_s
    per = round(step)
    if abs(step - per) > 1e-9 or per < 1:
        return scale_trace(trace, rate=rate, time=time, seed=seed)
    counts = np.rint(trace.rates_rps * step).astype(np.int64)
    base, extra = np.divmod(counts, per)
    seconds = np.repeat(base, per).reshape(-1, per)
    seconds += np.arange(per)[None, :] < extra[:, None]
    fine = Trace(name=trace.name, duration_s=float(counts.size * per),
                 rates_rps=seconds.reshape(-1).astype(np.float64), resolution_s=1.0,
                 token_mix=trace.token_mix, gaps=trace.gaps,
                 token_windows=trace.token_windows,
                 token_distribution=trace.token_distribution)
    scaled = scale_trace(fine, rate=rate, time=1.0, seed=seed)
    assert scaled.rates_rps is not None
    back = scaled.rates_rps.reshape(-1, per).sum(axis=1)
    out = Trace(name=scaled.name, duration_s=trace.duration_s,
                rates_rps=np.asarray(back / step, dtype=np.float64), resolution_s=step,
                token_mix=trace.token_mix, gaps=trace.gaps,
                token_windows=trace.token_windows,
                token_distribution=trace.token_distribution)
    return out if time == 1.0 else scale_trace(out, time=time, seed=seed)
