"""ServeGen per-client window traces: rates, burstiness, token lengths and collection gaps.

A ServeGen folder holds ``chunk-<id>-trace.csv`` (no header,
``timestamp_s,rate,cv,dist,param1,param2``: one 600-s window per row and client, with the
fitted inter-arrival distribution, Gamma or Weibull (shape, scale)) and, for some clients,
``chunk-<id>-dataset.json`` (per 6-hour window, the empirical distribution of input and
output token lengths as a Python dict literal in a string; ``"{}"`` is no traffic).

**Arrivals with their burstiness.** As ServeGen does, each client-window is a renewal
process whose inter-arrival times follow the fitted distribution *rescaled to the window's
rate* (the shape, hence the CV, is kept; the scale is set so the mean gap is 1/rate). We
start each window in the renewal process's equilibrium (the first arrival after a
length-biased gap times a uniform), so the expected count is exactly ``rate x 600``.
Note: the ``cv`` column is an empirical CV, while the process follows the *fitted*
distribution; for Weibull rows the fitted CV is often lower (median ratio 0.79), for Gamma
rows the two agree (cv = 1/sqrt(shape)). The rate-weighted mean fitted CV is 3.23 against
3.08 for the column.

The replay consumes per-second counts, not requests (14 days of 30 clients is about 1.04e9
requests), so each client-window yields 600 per-second counts by one of two methods:

* **exact** (expected count ``rate x 600 <= EXACT_MAX_ARRIVALS``, or too few arrivals per
  second for the CLT to hold within one, ``CLT_SETTLE_FACTOR``): draw the gaps
  (``numpy`` gamma/weibull), place the arrivals and count them per second;
* **renewal CLT** (the other windows): for a renewal process with rate L and gap CV c, the
  count in an interval of T seconds is asymptotically normal with mean L*T and variance
  L*T*c^2 once T is much longer than the mean gap, and counts in disjoint long intervals
  are asymptotically uncorrelated. So each second gets an independent count with mean L
  and variance L*c^2: negative binomial when c > 1 (it has that mean and variance and is
  never negative), a rounded normal when c < 1, Poisson when c = 1. Worked number: the
  median CLT window has L = 100 req/s and c = 1.3, a mean gap of 0.01 s, so a second
  holds about 100 gaps; the equilibrium residual gap, mean (1 + c^2) / (2L) = 0.013 s, is
  75 times shorter than the 1-s bin. Per second: mean 100, variance 100 x 1.69 = 169, so a
  count CV of 0.13. The tests check this against direct inter-arrival sampling.
  Where it is coarse: when (1 + c^2) / (2L) is not small against 1 s, the exact process
  is clustered over several seconds; the CLT still gives the right variance over 10 s and
  longer but overstates it within one second (the exact 1-s variance lies between L and
  L*c^2), which errs towards burstier traffic. Measured against direct sampling over 10 h
  (variance / mean of counts in T-s bins, exact vs CLT): Gamma c = 2 at 200 req/s:
  4.0 vs 4.0 at 1, 10 and 60 s; Gamma c = 5 at 50 req/s: 23.2 vs 25.0 at 1 s, 24.9 vs 24.8
  at 10 s; Gamma c = 10 at 20 req/s: 66 vs 100 at 1 s, 93 vs 105 at 10 s, 100 vs 90 at
  60 s; Weibull 0.4 (c = 3.1) at 20 req/s: 7.5 vs 9.9 at 1 s, 9.7 vs 9.9 at 10 s.
  For very clustered windows the error is large (Weibull shape 0.198, c = 16.3, at
  67 req/s: 67 vs 258 at 1 s, 146 vs 272 at 10 s, and a burst tail five times too long),
  so windows with fewer than ``CLT_SETTLE_FACTOR`` x m3 / c^2 arrivals per second take
  the exact path (m3 = E[X^3] / E[X]^3 of the gaps: the count variance settles to its
  long-run value only after about that many arrivals).

Every draw comes from ``numpy.random.default_rng((seed, client, day))``: the same seed
gives the same counts for a client-day whatever other clients or window are loaded.

**Collection gaps.** A window whose rate sums to 0 over *every* client in the folder is a
collection gap, one ``Trace.gaps`` entry per window (30 production API clients never all
go silent for 10 minutes; the 37 such windows sit next to windows carrying ~1,000 req/s).
A single chunk file has no gaps: one client's silence is real.

**Token lengths.** Per 6-hour window, the mean prompt and output lengths weighted by each
client's requests in that window; clients without a dataset file (or without data in the
window) count at the mean of the clients that have one (the pooled distribution), so they
leave the weighted mean unchanged. The pooled distribution over all clients and windows
(weighted by requests) is kept for ``Trace.token_sample``.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoscaler.errors import SpecError, TraceError
from autoscaler.traces.limits import MAX_SPAN_S
from autoscaler.traces.model import (
    BoolArray,
    FloatArray,
    IntArray,
    TokenDistribution,
    TokenMix,
    TokenWindows,
    Trace,
)

SERVEGEN_RESOLUTION_S = 600.0
"""ServeGen window length; used only when a folder has a single window to infer it from."""
TOKEN_RESOLUTION_S = 21_600.0
"""ServeGen token-distribution window (6 h); used only when a dataset has a single window."""
EXACT_MAX_ARRIVALS = 1_200.0
"""Client-windows expecting at most this many arrivals (2 req/s over 600 s) are sampled
arrival by arrival; busier ones use the renewal CLT (see the module doc) unless
``CLT_SETTLE_FACTOR`` sends them to the exact path too. Exact sampling costs one draw
per request (about 30-50 ns), and 14 days hold 1.04e9 of them."""
CLT_SETTLE_FACTOR = 2.0
"""Busy client-windows are also sampled arrival by arrival unless one second holds at least
this many times m3 / c^2 arrivals (``clt_settle_arrivals``), m3 = E[X^3] / E[X]^3 of the
fitted gap distribution: below that the count variance has not yet grown to its long-run
L c^2 per second (its correction term is of order m3 / c^2 arrivals), and the CLT's
independent per-second draws are far burstier than the process. Measured, 1-s variance /
mean of exact counts against the CLT's c^2 (ratio CLT / exact), by L / (m3 / c^2):
Weibull 0.198 (c = 16.4, m3 / c^2 = 3,303) 3.98 at 0.02 (client 0's window at 339,000 s:
67.4 req/s), 1.49 at 0.41, 1.22 at 0.81; Weibull 0.3 1.46 at 0.38, 1.24 at 0.97;
Weibull 0.5 1.08 at 1.67; Gamma c = 10 1.00 at 2.49, c = 5 1.02 at 2.45. So 2. It sends
1.96e8 of the 1.04e9 requests (18.8 %) to the exact path, about 6 CPU s more for the
14-day folder (6.8 against 0.8 CPU s measured)."""
DAY_S = 86_400.0
MAX_RATE_RPS = 1e7
"""Largest per-client window rate accepted, req/s (the busiest real client averages
about 300): beyond it a row is garbage, and numpy's samplers would overflow."""

