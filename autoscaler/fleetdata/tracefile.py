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
