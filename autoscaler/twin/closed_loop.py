"""Live against replay: the same trace and spec, time-compressed, and how to compare them.

The closed loop (tests/e2e/test_closed_loop_e2e.py, benchmarks/closed_loop.py) runs a trace
through the twin against a cluster with a pod lifecycle (kube-scheduler + kwok), the
controller deciding from a real Prometheus; the replay runs the same trace and spec
through ``autoscaler.sim.replay``. To fit the test tier both run in *compressed time*: a
factor ``c`` divides every duration of the scenario and no rate:

* the trace: timestamps / c, arrival rates unchanged (so the replicas needed at each
  moment are unchanged; there are c times fewer requests);
* the replica profile's cold start and its jitter / c (kwok's pod annotations);
* the spec's ``syncPeriodSeconds``, ``coldStartSeconds``, ``maxMetricAgeSeconds``,
  ``behavior`` windows and policy periods / c;
* the scrape interval and the rate window / c (Prometheus, and the replay's).

Fields the HPA defines as whole seconds must stay whole after dividing; ``compress_spec``
refuses a factor that would round them (a rounded window is a different spec).

``compare`` puts the two runs side by side and checks them against ``Tolerances``.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from autoscaler.errors import SpecError
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.traces.model import Trace
from autoscaler.traces.scaling import scale_trace

_WHOLE_SECONDS = ("stabilizationWindowSeconds", "periodSeconds")


def compress_trace(trace: Trace, factor: float) -> Trace:
    """``trace`` played ``factor`` times faster at the same request rates.

    A rate-level trace keeps its rates exactly (its bins, gaps and token windows shrink);
    a request-level trace has its timestamps divided and is thinned to 1/factor of its
    requests (independent thinning keeps a Poisson process Poisson at the same rate).
    """
    if not (math.isfinite(factor) and factor >= 1):
        raise SpecError("compression", factor, ">= 1")
    if trace.arrivals_s is not None:
        return scale_trace(trace, time=1.0 / factor, rate=1.0 / factor)
    assert trace.resolution_s is not None
    windows = trace.token_windows
    if windows is not None:
        windows = replace(windows, resolution_s=windows.resolution_s / factor)
    return replace(trace, name=f"{trace.name}[compressed={factor:g}]",
                   duration_s=trace.duration_s / factor,
                   resolution_s=trace.resolution_s / factor,
                   gaps=tuple((a / factor, b / factor) for a, b in trace.gaps),
                   token_windows=windows)


def compress_profile(profile: ReplicaProfile, factor: float) -> ReplicaProfile:
    return replace(profile, cold_start_s=profile.cold_start_s / factor,
                   cold_start_jitter_s=profile.cold_start_jitter_s / factor)


def compress_spec(spec: dict[str, Any], factor: float) -> dict[str, Any]:
    """A user-facing spec (CR ``spec`` / spec file, camelCase) with every duration / factor.

    Example, factor 15: syncPeriodSeconds 15 -> 1, a 300-s scale-down window -> 20,
    a 15-s policy period -> 1; a 10-s policy period would be 0.67: refused.
    """
    out = copy.deepcopy(spec)
    for key in ("syncPeriodSeconds", "coldStartSeconds", "maxMetricAgeSeconds"):
        if key in out:
            out[key] = out[key] / factor
    for side in ("scaleUp", "scaleDown"):
        rules = (out.get("behavior") or {}).get(side)
        if not rules:
            continue
        items: list[tuple[dict[str, Any], str]] = [(rules, "stabilizationWindowSeconds")]
        items += [(p, "periodSeconds") for p in rules.get("policies", [])]
        for holder, key in items:
            if key not in holder:
                continue
            v = holder[key] / factor
            if abs(v - round(v)) > 1e-9:
                raise SpecError(f"behavior.{side}.{key}", holder[key],
                                f"a multiple of the compression factor {factor:g}")
            holder[key] = round(v)
    return out


@dataclass(frozen=True, slots=True)
class Run:
    """One run's figures, in compressed seconds."""

    t_s: Sequence[float]
    """Sample times since the start."""
    replicas: Sequence[int]
    """The workload's replica count (``spec.replicas`` live, desired in the replay)."""
    ready: Sequence[int]
    gpu_hours: float
    """GPU-hours of the compressed run (replicas holding a GPU, including cold starts)."""
    attainment: float
    """Fraction of requests within the TTFT SLO."""

    def replicas_at(self, t: np.ndarray) -> np.ndarray:
        """The step function of ``replicas`` (value of the last sample at or before t)."""
        ts = np.asarray(self.t_s, dtype=np.float64)
        i = np.searchsorted(ts, t, side="right") - 1
        vals = np.asarray(self.replicas, dtype=np.float64)
        return np.where(i >= 0, vals[np.maximum(i, 0)], vals[0] if len(vals) else 0.0)