_CLT_STREAM = 1_000_003
"""Seed-sequence word for the CLT draws (distinct from any client id in a real folder)."""
_CHUNK_RE = re.compile(r"^chunk-(\d+)-trace\.csv$")
_DIST_CODES = {"": 0, "gamma": 1, "weibull": 2}
_NUMBER_CHARS = str.maketrans("", "", "0123456789.eE+-:, \t\n")
_NOT_SEPARATORS = str.maketrans("", "", "0123456789.eE+- \t\n")


@dataclass
class _Client:
    cid: int
    path: Path
    slots: IntArray
    rates: FloatArray
    dist: IntArray
    shape: FloatArray
    scale: FloatArray


def servegen_files(folder: Path) -> list[Path]:
    found = [(int(m.group(1)), f) for f in folder.iterdir() if (m := _CHUNK_RE.match(f.name))]
    return [f for _, f in sorted(found)]


def _client_id(f: Path) -> int:
    m = _CHUNK_RE.match(f.name)
    return int(m.group(1)) if m else 0


def fitted_cv(dist: IntArray, shape: FloatArray) -> FloatArray:
    """CV of the fitted inter-arrival distribution (scale-free, so rescaling keeps it).

    Gamma(k): 1/sqrt(k). Weibull(k): sqrt(G(1+2/k) / G(1+1/k)^2 - 1), G the gamma function.
    """
    out = np.ones(shape.shape, dtype=np.float64)
    g = dist == 1
    out[g] = 1.0 / np.sqrt(shape[g])
    for i in np.flatnonzero(dist == 2):
        k = float(shape[i])
        out[i] = math.sqrt(max(0.0, math.expm1(math.lgamma(1 + 2 / k)
                                               - 2 * math.lgamma(1 + 1 / k))))
    return out


