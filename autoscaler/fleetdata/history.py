"""Reconstruct a workload from a fleet's Prometheus history.

The engine's own series are read per pod, one chunked range query per family, and turned
into a rate-level ``Trace``:

* arrivals per step = first tokens served in the step (the TTFT histogram's count) plus
  the growth of the waiting queue. vLLM has no arrival counter: a request counts once it
  gets its first token, so a queue that grows by 30 in a step hid 30 arrivals;
* mean prompt and output tokens per window, from the token histograms' ``_sum / _count``;
* collection gaps: steps where no pod of the target has a sample are *missing*, not zero,
  and the first step after a gap is missing too (its counter increase spans the outage).

Every family is read with ``last_over_time(x[step - 1 ms])`` so a step without a fresh sample
is absent instead of repeating the last value for Prometheus' 5-minute lookback (a 4-minute
outage would otherwise read as zero traffic); see ``lookback`` for the millisecond.
Counters are differenced per pod with reset handling (a value below the previous one is a
restart: the new value is the increase). A step's first tokens + queue growth below zero
is netted against the steps before it (``conserving_nonnegative``), not clamped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from autoscaler.errors import SpecError
from autoscaler.metrics.backfill import MAX_POINTS
from autoscaler.metrics.source import MetricsSource
from autoscaler.traces.model import FloatArray, TokenMix, TokenWindows, Trace

VLLM_FAMILIES = {
    "first_tokens": "vllm:time_to_first_token_seconds_count",
    "waiting": "vllm:num_requests_waiting",
    "running": "vllm:num_requests_running",
    "prompt_sum": "vllm:request_prompt_tokens_sum",
    "prompt_count": "vllm:request_prompt_tokens_count",
    "output_sum": "vllm:request_generation_tokens_sum",
    "output_count": "vllm:request_generation_tokens_count",
}
"""The vLLM series a reconstruction reads (names as vLLM v1 exports them)."""

SUPPORTED_PRESETS = ("vllm",)
_TARGET = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([A-Za-z0-9]([-A-Za-z0-9_.]*"
                     r"[A-Za-z0-9])?)$")


@dataclass(frozen=True, slots=True)
class Target:
    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str, option: str = "--target") -> Target:
        m = _TARGET.match(text or "")
        if not m:
            raise SpecError(option, text, "NAMESPACE/NAME (Kubernetes names, e.g. llm/chat)")
        return cls(m.group(1), m.group(3))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which target, which labels, which range."""

    target: Target
    start: float
    """Unix seconds."""
    end: float
    step_s: float = 60.0
    namespace_label: str = "namespace"
    workload_label: str = "workload"
    selector: str = ""
    preset: str = "vllm"

    def __post_init__(self) -> None:
        if self.preset not in SUPPORTED_PRESETS:
            raise SpecError("--preset", self.preset,
                            f"one of {', '.join(SUPPORTED_PRESETS)} (the presets whose token "
                            "histograms a reconstruction needs)")
        if not 1.0 <= self.step_s <= 3600.0:
            raise SpecError("--step", self.step_s, "1..3600 seconds")
        if not self.end > self.start:
            raise SpecError("--end", self.end, f"> --start ({self.start})")
        if (self.end - self.start) / self.step_s > 40 * 86_400:
            raise SpecError("--step", self.step_s, "a step giving at most 3,456,000 points")

    def selector_for(self) -> str:
        parts = [f'{self.namespace_label}="{self.target.namespace}"',
                 f'{self.workload_label}="{self.target.name}"']
        if self.selector:
            parts.append(self.selector)
        return ",".join(parts)

    @property
    def steps(self) -> int:
        return math.floor((self.end - self.start) / self.step_s + 1e-9) + 1


def lookback(step_s: float) -> str:
    """The range of ``last_over_time`` for one step: a millisecond short of the step.

    Prometheus 2.x range selectors are closed at both ends: ``[60s]`` at t holds a sample
    taken at exactly t - 60 s. With samples on the step grid (a 60-s scrape read at 60-s
    steps, as promtool-built blocks and many fleets have), a missing scrape at t then read
    as the one before it: the step before an outage counted zero traffic instead of being
    missing, and a pod removed at t still reported its last queue one step later.
    Prometheus 3 leaves the start open, where both forms agree. Worked: 60 s -> 59999ms.
    """
    return f"{round(step_s * 1000) - 1}ms"


