"""``kpa``: the Knative Serving Pod Autoscaler's decider, re-expressed as a pure function.

Follows ``pkg/autoscaler/scaling`` in knative/serving with the ``config-autoscaler``
defaults (all in ``core/defaults.py``), on the CONCURRENCY signal (requests in flight,
summed over the fleet), or, with ``kpa.metric: rps``, on REQUEST_RATE (requests/s) against a
per-replica ``targetRps`` (default ``capacity.requestsPerSecond``), as Knative's ``rps``
metric does; everything below is the same for both:

* Every step's sample ``(now, concurrency)`` joins a window kept in state. The stable value
  is the plain mean of the samples newer than ``now − stable window`` (60 s); the panic value
  the mean over the panic window (10 % of it, 6 s). Knative's default aggregation is this
  linear (equal-weight) average; its ``weightedExponential`` option is not implemented.
* Per-replica target = (``kpa.target_concurrency`` or ``capacity.concurrency``) x
  ``target_utilization`` (70 %). Desired stable / panic counts are ceil(value / target).
* Rate limits, on ready pods counted as at least 1: at most ceil(ready x maxScaleUpRate),
  at least floor(ready / maxScaleDownRate). Both desired counts are held inside them.
* Panic starts when the (unlimited) panic count / ready >= panic threshold (200 %), is
  extended while that holds, and ends once a whole stable window has passed without it. In
  panic the count is max(stable, panic) and never goes below the highest count asked for
  during this panic.
* Scale-down delay: the count asked for is the max over the last ``scale_down_delay_s`` of
  counts (off when 0, the default).
* Finally min/max replicas.

Like Knative, a decider that starts while more than one pod is ready starts *in panic* at the
ready count, so that losing the window (a restart) does not scale down before a stable window
of data has come in.

Worked example (capacity.concurrency 10, so target 10 x 0.7 = 7; 2 ready pods; a sample
every 2 s). At a steady 14 in flight the stable mean is 14 and ceil(14 / 7) = 2 pods. Then the
concurrency jumps to 70: the panic window holds the last three samples (t, t − 2, t − 4 s) =
14, 14, 70, mean 32.67, ceil(32.67 / 7) = 5 and 5 / 2 = 2.5 >= 2, so it panics. The stable
window holds 29 x 14 and one 70, mean 15.87, ceil(15.87 / 7) = 3. Panic takes max(3, 5) = 5.

Not modelled: scale-to-zero grace period and activator (scale to 0 happens when the stable
count is 0 and ``minReplicas`` is 0, on that step), activation scale, excess burst capacity.
Knative ticks every 2 s; here a sample arrives once per ``decide`` call, so
with a 15 s sync the 6 s panic window holds only the current sample and the 60 s stable window
four samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import reduce
from operator import add, itemgetter

from autoscaler.core.policies.common import clamp, hold
from autoscaler.core.spec import Spec
from autoscaler.core.types import Decision, PolicyState, Reason, Signal, Snapshot, State

# Slack so that float noise (14.000000000000002 / 7) does not cost a whole extra pod.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class KpaState(PolicyState):
    """The KPA's memory between steps."""

    samples: tuple[tuple[float, float], ...] = ()
    """(time, fleet concurrency) newer than one stable window."""
    panic_since: float | None = None
    """Knative's panic time: the last step the panic condition held (None = not panicking)."""
    max_panic_pods: int = 0
    """The highest count asked for during the current panic."""
    delayed: tuple[tuple[float, int], ...] = ()
    """(time, count) within the scale-down delay window."""


def _mean_since(samples: tuple[tuple[float, float], ...], cutoff: float) -> float:
    """Mean of the values with time strictly after ``cutoff`` (the caller ensures one)."""
    total = 0.0
    count = 0
    for t, v in reversed(samples):
        if t <= cutoff:
            break
        total += v
        count += 1
    return total / count if count else 0.0


def _pods_for(value: float, target: float) -> int:
    return max(0, math.ceil(value / target - _EPS))


