"""Fit a replica profile (the fields of ``autoscaler/sim/profiles/*.yaml``) from a fleet's
own Prometheus series.

* ``step_base_s`` and ``step_per_decode_seq_s``: a least-squares line through the
  mean time per output token of each step (``vllm:time_per_output_token_seconds`` _sum /
  _count increases, all pods) against the mean running batch per pod
  (``vllm:num_requests_running``). Needs a spread of batch sizes: a fleet that always runs
  at the same batch pins one point of the line, not its slope (reported, default kept);
* ``step_per_prefill_token_s``: prefill seconds over prompt tokens
  (``vllm:request_prefill_time_seconds_sum`` / ``vllm:request_prompt_tokens_sum``);
* ``num_gpu_blocks`` and ``block_size`` (KV capacity): labels of ``vllm:cache_config_info``;
* ``max_num_batched_tokens``: vLLM exports no scheduler config: the base profile's (or a
  ``max_num_batched_tokens`` label where a deployment adds one);
* ``max_num_seqs``: a ``max_num_seqs`` label where the deployment exports one, else the
  plateau of the running batch while requests wait and the KV cache is not full (only a
  fleet that saturated shows it); else the base profile's, reported as not fitted;
* ``cold_start_s`` / ``cold_start_jitter_s``: kube-state-metrics ``kube_pod_status_ready_time
  - kube_pod_created`` of the target's pods started in the range: unbiased estimates from the
  shortest and longest, and the jitter's 90% interval; with fewer than 30 starts the fit
  says it could not reach +/-10% (``ColdStartFit``);
* ``gpus_per_replica`` and ``gpu_hour_cost`` are not in any engine series: the base
  profile's values, reported as such.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from autoscaler.fleetdata.history import (
    HistoryQuery,
    counter_increase,
    lookback,
    read_per_pod,
)
from autoscaler.metrics.source import MetricsSource
from autoscaler.sim.profiles import ReplicaProfile

MIN_TOKENS_PER_POINT = 100.0
"""A step with fewer generated tokens than this is too noisy for a TPOT point."""
MIN_BATCH_SPREAD = 2.0
"""The running batch must span at least this many sequences to fit a slope."""


JITTER_LEVEL = 0.90
"""Confidence of the cold-start jitter's reported interval."""
JITTER_PRECISION = 0.10
"""The fit's goal for a field: within +/-10%; the jitter's report says when its interval
is wider than that."""


@dataclass(frozen=True)
class FieldFit:
    value: float | int
    fitted: bool
    how: str
    """Where the value came from, or why the default was kept."""
    quality: dict[str, float] = field(default_factory=dict)
    warning: str = ""
    """Fitted, but not to the fit's goal (e.g. too few samples): said why, with the
    interval."""