def read_per_pod(source: MetricsSource, promql: str, q: HistoryQuery, *,
                 max_points: int = MAX_POINTS) -> dict[str, FloatArray]:
    """pod -> values on the query's step grid (NaN where absent), in range queries of at
    most ``max_points`` points per series (Prometheus refuses more than 11,000)."""
    n = q.steps
    out: dict[str, FloatArray] = {}
    chunk = max(1, max_points)
    k0 = 0
    while k0 < n:
        k1 = min(n - 1, k0 + chunk - 1)
        t0, t1 = q.start + k0 * q.step_s, q.start + k1 * q.step_s
        for series in source.query_range(promql, t0, t1, q.step_s):
            pod = series.labels.get("pod", "")
            arr = out.get(pod)
            if arr is None:
                arr = out[pod] = np.full(n, np.nan)
            for t, v in series.points:
                k = round((t - q.start) / q.step_s)
                if 0 <= k < n:
                    arr[k] = v
        k0 = k1 + 1
    return out


SCRAPE_PROBES = 5
"""Instants at which ``scrape_interval`` reads raw samples (spread over the range, so that a
collection gap at one of them does not decide it)."""
SCRAPE_PROBE_WINDOW_S = 900.0
"""Raw samples read per probe, seconds (15 minutes: 15 intervals of a 60-s scrape)."""


def scrape_interval(source: MetricsSource, q: HistoryQuery) -> float | None:
    """The target's scrape interval, seconds, from the raw sample times of its first-token
    counter: the median spacing of consecutive samples of a pod, at ``SCRAPE_PROBES``
    instants of the range (a gap or a restart adds a few long spacings; the median ignores
    them). None when no pod has two samples in any probe. Rounded to the second when within
    10 ms of one, as Prometheus' ``scrape_interval`` is almost always configured and its
    sample times jitter by milliseconds: a 15.002-s step over 7 days would drift 80 s."""
    span = q.end - q.start
    w = min(SCRAPE_PROBE_WINDOW_S, span)
    promql = f"{VLLM_FAMILIES['first_tokens']}{{{q.selector_for()}}}[{round(w * 1000)}ms]"
    gaps: list[float] = []
    for i in range(SCRAPE_PROBES):
        at = q.start + w + (span - w) * (i + 0.5) / SCRAPE_PROBES
        for series in source.query_series(promql, at=at):
            ts = np.asarray(sorted(t for t, _ in series.points), dtype=np.float64)
            if ts.size >= 2:
                gaps.extend(np.diff(ts).tolist())
    gaps = [g for g in gaps if g > 0]
    if not gaps:
        return None
    med = float(np.median(gaps))
    return float(round(med)) if abs(med - round(med)) <= 0.01 and med >= 1 else round(med, 3)


def at_scrape_step(source: MetricsSource, q: HistoryQuery) -> tuple[HistoryQuery, str]:
    """``q`` with its step set to the target's scrape interval (``--step auto``), the start
    and end aligned to it; and a note saying what was found.

    Why the scrape interval: a step longer than it sums several scrapes into one bin and
    loses the shape inside (a 15-s scrape read at 60 s merged four samples; the busiest
    minute then depends on where the bins fall); a step shorter than it leaves steps with
    no fresh sample, which read as missing. Outside 1..3600 s, or when no interval is
    found, the step stays as it was (60 s), and the note says so."""
    found = scrape_interval(source, q)
    if found is None or not 1.0 <= found <= 3600.0:
        return q, (f"scrape interval not found from {VLLM_FAMILIES['first_tokens']} samples: "
                   f"step {q.step_s:g} s")
    start = math.floor(q.start / found) * found
    end = math.floor(q.end / found) * found
    if end <= start:
        return q, f"range shorter than the scrape interval ({found:g} s): step {q.step_s:g} s"
    return (replace(q, start=start, end=end, step_s=found),
            f"step {found:g} s: the scrape interval of {VLLM_FAMILIES['first_tokens']}")


def queries_needed(q: HistoryQuery, families: int) -> int:
    """Range queries a read costs: one per family per chunk."""
    return families * math.ceil(q.steps / MAX_POINTS)


def counter_increase(values: FloatArray, *, new_pod: bool) -> FloatArray:
    """Per-step increase of one pod's counter (NaN where it or the step before is absent).

    A drop is a restart: the new value is the increase since it. The pod's first sample is
    an increase from 0 when the pod started inside the range (``new_pod``), else a baseline.
    Worked: [NaN, 5, 9, 2, NaN, 4] of a new pod -> [NaN, 5, 4, 2, NaN, NaN].
    """
    out = np.full(values.shape, np.nan)
    prev = np.concatenate(([np.nan], values[:-1]))
    both = np.isfinite(values) & np.isfinite(prev)
    d = values - prev
    out[both] = np.where(d[both] >= 0, d[both], values[both])
    if new_pod:
        finite = np.flatnonzero(np.isfinite(values))
        if finite.size and finite[0] > 0:
            out[finite[0]] = values[finite[0]]
    return out