# --------------------------------------------------------------------------- parsing


def _parse_chunk(f: Path) -> tuple[FloatArray, FloatArray, IntArray, FloatArray, FloatArray]:
    """(starts, rates, dist codes, shape, scale) of one chunk CSV; TraceError on bad rows."""
    from autoscaler.traces.loaders import _check_widths, _floats, _read_csv_rows, _read_text

    rows, lines = _read_csv_rows(f, _read_text(f))
    _check_widths(f, rows, lines, 6)
    if not rows:
        empty = np.zeros(0)
        return empty, empty, np.zeros(0, dtype=np.int64), empty, empty
    cols = [list(c) for c in zip(*rows, strict=True)]
    starts = _floats(f, "timestamp_s", cols[0], lines)
    rates = _floats(f, "rate", cols[1], lines)
    bad_rate = np.flatnonzero((rates < 0) | (rates > MAX_RATE_RPS))
    if bad_rate.size:
        i = int(bad_rate[0])
        raise TraceError(str(f), f"column rate: {cols[1][i][:30]!r} is not between 0 and "
                         f"{MAX_RATE_RPS:.0e} req/s", line=lines[i])
    backwards = np.flatnonzero(np.diff(starts) <= 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise TraceError(
            str(f), f"windows are not increasing: {cols[0][i]} after {cols[0][i - 1]}",
            line=lines[i],
        )
    codes = np.zeros(len(rows), dtype=np.int64)
    for i, d in enumerate(cols[3]):
        code = _DIST_CODES.get(d.strip().lower())
        if code is None:
            raise TraceError(str(f), f"column dist: {d.strip()[:30]!r} is not Gamma, Weibull "
                             "or empty", line=lines[i])
        codes[i] = code
    # An empty dist means the client sent nothing in that window; in the real files such
    # rows also carry rate 0, but trust the dist column if they ever disagree.
    rates = np.where(codes == 0, 0.0, rates)
    shape = np.ones(len(rows))
    scale = np.ones(len(rows))
    active = np.flatnonzero((codes != 0) & (rates > 0))
    if active.size:
        idx = active.tolist()
        shape[active] = _floats(f, "param1", [cols[4][i] for i in idx], [lines[i] for i in idx])
        scale[active] = _floats(f, "param2", [cols[5][i] for i in idx], [lines[i] for i in idx])
        # Shape limits: a Weibull shape below 0.05 has a gap CV above 10^7 (G(1+2/k)
        # overflows near k = 0.006), a Gamma shape of 1e-4 already has CV 100; the real
        # rows stay within Gamma 0.0099..364 and Weibull 0.16..2.2.
        k, kinds = shape[active], codes[active]
        bad = np.flatnonzero(~(scale[active] > 0)
                             | ((kinds == 1) & ~((k >= 1e-4) & (k <= 1e6)))
                             | ((kinds == 2) & ~((k >= 0.05) & (k <= 1e3))))
        if bad.size:
            i = int(active[bad[0]])
            raise TraceError(str(f), f"shape {cols[4][i][:20]!r}, scale {cols[5][i][:20]!r}: "
                             "scale must be > 0, a Gamma shape 1e-4..1e6 (gap CV 100 to "
                             "0.001), a Weibull shape 0.05..1000", line=lines[i])
    return starts, rates, codes, shape, scale


def _read_clients(files: list[Path]) -> tuple[list[_Client], float, float, int]:
    """Parse every chunk; returns (clients, origin_s, resolution_s, window count)."""
    parsed = [(f, *_parse_chunk(f)) for f in files]
    if not any(s.size for _, s, *_ in parsed):
        raise TraceError(str(files[0].parent if len(files) > 1 else files[0]),
                         "the trace holds no windows")
    all_starts = np.concatenate([s for _, s, *_ in parsed])
    steps = np.concatenate([np.diff(s) for _, s, *_ in parsed])
    resolution = float(steps.min()) if steps.size else SERVEGEN_RESOLUTION_S
    origin = float(all_starts.min())
    span = float(all_starts.max() - origin) + resolution
    if span > MAX_SPAN_S:
        f, s = next((f, s) for f, s, *_ in parsed if s.size and s.max() == all_starts.max())
        raise TraceError(str(f), f"windows span {span:.4g} s, more than the "
                         f"{MAX_SPAN_S:,.0f} s (400 days) a trace may span",
                         line=int(np.argmax(s)) + 1)
    n = round((span - resolution) / resolution) + 1
    clients: list[_Client] = []
    for f, starts, rates, codes, shape, scale in parsed:
        slots = (starts - origin) / resolution
        off_grid = np.flatnonzero(np.abs(slots - np.round(slots)) > 1e-6)
        if off_grid.size:
            i = int(off_grid[0])
            raise TraceError(str(f), f"window start {starts[i]:g} s is not on the "
                             f"{resolution:g}-s grid", line=i + 1)
        clients.append(_Client(_client_id(f), f, np.round(slots).astype(np.int64), rates,
                               codes, shape, scale))
    return clients, origin, resolution, n


def _window_rates(clients: list[_Client], n: int) -> FloatArray:
    total = np.zeros(n)
    for c in clients:
        np.add.at(total, c.slots, c.rates)
    return total


def _gaps_from_total(total: FloatArray, resolution: float) -> tuple[tuple[float, float], ...]:
    """One gap per silent window (not merged), so ``len(trace.gaps)`` counts windows: the
    37 of the real folder, as SOURCES.md and the issue count them."""
    return tuple((float(i * resolution), float((i + 1) * resolution))
                 for i in np.flatnonzero(total == 0))


# --------------------------------------------------------------------------- arrivals


def renewal_counts_exact(rng: np.random.Generator, rate: float, dist: int, shape: float,
                         window_s: int) -> IntArray:
    """Per-second arrival counts of one stationary renewal window, arrival by arrival.

    Gaps follow the fitted distribution (1 = Gamma, 2 = Weibull, shape ``shape``) rescaled
    to mean ``1 / rate``. The first arrival comes after an equilibrium residual gap,
    ``U x`` a length-biased gap (for Gamma(k, th) that is Gamma(k + 1, th); for Weibull(k, s)
    it is ``s * Gamma(1 + 1/k)^(1/k)``), so the expected count is exactly
    ``rate * window_s``.
    """
    counts = np.zeros(window_s, dtype=np.int64)
    if rate <= 0:
        return counts
    mean_gap = 1.0 / rate
    if dist == 1:
        theta = mean_gap / shape
        first = rng.random() * rng.gamma(shape + 1.0, theta)

        def draw(m: int) -> FloatArray:
            return np.asarray(rng.gamma(shape, theta, m), dtype=np.float64)
    else:
        s = mean_gap / math.exp(math.lgamma(1.0 + 1.0 / shape))
        first = rng.random() * s * rng.gamma(1.0 + 1.0 / shape) ** (1.0 / shape)

        def draw(m: int) -> FloatArray:
            return np.asarray(s * rng.weibull(shape, m), dtype=np.float64)

    expected = rate * window_s
    batch = int(expected + 4.0 * math.sqrt(expected) + 16)
    pos = first
    while pos < window_s:
        gaps = draw(batch)
        cs = np.cumsum(gaps)
        times = np.concatenate(([pos], pos + cs[:-1]))
        inside = times[times < window_s]
        counts += np.bincount(inside.astype(np.int64), minlength=window_s)[:window_s]
        pos = pos + float(cs[-1])
    return counts


def renewal_counts_clt(rng: np.random.Generator, mean: FloatArray, var: FloatArray,
                       window_s: int) -> FloatArray:
    """Per-second counts, shape ``(len(mean), window_s)``: independent, with mean ``mean``
    and variance ``var`` per second (the renewal CLT; see the module doc).

    Independent client-windows add: their sum has the summed mean and variance, so one
    draw per second serves every CLT-path client at once (1.2 million draws for 14 days
    instead of one per client and second). Negative binomial when the variance exceeds the
    mean (``NB(n, p)``: mean ``n(1-p)/p``, variance ``n(1-p)/p^2``; ``p = M/V`` and
    ``n = M^2/(V-M)`` give mean ``M`` and variance ``V``), a rounded normal when it is
    below (the mean is then >= 2 req/s, so the clip at 0 moves it by < 1e-3), Poisson
    when equal.
    """
    m = np.repeat(mean[:, None], window_s, axis=1).reshape(-1)
    v = np.repeat(var[:, None], window_s, axis=1).reshape(-1)
    out = np.zeros(m.shape)
    busy = m > 0
    over = busy & (v > m * (1.0 + 1e-9))
    under = busy & (v < m * (1.0 - 1e-9))
    poisson = busy & ~(over | under)
    if over.any():
        mo, vo = m[over], v[over]
        out[over] = rng.negative_binomial(mo * mo / (vo - mo), mo / vo)
    if under.any():
        out[under] = np.maximum(0.0, np.rint(rng.normal(m[under], np.sqrt(v[under]))))
    if poisson.any():
        out[poisson] = rng.poisson(m[poisson])
    return out.reshape(len(mean), window_s)


def clt_settle_arrivals(dist: IntArray, shape: FloatArray) -> FloatArray:
    """m3 / c^2 of the fitted gap distribution (scale-free): the arrivals a renewal count
    needs before its variance settles to L c^2 per unit time (``CLT_SETTLE_FACTOR``).

    m3 = E[X^3] / E[X]^3: Gamma(k) (k + 1)(k + 2) / k^2, Weibull(k) G(1 + 3/k) /
    G(1 + 1/k)^3, G the gamma function. Worked: Gamma 0.25 (c = 2) 45 / 4 = 11.25;
    Weibull 0.198 (c = 16.4) 3,303."""
    out = np.zeros(shape.shape, dtype=np.float64)
    g = np.flatnonzero(dist == 1)
    k = shape[g]
    out[g] = (k + 1.0) * (k + 2.0) / k  # m3 = (k+1)(k+2)/k^2, c^2 = 1/k
    for i in np.flatnonzero(dist == 2):
        kk = float(shape[i])
        g1 = math.lgamma(1 + 1 / kk)
        c2 = math.expm1(math.lgamma(1 + 2 / kk) - 2 * g1)
        out[i] = math.exp(math.lgamma(1 + 3 / kk) - 3 * g1) / max(c2, 1e-300)
    return out


def _exact_path(c: _Client, window_s: int) -> BoolArray:
    """Which of ``c``'s windows are sampled arrival by arrival: every busy window expecting
    at most ``EXACT_MAX_ARRIVALS``, and those whose rate is below ``CLT_SETTLE_FACTOR`` x
    m3 / c^2 arrivals per second (where the CLT does not hold within one second). Worked:
    Weibull 0.198 at 67.4 req/s, 67.4 < 2 x 3,303: exact; Gamma 0.25 (c = 2) at
    200 req/s, 200 >= 2 x 11.25: CLT."""
    busy = c.rates > 0
    settle = np.zeros(c.rates.shape)
    settle[busy] = clt_settle_arrivals(c.dist[busy], c.shape[busy])
    return np.asarray(busy & ((c.rates * window_s <= EXACT_MAX_ARRIVALS)
                              | (c.rates < CLT_SETTLE_FACTOR * settle)), dtype=np.bool_)


def _exact_day_counts(c: _Client, day: int, per_day: int, window_s: int,
                      seed: int) -> FloatArray | None:
    """Per-second counts of client ``c``'s exact-path windows over day ``day``."""
    lo, hi = day * per_day, (day + 1) * per_day
    sel = np.flatnonzero((c.slots >= lo) & (c.slots < hi) & _exact_path(c, window_s))
    if not sel.size:
        return None
    rng = np.random.default_rng((seed, c.cid, day))
    out = np.zeros((per_day, window_s))
    for i in sel:
        out[c.slots[i] - lo] = renewal_counts_exact(
            rng, float(c.rates[i]), int(c.dist[i]), float(c.shape[i]), window_s)
    return out.reshape(-1)


def _clt_moments(chosen: list[_Client], n: int, window_s: int) -> tuple[FloatArray, FloatArray]:
    """Per window, the summed mean and variance per second of the CLT-path client-windows."""
    mean = np.zeros(n)
    var = np.zeros(n)
    for c in chosen:
        busy = (c.rates > 0) & ~_exact_path(c, window_s)
        cv = fitted_cv(c.dist[busy], c.shape[busy])
        np.add.at(mean, c.slots[busy], c.rates[busy])
        np.add.at(var, c.slots[busy], c.rates[busy] * cv * cv)
    return mean, var


# --------------------------------------------------------------------------- tokens


def parse_token_distribution(text: str, source: str, where: str) -> tuple[IntArray, FloatArray]:
    """A ``"{tokens: probability, ...}"`` string as (values, probabilities summing to 1).

    Equivalent to ``ast.literal_eval`` on the well-formed files, but vectorised: the
    largest file (3.9 MB) takes 0.2 s instead of 4.8 s. Anything the fast path does not
    recognise goes through ``ast.literal_eval`` so the rule stays "a Python dict literal".
    """
    body = text.strip()
    fast = (body.startswith("{") and body.endswith("}")
            and not body[1:-1].translate(_NUMBER_CHARS).strip())
    nums = np.zeros(0)
    if fast:
        inner = body[1:-1].strip().rstrip(",")
        if not inner:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            nums = np.fromstring(inner.replace(":", ","), dtype=np.float64, sep=",")
        # One number per key and per value, separators alternating ":" and ",".
        pairs = inner.count(":")
        seps = inner.translate(_NOT_SEPARATORS)
        fast = nums.size == 2 * pairs and seps == ":" + ",:" * (pairs - 1)
    if fast:
        keys, probs = nums[0::2], nums[1::2]
    else:
        try:
            obj = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise TraceError(source, f"{where}: not a dict literal of token counts "
                             f"({type(exc).__name__})") from exc
        if not isinstance(obj, dict) or not all(
                isinstance(k, int | float) and isinstance(v, int | float)
                and not isinstance(k, bool) and not isinstance(v, bool)
                for k, v in obj.items()):
            raise TraceError(source, f"{where}: expected a dict of token count: probability")
        if not obj:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        keys = np.array(list(obj.keys()), dtype=np.float64)
        probs = np.array(list(obj.values()), dtype=np.float64)
    bad = ~(np.isfinite(keys) & (keys >= 0) & (keys == np.round(keys)) & (keys < 1e9)
            & np.isfinite(probs) & (probs >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(source, f"{where}: entry {keys[i]:g}: {probs[i]:g} is not a token "
                         "count (integer >= 0) with a probability >= 0")
    total = float(probs.sum())
    if not total > 0:
        raise TraceError(source, f"{where}: probabilities sum to {total:g}, not > 0")
    return keys.astype(np.int64), probs / total


def _read_dataset(f: Path, origin: float) -> dict[float, tuple[IntArray, FloatArray,
                                                                IntArray, FloatArray]]:
    """Window start (s since origin) -> (prompt values, probs, output values, probs)."""
    try:
        raw = f.read_bytes()
    except OSError as exc:
        raise TraceError(str(f), f"cannot read: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise TraceError(str(f), f"not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise TraceError(str(f), f"not valid JSON: {exc.msg}", line=exc.lineno) from exc
    except RecursionError as exc:
        raise TraceError(str(f), "not valid JSON: nested too deeply") from exc
    if not isinstance(doc, dict):
        raise TraceError(str(f), "expected a JSON object keyed by window start (seconds)")
    out: dict[float, tuple[IntArray, FloatArray, IntArray, FloatArray]] = {}
    for key, value in doc.items():
        where = f"window {key[:20]!r}"
        try:
            start = float(key)
        except ValueError:
            raise TraceError(str(f), f"{where}: the key is not a number of seconds") from None
        if not math.isfinite(start) or abs(start - origin) > MAX_SPAN_S:
            raise TraceError(str(f), f"{where}: window start out of range")
        if not isinstance(value, dict):
            raise TraceError(str(f), f"{where}: expected an object with input_tokens and "
                             "output_tokens")
        parts = []
        for field in ("input_tokens", "output_tokens"):
            text = value.get(field)
            if not isinstance(text, str):
                raise TraceError(str(f), f"{where}: {field} must be a string holding a dict "
                                 "literal")
            parts.append(parse_token_distribution(text, str(f), f"{where} {field}"))
        (pv, pp), (ov, op) = parts
        if pv.size and ov.size:
            out[start - origin] = (pv, pp, ov, op)
    return out


def _token_model(clients: list[_Client], datasets: dict[int, dict[float, tuple[
        IntArray, FloatArray, IntArray, FloatArray]]], resolution: float, n_windows: int
                 ) -> tuple[TokenWindows | None, TokenDistribution | None, TokenMix]:
    starts = sorted({s for d in datasets.values() for s in d})
    if not starts:
        return None, None, TokenMix()
    steps = np.diff(np.asarray(starts))
    tres = float(steps.min()) if steps.size else TOKEN_RESOLUTION_S
    n_tok = max(1, math.ceil(n_windows * resolution / tres - 1e-9))
    w_sum = np.zeros(n_tok)
    p_sum = np.zeros(n_tok)
    o_sum = np.zeros(n_tok)
    pool_p: list[tuple[IntArray, FloatArray]] = []
    pool_o: list[tuple[IntArray, FloatArray]] = []
    for c in clients:
        data = datasets.get(c.cid)
        if not data:
            continue
        # Requests of this client in each token window.
        tok_idx = np.floor(c.slots * resolution / tres).astype(np.int64)
        ok = (tok_idx >= 0) & (tok_idx < n_tok)
        req = np.bincount(tok_idx[ok], weights=c.rates[ok] * resolution, minlength=n_tok)
        for start, (pv, pp, ov, op) in data.items():
            k = math.floor(start / tres + 1e-9)
            if not 0 <= k < n_tok or req[k] <= 0:
                continue
            w_sum[k] += req[k]
            p_sum[k] += req[k] * float(np.dot(pv, pp))
            o_sum[k] += req[k] * float(np.dot(ov, op))
            pool_p.append((pv, pp * req[k]))
            pool_o.append((ov, op * req[k]))
    if not pool_p:
        return None, None, TokenMix()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(w_sum > 0, p_sum / w_sum, np.nan)
        mean_o = np.where(w_sum > 0, o_sum / w_sum, np.nan)
    dist = TokenDistribution(*_pool(pool_p), *_pool(pool_o))
    mix = TokenMix(mean_prompt_tokens=float(np.dot(dist.prompt_values, dist.prompt_probs)),
                   mean_output_tokens=float(np.dot(dist.output_values, dist.output_probs)))
    # Windows with traffic but no client data take the pooled means (the fallback rule).
    return TokenWindows(tres, np.asarray(mean_p), np.asarray(mean_o)), dist, mix


def _pool(parts: list[tuple[IntArray, FloatArray]]) -> tuple[IntArray, FloatArray]:
    values = np.concatenate([v for v, _ in parts])
    weights = np.concatenate([w for _, w in parts])
    uniq, inv = np.unique(values, return_inverse=True)
    mass = np.bincount(inv, weights=weights)
    return uniq.astype(np.int64), mass / mass.sum()


# --------------------------------------------------------------------------- loader


def load_servegen(p: Path, name: str, *, seed: int = 0, bursts: bool = True,
                  clients: tuple[int, ...] | None = None, start_s: float = 0.0,
                  end_s: float | None = None) -> tuple[Trace, float]:
    """Load a ServeGen folder (or one chunk file); see the module doc.

    ``clients`` keeps only those chunk ids (gaps are still judged over every client).
    With ``bursts`` the trace is per-second counts covering ``[start_s, end_s)`` rounded out
    to whole days (the caller cuts it exactly); without, the 600-s window means.
    Returns the trace and its start in seconds of the whole file (0 without bursts).
    """
    files = servegen_files(p) if p.is_dir() else [p]
    if not files:
        raise TraceError(str(p), "folder holds no chunk-<id>-trace.csv files (ServeGen)")
    everyone, origin, resolution, n = _read_clients(files)
    gaps = _gaps_from_total(_window_rates(everyone, n), resolution) if len(files) > 1 else ()
    chosen = everyone
    if clients is not None:
        known = {c.cid for c in everyone}
        missing = sorted(set(clients) - known)
        if missing:
            raise TraceError(str(p), f"no chunk-{missing[0]}-trace.csv; clients here: "
                             f"{min(known)}..{max(known)}")
        chosen = [c for c in everyone if c.cid in set(clients)]
    datasets = {}
    for c in chosen:
        ds = c.path.with_name(f"chunk-{c.cid}-dataset.json")
        if ds.is_file():
            datasets[c.cid] = _read_dataset(ds, origin)
    windows, dist, mix = _token_model(chosen, datasets, resolution, n)
    total = _window_rates(chosen, n)
    duration = float(n * resolution)
    window_s = round(resolution)
    if not bursts or abs(resolution - window_s) > 1e-9 or DAY_S % resolution:
        return Trace(name=name, duration_s=duration, rates_rps=total, resolution_s=resolution,
                     token_mix=mix, gaps=gaps, token_windows=windows,
                     token_distribution=dist), 0.0
    if start_s >= duration:
        raise SpecError("start", f"{start_s:g} s",
                        f"less than the trace's duration ({duration:g} s)")
    per_day = round(DAY_S / resolution)
    first_day = max(0, math.floor(start_s / DAY_S))
    end = duration if end_s is None else min(duration, end_s)
    last_day = max(first_day + 1, math.ceil(end / DAY_S - 1e-9))
    per_day_s = per_day * window_s
    counts = np.zeros((last_day - first_day) * per_day_s)
    clt_mean, clt_var = _clt_moments(chosen, n, window_s)
    for k, day in enumerate(range(first_day, last_day)):
        part = counts[k * per_day_s:(k + 1) * per_day_s]
        lo = day * per_day
        m, v = clt_mean[lo:lo + per_day], clt_var[lo:lo + per_day]
        if m.size:
            rng = np.random.default_rng((seed, _CLT_STREAM, day))
            part[: m.size * window_s] += renewal_counts_clt(rng, m, v, window_s).reshape(-1)
        for c in chosen:
            exact = _exact_day_counts(c, day, per_day, window_s, seed)
            if exact is not None:
                part += exact
    offset = first_day * DAY_S
    span = min(duration, last_day * DAY_S) - offset
    counts = counts[: round(span)]
    shifted_gaps = tuple((a - offset, b - offset) for a, b in gaps
                         if b > offset and a < offset + span)
    shifted_gaps = tuple((max(0.0, a), min(span, b)) for a, b in shifted_gaps)
    if windows is not None and offset:
        k0 = round(offset / windows.resolution_s)
        if abs(k0 * windows.resolution_s - offset) < 1e-6:
            windows = TokenWindows(windows.resolution_s, windows.mean_prompt[k0:],
                                   windows.mean_output[k0:])
        else:  # pragma: no cover - 6-h windows always divide whole days
            windows = None
    return Trace(name=name, duration_s=span, rates_rps=counts, resolution_s=1.0,
                 token_mix=mix, gaps=shifted_gaps, token_windows=windows,
                 token_distribution=dist), offset