def decide(snapshot: Snapshot, state: State, spec: Spec, now: float) -> tuple[Decision, State]:
    params = spec.kpa
    rps = params.metric == "rps"
    signal = Signal.REQUEST_RATE if rps else Signal.CONCURRENCY
    what = "request rate" if rps else "concurrency"
    concurrency = snapshot.get(signal, now, spec.max_metric_age_s)
    if concurrency is None:
        if signal in snapshot.metrics:
            return hold(snapshot, state, Reason.METRICS_STALE,
                        f"the {what} sample is older than {spec.max_metric_age_s:g} s "
                        "or not a number; holding")
        return hold(snapshot, state, Reason.METRICS_MISSING,
                    f"no {what} sample; holding")

    prev = state.policy if isinstance(state.policy, KpaState) else None
    ready_obs = snapshot.ready_replicas
    if prev is None:
        # Knative starts in panic when more than one pod is ready (see the module docstring).
        prev = (KpaState(panic_since=now, max_panic_pods=ready_obs) if ready_obs > 1
                else KpaState())

    stable_window = params.stable_window_s
    panic_window = stable_window * params.panic_window_percentage / 100.0
    stable_cutoff = now - stable_window
    # ``prev.samples`` is in time order (each step keeps older samples, all before ``now``,
    # and appends its own), so the ones outside (stable_cutoff, now) sit at the two ends:
    # trim the ends instead of filtering all ~30 (a 60 s window at a 2 s tick) every step.
    old = prev.samples
    lo, hi = 0, len(old)
    while lo < hi and old[lo][0] <= stable_cutoff:
        lo += 1
    while hi > lo and old[hi - 1][0] >= now:
        hi -= 1
    samples = (*old[lo:hi], (now, concurrency))
    # Every sample kept is newer than the stable cutoff: the stable mean is over all of
    # them, summed newest first as ``_mean_since`` sums (so the same float), in C.
    stable_value = reduce(add, map(itemgetter(1), reversed(samples)), 0.0) / len(samples)
    panic_value = _mean_since(samples, now - panic_window)

    if rps:
        target_conc = (params.target_rps if params.target_rps is not None
                       else spec.capacity.requests_per_second)
    else:
        target_conc = (params.target_concurrency if params.target_concurrency is not None
                       else spec.capacity.concurrency)
    target = target_conc * params.target_utilization

    # Knative counts zero ready pods as one, so a cold service can still panic and scale.
    ready = max(1, ready_obs)
    max_up = math.ceil(ready * params.max_scale_up_rate - _EPS)
    # Worked number: 5 ready pods at rate 2 may fall to floor(2.5) = 2; 1 pod may fall to 0.
    max_down = math.floor(ready / params.max_scale_down_rate + _EPS)

    stable_raw = _pods_for(stable_value, target)
    panic_raw = _pods_for(panic_value, target)
    stable_pods = min(max(stable_raw, max_down), max_up)
    panic_pods = min(max(panic_raw, max_down), max_up)

    over_threshold = panic_raw / ready >= params.panic_threshold_percentage / 100.0 - _EPS
    panic_since = prev.panic_since
    max_panic = prev.max_panic_pods
    if over_threshold:
        panic_since = now
    elif panic_since is not None and now - panic_since > stable_window:
        panic_since = None
        max_panic = 0

    limit_reason: Reason | None = None
    if stable_raw > stable_pods:
        limit_reason = Reason.SCALE_UP_LIMIT
    elif stable_raw < stable_pods:
        limit_reason = Reason.SCALE_DOWN_LIMIT
    recommendation = stable_raw
    desired = stable_pods
    panic_held = False
    if panic_since is not None:
        recommendation = max(stable_raw, panic_raw)
        desired = max(stable_pods, panic_pods)
        if desired > max_panic:
            max_panic = desired
        elif desired < max_panic:
            panic_held = True
        desired = max_panic

    delayed = prev.delayed
    delay_held = False
    if params.scale_down_delay_s > 0:
        delay_cutoff = now - params.scale_down_delay_s
        delayed = (*(d for d in delayed if delay_cutoff < d[0] < now), (now, desired))
        highest = max(c for _, c in delayed)
        if highest > desired:
            desired = highest
            delay_held = True
    else:
        delayed = ()

    replicas, bound = clamp(desired, spec)
    mode = "panic" if panic_since is not None else "stable"
    facts = (f"{mode} mode: stable {what} {stable_value:.2f} and panic {what} "
             f"{panic_value:.2f} over {ready_obs} ready pods at a target of {target:.2f} each")
    if bound is not None:
        reason = bound
        message = f"{facts}; {desired} pods bounded to {replicas}"
    elif delay_held:
        reason = Reason.SCALE_DOWN_DELAYED
        message = (f"{facts}; scale-down delayed: highest count in the last "
                   f"{params.scale_down_delay_s:g} s is {replicas}")
    elif panic_since is not None:
        reason = Reason.PANIC
        message = (f"{facts}; panicking, not scaling below {max_panic}" if panic_held
                   else f"{facts}; panicking, scaling to {replicas}")
    elif limit_reason is not None:
        reason = limit_reason
        message = (f"{facts}; {stable_raw} pods limited by the scale rate to {replicas} "
                   f"(allowed {max_down}..{max_up})")
    else:
        reason = Reason.DESIRED_WITHIN_RANGE
        message = f"{facts}; needs {replicas} pods"

    new_policy = KpaState(samples=samples, panic_since=panic_since, max_panic_pods=max_panic,
                          delayed=delayed)
    new_state = replace(state, policy=new_policy)
    demand = snapshot.get(Signal.REQUEST_RATE, now, spec.max_metric_age_s)
    return (
        Decision(replicas=replicas, reason=reason, message=message,
                 recommendation=recommendation, demand_rps=demand),
        new_state,
    )