def gauge_delta(values: FloatArray, *, new_pod: bool) -> FloatArray:
    """Per-step change of a gauge; a new pod's first value counts from 0."""
    prev = np.concatenate(([np.nan], values[:-1]))
    out = values - prev
    if new_pod:
        finite = np.flatnonzero(np.isfinite(values))
        if finite.size and finite[0] > 0:
            out[finite[0]] = values[finite[0]]
    return out


def conserving_nonnegative(steps: FloatArray, valid: np.ndarray) -> FloatArray:
    """Per-step arrivals made >= 0 without changing their total over each run of valid
    steps (invalid steps are 0).

    First tokens + queue growth can go negative in a step: a gauge read at a slightly
    different moment than a counter, or a pod's queue handed to the others. Clamping such a
    step at 0 adds the requests it was short to the total; instead the cumulative arrivals
    are replaced by their lower monotone envelope (the least non-decreasing curve from each
    point on, ``min`` over later points), which moves the shortfall onto the steps just
    before it, the ones that counted those requests early. Worked: [5, 9, -3, 4] ->
    cumulative [5, 14, 11, 15] -> envelope [5, 11, 11, 15] -> [5, 6, 0, 4]: total 15 kept,
    where the clamp gives [5, 9, 0, 4] = 18.
    """
    out = np.zeros(steps.shape)
    n = steps.size
    k = 0
    while k < n:
        if not valid[k]:
            k += 1
            continue
        j = k
        while j < n and valid[j]:
            j += 1
        cum = np.cumsum(steps[k:j])
        env = np.minimum.accumulate(cum[::-1])[::-1]
        env = np.maximum(env, 0.0)  # a run whose first steps sum negative starts at 0
        out[k:j] = np.diff(np.concatenate(([0.0], env)))
        k = j
    return out


def sample_lag(stamps: dict[str, FloatArray], values: dict[str, FloatArray],
               q: HistoryQuery) -> FloatArray:
    """Per step, how long before the step's time the samples it read were taken (mean over
    pods, seconds; NaN where unknown, e.g. a source that does not answer ``timestamp``).

    A real Prometheus scrapes each target at its own phase: with a 60-s scrape 23 s past
    the minute, the reading at 10:01:00 is the sample of 10:00:23, and differencing
    readings on the grid put every minute's requests 37 s late (measured on the proof's
    history: the busiest minute of a burst read 81 and 90 req/s for 100 and 74, and the
    predictive policy's GPU-hours moved 7.6%). ``stamps`` are ``timestamp(x)`` readings:
    the time of the newest sample at or before each step."""
    n = q.steps
    t = q.start + np.arange(n) * q.step_s
    total = np.zeros(n)
    count = np.zeros(n)
    for pod, ts in stamps.items():
        v = values.get(pod)
        if v is None:
            continue
        d = t - ts
        ok = np.isfinite(v) & np.isfinite(d) & (d >= 0) & (d < q.step_s)
        total[ok] += d[ok]
        count[ok] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


GRID_SLACK_S = 0.01
"""A bin counts as covered when the samples around it miss its edges by at most this (the
``lookback``'s millisecond and timestamp rounding)."""


def onto_grid(steps: FloatArray, valid: np.ndarray, knots: FloatArray, step_s: float, *,
              origin: float = 0.0) -> tuple[FloatArray, np.ndarray]:
    """Requests counted between sample times, re-binned onto a grid of ``step_s`` bins from
    ``origin`` (seconds from the range's start, like ``knots``).

    ``steps[k]`` arrived in ``[knots[k], knots[k + 1])``. Within each run of valid steps the
    cumulative count is interpolated linearly at the grid's edges (a constant rate between
    two samples); a bin that a run does not cover whole is missing. Worked, 60-s steps with
    samples 20 s early (knots -20, 40, 100), origin 0: [60, 120] -> the bin [0, 60) takes
    40 s of the first (40) and 20 s of the second (40): 80; the bin [60, 120) reaches past
    the last sample: missing. With origin -20 the bins are the two intervals: [60, 120].
    Returns (counts per bin, bin known), ``len(steps)`` bins.
    """
    m = steps.size
    out = np.zeros(m)
    known = np.zeros(m, dtype=bool)
    edges = origin + np.arange(m + 1) * step_s
    k = 0
    while k < m:
        if not valid[k]:
            k += 1
            continue
        j = k
        while j < m and valid[j]:
            j += 1
        xs = knots[k:j + 1]
        cum = np.concatenate(([0.0], np.cumsum(steps[k:j])))
        lo = int(np.searchsorted(edges, xs[0] - GRID_SLACK_S, side="left"))
        hi = int(np.searchsorted(edges, xs[-1] + GRID_SLACK_S, side="right")) - 1
        if hi > lo:
            at = np.interp(edges[lo:hi + 1], xs, cum)
            out[lo:hi] = np.diff(at)
            known[lo:hi] = True
        k = j
    return out, known


