"""What a release may plan on: capacity the fleet was sized on or has carried, not a probe.

The capacity learner (``autoscaler.core.capacity``) raises its estimate by probing while
the SLO holds, up to 1.5x the per-replica load seen meeting it. The plan then needs fewer
replicas, and a *release* is what puts the probed load on the replicas that stay: it is the
probe's test. A failed test is expensive: an overload, the estimate cut while it lasts
(replicas asked for are a cold start away), and a burst of starts for replicas that are
released again as the estimate recovers. On a fleet whose latency shows nothing until it
saturates, every probe tested this way ends in one.

So replicas are released on the lower of the estimate and what has been shown:

* the estimate at the last scale-up (the fleet was sized on it, and nothing since has
  asked for more), lowered where the estimate fell since; and
* the capacity at which the release's planned per-replica load is one the fleet has
  carried in the SLO since that scale-up.

Demand that falls still releases at once (the count planned at the anchor falls); an
estimate that rises releases only down to loads already carried, and is tested at the
next scale-up instead, where the fleet grows anyway. Missing readings carry nothing, and
the plan's other rules (missing data scales up only) are untouched.

Off by default (``RELEASE_ON_SHOWN_CAPACITY``): on ServeGen m-small (14 d) it meets the
churn goal (12.6 -> 10.4 starts per day, 1.03x the HPA's, 99.57 -> 99.66 %) for +3.9 %
GPU-hours there and +6.7 % on NASA x20 (whose probes by release succeed), and on seed 3 of
the heavy-to-light prompt scenario (``tests/test_capacity.py``) it misses 99 % after the
shift (98.11 %): released on the requests/s unit's work model, one replica takes the light
prompts' decode tokens, a unit the learner has no evidence on and the plan skips. On main
an overload at 127 minutes happens to teach that unit first. Seeds 4-7 of the same
scenario meet 99.99-100 % for 2-26 % fewer GPU-hours than main.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RELEASE_ON_SHOWN_CAPACITY = False
"""Whether the predictive policy releases on ``release_capacity`` (True) or on its
estimate alone (False, the default until the decode-token unit is planned without an
overload teaching it first; see the module's docstring for the figures)."""


@dataclass(frozen=True, slots=True)
class ReleaseMemory:
    """What a release may plan on: the estimate the fleet was last sized up on, and the
    per-replica loads it has carried in the SLO since. Per unit, in ``capacity.UNITS``
    order; empty until the first step."""

    anchor: tuple[float, ...] = ()
    """The capacity estimate at the last scale-up (or first sight), lowered where the
    estimate fell since (an overload taught less); never raised between scale-ups."""
    carried: tuple[float, ...] = ()
    """Highest per-replica load (each unit's demand / ready replicas) read with a TTFT
    that met the objective since the anchor was set (NaN: none)."""


def release_capacity(capacity: tuple[float, ...], memory: ReleaseMemory,
                     utilization: float) -> tuple[float, ...]:
    """Per unit, the capacity a release plans on: the estimate, but no more than the
    anchor or than the capacity at which the release's planned per-replica load is one
    the fleet carried in the SLO since (carried / ``utilization``), whichever is higher.

    Why: the learner raises its estimate by probing while the SLO holds, and a release is
    what puts the probed load on the replicas. Released into, an untested estimate is a
    probe whose failure is an overload, an estimate cut while it lasts and a burst of
    starts (ServeGen m-small, 14 d: at 44.1 h a release 10 -> 9 on an estimate probed from
    118 to 162 req/s per replica while demand rose 885 -> 1,005 req/s; 45 minutes later
    the overload cut it to 118 and six replicas started within 3 minutes). Demand that
    fell, or a load already carried, releases as before.

    Worked number: estimate 18,000 prompt tok/s per replica, anchor 13,500, carried
    11,000, release utilisation 0.85 x 0.85 = 0.7225: min(18,000, max(13,500,
    11,000 / 0.7225 = 15,225)) = 15,225. A unit without a finite anchor keeps its
    estimate (nothing to compare it with)."""
    anchor = memory.anchor
    if len(anchor) != len(capacity):
        return capacity
    carried = memory.carried if len(memory.carried) == len(capacity) else \
        (math.nan,) * len(capacity)
    out: list[float] = []
    for c, a, k in zip(capacity, anchor, carried, strict=True):
        if not (math.isfinite(a) and math.isfinite(c)):
            out.append(c)
            continue
        tested = k / utilization if math.isfinite(k) and utilization > 0 else math.nan
        out.append(min(c, max(a, tested)) if math.isfinite(tested) else min(c, a))
    return tuple(out)


def remember(memory: ReleaseMemory, capacity: tuple[float, ...],
             carried_now: tuple[float, ...] | None, scaled_up: bool,
             overloaded: bool = False) -> ReleaseMemory:
    """The memory after this step. First sight and a scale-up set the anchor to the
    estimate (the fleet was just sized on it); otherwise the anchor follows the estimate
    down only. ``carried_now`` (per-replica loads read meeting the objective; None when
    the reading did not) raises what was carried; an ``overloaded`` reading (certainly
    above the objective) forgets it first: loads carried before an overload are no
    evidence of what the fleet carries now. Worked number: anchor (13,500, 2,400, 200),
    estimate (12,000, 2,600, 210), carried (9,000, NaN, 150), carried now (9,500, 1,800,
    140), no scale-up: anchor (12,000, 2,400, 200), carried (9,500, 1,800, 150)."""
    blank = (math.nan,) * len(capacity)
    carried = memory.carried if len(memory.carried) == len(capacity) and not overloaded \
        else blank
    if scaled_up or len(memory.anchor) != len(capacity):
        anchor = capacity
    else:
        anchor = tuple(min(c, a) if math.isfinite(a) and math.isfinite(c) else
                       (a if math.isfinite(a) else c)
                       for c, a in zip(capacity, memory.anchor, strict=True))
    if carried_now is not None and len(carried_now) == len(capacity):
        carried = tuple(n if math.isfinite(n) and not k >= n else k  # NaN-safe max
                        for k, n in zip(carried, carried_now, strict=True))
    return ReleaseMemory(anchor=anchor, carried=carried)