@dataclass(frozen=True, slots=True)
class Tolerances:
    """How far live may be from the replay and still be "the same run".

    Defaults, with why (the e2e test states them again next to the figures):

    * ``replica_mae``: mean absolute difference of the replica counts over the run, after
      the live curve is shifted by up to ``max_lag_s`` to absorb latency the replay does
      not model to the tick (the controller's tick phase, the HPA's sync phase, watch
      propagation). 0.5 replica: one replica off for half the run fails.
    * ``replica_max``: the 95th percentile of |diff| (after the shift) at most 2: a 3 -> 6
      step seen a second apart differs by 3 for that second (1/80 of the run); a
      sustained gap of 3 does not pass.
    * ``gpu_hours_rel``: 10%: the cold starts are drawn independently (kwok's jitter and
      the replay's seed), and each new replica's cold start counts.
    * ``attainment_abs``: 0.05 (5 points): a replica late by one sync period during a ramp
      misses a few percent of one ramp's requests.
    """

    replica_mae: float = 0.5
    replica_max: float = 2.0
    gpu_hours_rel: float = 0.10
    attainment_abs: float = 0.05
    max_lag_s: float = 2.0
    step_s: float = 0.25


@dataclass(frozen=True, slots=True)
class Comparison:
    replica_mae: float
    replica_max: float
    lag_s: float
    gpu_hours_live: float
    gpu_hours_replay: float
    attainment_live: float
    attainment_replay: float
    failures: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def gpu_hours_rel(self) -> float:
        if self.gpu_hours_replay <= 0:
            return math.inf if self.gpu_hours_live > 0 else 0.0
        return abs(self.gpu_hours_live - self.gpu_hours_replay) / self.gpu_hours_replay

    def table(self) -> str:
        """The side-by-side figures, one line each."""
        return "\n".join([
            f"{'':24}{'live':>10}{'replay':>10}",
            f"{'GPU-hours (compressed)':24}{self.gpu_hours_live:10.4f}"
            f"{self.gpu_hours_replay:10.4f}   diff {self.gpu_hours_rel:.1%}",
            f"{'SLO attainment':24}{self.attainment_live:10.4f}{self.attainment_replay:10.4f}"
            f"   diff {abs(self.attainment_live - self.attainment_replay):.4f}",
            f"replicas: mean |diff| {self.replica_mae:.2f}, p95 |diff| {self.replica_max:.0f} "
            f"(live shifted by {self.lag_s:+.2f} s)",
            "OK" if self.ok else "DIVERGED: " + "; ".join(self.failures),
        ])


def compare(live: Run, replay: Run, duration_s: float,
            tol: Tolerances | None = None) -> Comparison:
    """Replica trajectories, attainment and GPU-hours of ``live`` against ``replay``.

    The trajectories are compared on a ``tol.step_s`` grid over [0, duration_s), with the
    live curve shifted by the lag in [-max_lag_s, +max_lag_s] (a multiple of step_s) that
    minimises the mean absolute difference.
    """
    tol = tol or Tolerances()
    grid = np.arange(0.0, duration_s, tol.step_s)
    want = replay.replicas_at(grid)
    best: tuple[float, float, float] | None = None
    n_lag = round(tol.max_lag_s / tol.step_s)
    for k in range(-n_lag, n_lag + 1):
        lag = k * tol.step_s
        diff = np.abs(live.replicas_at(grid + lag) - want)
        cand = (float(diff.mean()), float(np.quantile(diff, 0.95)), lag)
        if best is None or (cand[0], abs(cand[2])) < (best[0], abs(best[2])):
            best = cand
    assert best is not None
    mae, worst, lag = best
    cmp = Comparison(replica_mae=mae, replica_max=worst, lag_s=lag,
                     gpu_hours_live=live.gpu_hours, gpu_hours_replay=replay.gpu_hours,
                     attainment_live=live.attainment, attainment_replay=replay.attainment)
    failures = []
    if mae > tol.replica_mae:
        failures.append(f"replica mean |diff| {mae:.2f} > {tol.replica_mae}")
    if worst > tol.replica_max:
        failures.append(f"replica p95 |diff| {worst:.0f} > {tol.replica_max:g}")
    if cmp.gpu_hours_rel > tol.gpu_hours_rel:
        failures.append(f"GPU-hours differ by {cmp.gpu_hours_rel:.1%} > {tol.gpu_hours_rel:.0%}")
    if abs(live.attainment - replay.attainment) > tol.attainment_abs:
        failures.append(f"attainment differs by "
                        f"{abs(live.attainment - replay.attainment):.3f} > "
                        f"{tol.attainment_abs:.3f}")
    return replace(cmp, failures=tuple(failures))