def _is_new(arr: FloatArray, first_seen: int) -> bool:
    """A pod that appeared after the first observed step started inside the range."""
    finite = np.flatnonzero(np.isfinite(arr))
    return bool(finite.size) and int(finite[0]) > first_seen


def _fleet_increase(per_pod: dict[str, FloatArray], n: int, *, gauge: bool = False,
                    first_seen: int = 0) -> tuple[FloatArray, FloatArray]:
    """(sum over pods of the per-step increase, pods seen per step)."""
    total = np.zeros(n)
    seen = np.zeros(n)
    for arr in per_pod.values():
        new_pod = _is_new(arr, first_seen)
        inc = gauge_delta(arr, new_pod=new_pod) if gauge else counter_increase(
            arr, new_pod=new_pod)
        ok = np.isfinite(inc)
        total[ok] += inc[ok]
        seen += np.isfinite(arr)
    return total, seen


@dataclass(frozen=True)
class Reconstruction:
    trace: Trace
    start_unix: float
    step_s: float
    pods_seen: int
    queries: int
    missing_steps: int
    token_windows_known: int
    notes: tuple[str, ...]


def _gaps(valid: np.ndarray, step_s: float) -> tuple[tuple[float, float], ...]:
    """[start, end) seconds of each run of invalid steps (step k covers [k, k+1) x step)."""
    gaps: list[tuple[float, float]] = []
    k = 0
    n = len(valid)
    while k < n:
        if valid[k]:
            k += 1
            continue
        j = k
        while j < n and not valid[j]:
            j += 1
        gaps.append((k * step_s, j * step_s))
        k = j
    return tuple(gaps)