def _range_quantile(p: float, n: int) -> float:
    """Quantile of range / width of ``n`` uniform draws: Beta(n - 1, 2), whose CDF is
    n x^(n-1) - (n-1) x^n (bisection; 60 halvings is below 1e-18)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if n * mid ** (n - 1) - (n - 1) * mid ** n < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class ColdStartFit:
    """Cold starts are ``base + uniform(0, jitter)`` (``sim.fleet.ColdStarts``). From ``n``
    observed starts with shortest ``lo`` and longest ``hi`` (range r = hi - lo):

    * unbiased (minimum-variance) estimates: jitter = r (n + 1) / (n - 1), base = lo -
      r / (n - 1). The plain range is short by a factor (n - 1) / (n + 1) on average: 78%
      with 8 starts;
    * the jitter's interval at ``JITTER_LEVEL``: r / jitter follows Beta(n - 1, 2), so
      jitter lies in [r / q(0.95), r / q(0.05)]. Worked, 8 starts: q = 0.529 and 0.954,
      the interval is 0.82..1.47 times the estimate; +/-10% needs 30 starts.
    """

    starts: int
    base_s: float
    jitter_s: float
    low_s: float
    high_s: float

    @classmethod
    def of(cls, colds: list[float], level: float = JITTER_LEVEL) -> ColdStartFit:
        n = len(colds)
        if n < 2:
            raise ValueError("two starts or more")
        lo, hi = float(min(colds)), float(max(colds))
        r = hi - lo
        tail = (1.0 - level) / 2
        jitter = r * (n + 1) / (n - 1)
        return cls(starts=n, base_s=max(0.0, lo - r / (n - 1)), jitter_s=jitter,
                   low_s=r / _range_quantile(1.0 - tail, n),
                   high_s=r / _range_quantile(tail, n) if r > 0 else 0.0)

    @property
    def precise(self) -> bool:
        """The interval within +/-``JITTER_PRECISION`` of the estimate."""
        return self.within(self.starts)

    @staticmethod
    def within(n: int, precision: float = JITTER_PRECISION,
               level: float = JITTER_LEVEL) -> bool:
        tail = (1.0 - level) / 2
        k = (n - 1) / (n + 1)  # interval bound / estimate = k / q
        return (k / _range_quantile(1.0 - tail, n) >= 1.0 - precision
                and k / _range_quantile(tail, n) <= 1.0 + precision)

    @staticmethod
    def starts_needed(precision: float = JITTER_PRECISION, level: float = JITTER_LEVEL
                      ) -> int:
        n = 2
        while not ColdStartFit.within(n, precision, level) and n < 100_000:
            n += 1
        return n


@dataclass(frozen=True)
class ProfileFit:
    profile: ReplicaProfile
    fields: dict[str, FieldFit]

    def unfitted(self) -> list[str]:
        return [k for k, f in self.fields.items() if not f.fitted]

    def as_json(self) -> dict[str, Any]:
        return {"profile": self.profile.name,
                "fields": {k: {"value": f.value, "fitted": f.fitted, "how": f.how,
                               "quality": f.quality,
                               **({"warning": f.warning} if f.warning else {})}
                           for k, f in self.fields.items()}}


def _sum_pods(d: dict[str, np.ndarray], n: int, counter: bool) -> np.ndarray:
    total = np.zeros(n)
    for arr in d.values():
        inc = counter_increase(arr, new_pod=not np.isfinite(arr[0])) if counter else arr
        ok = np.isfinite(inc)
        total[ok] += inc[ok]
    return total


def _mean_pods(d: dict[str, np.ndarray], n: int) -> np.ndarray:
    s = np.zeros(n)
    c = np.zeros(n)
    for arr in d.values():
        ok = np.isfinite(arr)
        s[ok] += arr[ok]
        c += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / c, np.nan)


def fit_profile(source: MetricsSource, q: HistoryQuery, base: ReplicaProfile, *,
                name: str | None = None) -> ProfileFit:
    """Fit what the series allow; every other field is ``base``'s, said so in ``fields``."""
    sel = q.selector_for()
    step = lookback(q.step_s)
    n = q.steps

    def per_pod(metric: str, extra_sel: str = "") -> dict[str, np.ndarray]:
        s = sel + ("," + extra_sel if extra_sel else "")
        return read_per_pod(source, f"last_over_time({metric}{{{s}}}[{step}])", q)

    fields: dict[str, FieldFit] = {}
    prof = replace(base, name=name or f"fitted-{q.target.namespace}-{q.target.name}")

    # --- decode step time against batch -------------------------------------------------
    tpot_s = _sum_pods(per_pod("vllm:time_per_output_token_seconds_sum"), n, True)
    tpot_c = _sum_pods(per_pod("vllm:time_per_output_token_seconds_count"), n, True)
    running = _mean_pods(per_pod("vllm:num_requests_running"), n)
    ok = (tpot_c > MIN_TOKENS_PER_POINT) & np.isfinite(running)
    x = running[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = tpot_s[ok] / tpot_c[ok]
    if x.size >= 3 and float(np.ptp(x)) >= MIN_BATCH_SPREAD:
        w = tpot_c[ok]
        A = np.vstack([np.ones_like(x), x]).T * np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
        b0, b1 = float(coef[0]), float(coef[1])
        pred = b0 + b1 * x
        ss_res = float(np.sum(w * (y - pred) ** 2))
        ss_tot = float(np.sum(w * (y - np.average(y, weights=w)) ** 2))
        r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
        rel = float(np.sqrt(np.average(((y - pred) / pred) ** 2, weights=w)))
        qual = {"points": float(x.size), "r2": r2, "rms_relative_error": rel,
                "batch_min": float(x.min()), "batch_max": float(x.max())}
        if b0 > 0 and b1 >= 0:
            prof = replace(prof, step_base_s=b0, step_per_decode_seq_s=b1)
            how = (f"TPOT = base + per_seq x running over {x.size} steps, batch "
                   f"{x.min():.1f}..{x.max():.1f}")
            fields["step_base_s"] = FieldFit(b0, True, how, qual)
            fields["step_per_decode_seq_s"] = FieldFit(b1, True, how, qual)
        else:
            for k in ("step_base_s", "step_per_decode_seq_s"):
                fields[k] = FieldFit(getattr(base, k), False, f"the line fit gave base {b0:.4g}"
                                     f" and slope {b1:.4g} (not physical): default kept", qual)
    else:
        why = ("no vllm:time_per_output_token_seconds samples" if x.size < 3 else
               f"the running batch only spans {float(np.ptp(x)):.1f} sequences "
               f"(< {MIN_BATCH_SPREAD:g})")
        for k in ("step_base_s", "step_per_decode_seq_s"):
            fields[k] = FieldFit(getattr(base, k), False, f"{why}: default kept")

    # --- prefill throughput ----------------------------------------------------------------
    prompt = _sum_pods(per_pod("vllm:request_prompt_tokens_sum"), n, True)
    prefill = _sum_pods(per_pod("vllm:request_prefill_time_seconds_sum"), n, True)
    ok = (prefill > 0) & (prompt > 0)
    if ok.sum() >= 3:
        ratios = prefill[ok] / prompt[ok]
        per_token = float(prefill[ok].sum() / prompt[ok].sum())
        spread = float(np.percentile(ratios, 90) / np.percentile(ratios, 10))
        prof = replace(prof, step_per_prefill_token_s=per_token)
        fields["step_per_prefill_token_s"] = FieldFit(
            per_token, True, f"prefill seconds / prompt tokens over {int(ok.sum())} steps "
            f"({1 / per_token:,.0f} prompt tokens/s)",
            {"points": float(ok.sum()), "p90_over_p10": spread})
    else:
        fields["step_per_prefill_token_s"] = FieldFit(
            base.step_per_prefill_token_s, False,
            "no vllm:request_prefill_time_seconds samples: default kept")

    # --- KV capacity and batch limit ------------------------------------------------------
    info = source.query(f"max_over_time(vllm:cache_config_info{{{sel}}}[{q.end - q.start:.0f}s])",
                        at=q.end)
    kv_values: list[tuple[int, int]] = []
    seqs_values = []
    budgets = []
    for smp in info:
        with contextlib.suppress(KeyError, ValueError):
            block = int(smp.labels["block_size"])
            kv_values.append((int(smp.labels["num_gpu_blocks"]) * block, block))
        if smp.labels.get("max_num_seqs", "").isdigit():
            seqs_values.append(int(smp.labels["max_num_seqs"]))
        if smp.labels.get("max_num_batched_tokens", "").isdigit():
            budgets.append(int(smp.labels["max_num_batched_tokens"]))
    if kv_values:
        # The smallest pod's cache: a replica is only as big as the fleet's smallest one.
        kv, block = min(kv_values)
        prof = replace(prof, num_gpu_blocks=kv // block, block_size=block)
        how = (f"labels of vllm:cache_config_info ({len(info)} series; the smallest): "
               f"{kv:,} KV tokens")
        fields["num_gpu_blocks"] = FieldFit(kv // block, True, how,
                                            {"series": float(len(info))})
        fields["block_size"] = FieldFit(block, True, how)
    else:
        for k in ("num_gpu_blocks", "block_size"):
            fields[k] = FieldFit(getattr(base, k), False,
                                 "no vllm:cache_config_info: default kept")
    if budgets:
        prof = replace(prof, max_num_batched_tokens=min(budgets))
        fields["max_num_batched_tokens"] = FieldFit(
            min(budgets), True, "max_num_batched_tokens label of vllm:cache_config_info")
    else:
        fields["max_num_batched_tokens"] = FieldFit(
            base.max_num_batched_tokens, False, "vLLM exports no scheduler config: default "
            "kept")
    if seqs_values:
        prof = replace(prof, max_num_seqs=min(seqs_values))
        fields["max_num_seqs"] = FieldFit(min(seqs_values), True,
                                          "max_num_seqs label of vllm:cache_config_info")
    else:
        waiting = _mean_pods(per_pod("vllm:num_requests_waiting"), n)
        kvu = _mean_pods(per_pod("vllm:kv_cache_usage_perc"), n)
        sat = (waiting > 1.0) & np.isfinite(running) & ~(kvu > 0.95)
        if sat.sum() >= 5:
            plateau = round(float(np.percentile(running[sat], 95)))
            prof = replace(prof, max_num_seqs=max(1, plateau))
            fields["max_num_seqs"] = FieldFit(
                plateau, True, f"running-batch plateau while requests waited ({int(sat.sum())}"
                " steps)", {"points": float(sat.sum())})
        else:
            fields["max_num_seqs"] = FieldFit(
                base.max_num_seqs, False, "vLLM exports no max_num_seqs and the batch never "
                "saturated while requests waited: default kept")

    # --- cold start -----------------------------------------------------------------------
    pods = set(per_pod("vllm:num_requests_running"))
    span = f"{q.end - q.start:.0f}s"
    created = {s.labels.get("pod", ""): s.value for s in source.query(
        f'max_over_time(kube_pod_created{{namespace="{q.target.namespace}"}}[{span}])',
        at=q.end)}
    ready = {s.labels.get("pod", ""): s.value for s in source.query(
        f'max_over_time(kube_pod_status_ready_time{{namespace="{q.target.namespace}"}}[{span}])',
        at=q.end)}
    colds = [ready[p] - created[p] for p in pods if p in created and p in ready
             and ready[p] >= created[p] >= q.start]
    if len(colds) >= 2:
        cs = ColdStartFit.of(colds)
        prof = replace(prof, cold_start_s=cs.base_s, cold_start_jitter_s=cs.jitter_s)
        qual = {"pods": float(len(colds)), "min_s": float(min(colds)),
                "max_s": float(max(colds)), "jitter_low_s": cs.low_s,
                "jitter_high_s": cs.high_s}
        how = (f"kube_pod_status_ready_time - kube_pod_created of {len(colds)} pods started "
               "in the range (base + uniform jitter, unbiased from the shortest and longest)")
        warning = ""
        if not cs.precise:
            warning = (f"could not be fitted to +/-{JITTER_PRECISION:.0%} with {cs.starts} "
                       f"starts: {JITTER_LEVEL:.0%} interval {cs.low_s:.3g}..{cs.high_s:.3g} s;"
                       f" {ColdStartFit.starts_needed()} starts would be needed")
        fields["cold_start_s"] = FieldFit(cs.base_s, True, how, qual)
        fields["cold_start_jitter_s"] = FieldFit(cs.jitter_s, True, how, qual, warning)
    else:
        why = (f"only {len(colds)} pod(s) started in the range with kube-state-metrics "
               "kube_pod_created and kube_pod_status_ready_time")
        fields["cold_start_s"] = FieldFit(base.cold_start_s, False, f"{why}: default kept")
        fields["cold_start_jitter_s"] = FieldFit(base.cold_start_jitter_s, False,
                                                 f"{why}: default kept")
    fields["gpus_per_replica"] = FieldFit(base.gpus_per_replica, False,
                                          f"not in engine series: {base.name}'s")
    fields["gpu_hour_cost"] = FieldFit(base.gpu_hour_cost or 0.0, False,
                                       f"not in engine series: {base.name}'s")
    return ProfileFit(prof, fields)


def profile_yaml(fit: ProfileFit, *, source: str) -> str:
    """The fitted profile as a profile file, each field commented with how it was got."""
    p = fit.profile
    out = [f"# Replica profile fitted from {source}.",
           "# Fields marked 'default' could not be fitted from the series; check them.",
           f"name: {p.name}"]

    def num(v: float | int) -> str:
        # Six significant digits, never an exponent: PyYAML reads "5e-05" as a string.
        if isinstance(v, int):
            return str(v)
        return np.format_float_positional(v, precision=6, unique=False, fractional=False,
                                          trim="-")

    ints = ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_gpu_blocks",
            "gpus_per_replica")
    for key in ("gpus_per_replica", "step_base_s", "step_per_prefill_token_s",
                "step_per_decode_seq_s", "max_num_seqs", "max_num_batched_tokens",
                "block_size", "num_gpu_blocks", "cold_start_s", "cold_start_jitter_s",
                "gpu_hour_cost"):
        f = fit.fields.get(key)
        value = getattr(p, key)
        if value is None:
            continue
        if key in ints:
            value = int(value)
        tag = "fitted" if f is not None and f.fitted else "default"
        if f is not None:
            out.append(f"# {tag}: {f.how}")
            if f.warning:
                out.append(f"# imprecise: {f.warning}")
        out.append(f"{key}: {num(value)}")
    return "\n".join(out) + "\n"
