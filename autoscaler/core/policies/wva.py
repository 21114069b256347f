"""``wva``: llm-d workload-variant-autoscaler's default saturation logic, written from its
documentation (not its code).

WVA's saturation analyzer sizes each variant on *token capacity*: one replica holds
``min(kvCacheThreshold x KV-cache tokens, what its compute sustains)``; it scales up when
demand exceeds 0.85 of the fleet's capacity and down when demand falls below 0.70 of it.
The desired count is published to an HPA, so the HPA's behaviour applies on top.

What we can read (the same series the other policies read), per replica:

* demand: requests in flight (waiting + running), the work that holds KV-cache tokens;
* KV-limited capacity: a replica whose ``running`` requests fill ``kv`` of the cache holds
  running / kv requests at 100 %, so 0.8 x running / kv at the threshold. Worked number:
  40 running at 50 % KV hold 80 requests when full, 64 at the 0.8 threshold;
* compute-limited capacity: ``capacity.concurrency`` (requests in flight one replica holds
  at the SLO, from the spec), the compute limit a WVA user sets for the variant.

Utilisation u = demand / (ready x min(KV-limited, compute-limited)). Above 0.85: scale up to
ceil(demand / (0.85 x capacity)). Below 0.70: remove one replica if the rest would still
be at or below 0.85 (one per cycle, as WVA scales down conservatively). Else hold.
Missing demand => hold; missing KV => compute only.
"""

from __future__ import annotations

import math

from autoscaler.core.behavior import apply_behavior, record_initial_recommendation
from autoscaler.core.policies.common import clamp, hold
from autoscaler.core.spec import Spec
from autoscaler.core.types import Decision, Reason, Signal, Snapshot, State

_MIN_KV = 0.01
"""Below 1 % KV use the ratio running / kv is noise: use the compute limit alone."""
_MIN_KV_CAP = 1e-6
"""A KV-limited capacity below a millionth of a request is no reading either: a running
sum of 1e-311 at full KV use would make it 0 and the utilisation infinite (found by the
lower-bound invariant in ``tests/test_decide_lower_bounds.py``)."""


def decide(snapshot: Snapshot, state: State, spec: Spec, now: float) -> tuple[Decision, State]:
    current = snapshot.current_replicas
    state = record_initial_recommendation(state, current, now)
    age = spec.max_metric_age_s
    demand = snapshot.get(Signal.CONCURRENCY, now, age)
    if demand is None:
        waiting = snapshot.get(Signal.QUEUE_DEPTH, now, age)
        running_only = snapshot.get(Signal.RUNNING, now, age)
        if waiting is not None and running_only is not None:
            demand = waiting + running_only
    if demand is None:
        reason = (Reason.METRICS_STALE if Signal.CONCURRENCY in snapshot.metrics
                  else Reason.METRICS_MISSING)
        return hold(snapshot, state, reason, "no requests-in-flight sample; holding")
    ready = max(1, snapshot.ready_replicas)
    cap = spec.capacity.concurrency
    kv = snapshot.get(Signal.KV_CACHE_USAGE, now, age)
    running = snapshot.get(Signal.RUNNING, now, age)
    limit = "compute"
    if kv is not None and running is not None and kv >= _MIN_KV and running > 0:
        kv_cap = spec.wva.kv_cache_threshold * (running / ready) / kv
        if _MIN_KV_CAP < kv_cap < cap:
            cap, limit = kv_cap, "KV cache"
    w = spec.wva
    u = demand / (ready * cap)
    rec = current
    if u > w.scale_up_threshold:
        rec = max(current, math.ceil(demand / (w.scale_up_threshold * cap) - 1e-9))
    elif u < w.scale_down_threshold and current > 1:
        after = demand / ((current - 1) * cap)
        if after <= w.scale_up_threshold:
            rec = current - 1
    out = apply_behavior(rec, current=current, state=state, spec=spec, now=now)
    replicas, bound = clamp(out.replicas, spec)
    reason = bound if bound is not None and replicas != out.replicas else (
        out.reason if out.reason is not None else
        (Reason.WITHIN_TOLERANCE if rec == current else Reason.DESIRED_WITHIN_RANGE))
    message = (f"{demand:.0f} requests in flight on {ready} ready at {cap:.1f} each "
               f"({limit} bound): utilisation {u:.2f} against {w.scale_down_threshold:g}-"
               f"{w.scale_up_threshold:g}, recommends {rec}; {out.message}")
    return (Decision(replicas=replicas, reason=reason, message=message, recommendation=rec),
            out.state)