def reconstruct(source: MetricsSource, q: HistoryQuery, *, token_window_s: float = 3600.0,
                name: str | None = None) -> Reconstruction:
    """The workload of ``q.target`` over ``[q.start, q.end]`` as a rate-level trace.

    Step ``k`` of the trace covers ``[k, k+1) x step_s`` from ``q.start`` and holds the
    arrivals counted between the samples at ``start + k x step`` and ``start + (k+1) x
    step``. Raises ``SpecError`` when the target has no series at all in the range.
    """
    sel = q.selector_for()
    step = lookback(q.step_s)
    fam: dict[str, dict[str, FloatArray]] = {}
    for key, metric in VLLM_FAMILIES.items():
        fam[key] = read_per_pod(source, f"last_over_time({metric}{{{sel}}}[{step}])", q)
    n = q.steps
    if not fam["first_tokens"]:
        raise SpecError("--target", str(q.target),
                        f"a target with {VLLM_FAMILIES['first_tokens']} samples between "
                        f"{q.start:.0f} and {q.end:.0f} (selector {{{sel}}})")
    # Until some pod has reported, nothing was observed: the first pods' counters then hold
    # everything since they started (a lump, not one step's traffic), so they are a
    # baseline there, and only pods appearing later count from 0.
    first_seen = min(int(np.flatnonzero(np.isfinite(a))[0])
                     for a in fam["first_tokens"].values() if np.isfinite(a).any())
    served, _ = _fleet_increase(fam["first_tokens"], n, first_seen=first_seen)
    # Queue growth from the fleet's total waiting, not per pod: a pod removed with 20
    # requests waiting hands them to the others, and per-pod deltas would count them twice.
    w = np.zeros(n)
    w_seen = np.zeros(n, dtype=bool)
    for arr in fam["waiting"].values():
        ok = np.isfinite(arr)
        w[ok] += arr[ok]
        w_seen |= ok
    queue_growth = np.zeros(n)
    both = w_seen[1:] & w_seen[:-1]
    queue_growth[1:][both] = np.diff(w)[both]
    # A step is known when some pod reported at both its ends (increase defined).
    inc_known = np.zeros(n, dtype=bool)
    for arr in fam["first_tokens"].values():
        inc_known |= np.isfinite(counter_increase(arr, new_pod=_is_new(arr, first_seen)))
    inc_known[: first_seen + 1] = False
    # Sample k+1 closes step k: shift by one. The step's requests arrived between the two
    # samples' own times, which trail the step grid by the scrape's phase: put them there.
    lag = sample_lag(read_per_pod(source, f"timestamp({VLLM_FAMILIES['first_tokens']}"
                                          f"{{{sel}}})", q), fam["first_tokens"], q)
    knots = np.asarray(np.arange(n) * q.step_s - np.nan_to_num(lag, nan=0.0), dtype=np.float64)
    # The trace's bins start at the samples' usual phase (-37 s in that example), so that a
    # bin is the requests between two readings, not a blend of two such intervals; bins
    # still follow each reading's own time where pods' phases differ.
    read = inc_known & np.isfinite(lag)
    origin = -float(np.median(lag[read])) if read.any() else 0.0
    arrivals, valid = onto_grid(
        conserving_nonnegative((served + queue_growth)[1:], inc_known[1:]), inc_known[1:],
        knots, q.step_s, origin=origin)
    rates = arrivals / q.step_s
    duration = (n - 1) * q.step_s
    gaps = _gaps(valid, q.step_s)

    # Token means per window: increase of _sum over increase of _count, all pods.
    def window_means(sum_key: str, count_key: str) -> tuple[FloatArray, float]:
        s, _ = _fleet_increase(fam[sum_key], n, first_seen=first_seen)
        c, _ = _fleet_increase(fam[count_key], n, first_seen=first_seen)
        s, c = s[1:], c[1:]
        per = max(1, round(token_window_s / q.step_s))
        m = math.ceil(len(s) / per)
        pad = m * per - len(s)
        ss = np.concatenate((s, np.zeros(pad))).reshape(m, per).sum(axis=1)
        cc = np.concatenate((c, np.zeros(pad))).reshape(m, per).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(cc > 0, ss / cc, np.nan)
        overall = float(s.sum() / c.sum()) if c.sum() > 0 else math.nan
        return means, overall

    notes: list[str] = []
    mix = TokenMix()
    tw = None
    if fam["prompt_count"] and fam["output_count"]:
        mp, p_all = window_means("prompt_sum", "prompt_count")
        mo, o_all = window_means("output_sum", "output_count")
        if math.isfinite(p_all) and math.isfinite(o_all):
            mix = TokenMix(mean_prompt_tokens=p_all, mean_output_tokens=o_all)
        tw = TokenWindows(resolution_s=token_window_s, mean_prompt=mp, mean_output=mo)
        known = int(np.sum(np.isfinite(mp) & np.isfinite(mo)))
    else:
        known = 0
        notes.append("no token histograms (vllm:request_prompt_tokens / "
                     "request_generation_tokens): token lengths are the default mix "
                     f"{mix.mean_prompt_tokens:g}/{mix.mean_output_tokens:g}")
    pods = set().union(*(set(d) for d in fam.values()))
    trace = Trace(name=name or f"{q.target} (Prometheus)", duration_s=float(duration),
                  rates_rps=rates.astype(np.float64), resolution_s=q.step_s, token_mix=mix,
                  gaps=gaps, token_windows=tw)
    return Reconstruction(
        trace=trace, start_unix=q.start + origin, step_s=q.step_s, pods_seen=len(pods),
        queries=queries_needed(q, len(VLLM_FAMILIES) + 1), missing_steps=int((~valid).sum()),
        token_windows_known=known, notes=tuple(notes))


def parse_duration_s(text: str, option: str) -> float:
    """``7d``, ``36h``, ``90m``, ``600s`` or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m:
        raise SpecError(option, text, "a duration like 7d, 36h, 90m or 600s")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}[m.group(2)]
    value = float(m.group(1)) * unit
    if value <= 0:
        raise SpecError(option, text, "a duration > 0")
    return value


def parse_time(text: str, option: str) -> float:
    """Unix seconds from ``1733000000``, an RFC 3339 time (``2026-11-24T00:00:00Z``)."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(option, text, "Unix seconds or an RFC 3339 time "
                        "(2026-11-24T00:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def time_range(start: str | None, end: str | None, since: str | None, now: float
               ) -> tuple[float, float]:
    """(start, end) Unix seconds from ``--start/--end`` or ``--since`` (end defaults to now)."""
    t_end = parse_time(end, "--end") if end else now
    if since and start:
        raise SpecError("--since", since, "either --since or --start, not both")
    if since:
        return t_end - parse_duration_s(since, "--since"), t_end
    if not start:
        raise SpecError("--start", None, "a start time (or --since 7d)")
    return parse_time(start, "--start"), t_end
