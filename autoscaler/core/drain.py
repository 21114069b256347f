"""A backlog's drain plan in time: replicas still starting are supply from their ready time.

A queue of ``Q`` requests, arrivals at ``lambda`` requests/s, ``R`` ready replicas serving
``c`` requests/s each, and replicas still starting that each serve from their expected ready
time on (when it was asked for plus the cold start). A replica asked for now serves from one
cold start on. In the fluid model the backlog follows

    Q(t) = max(0, Q + integral_0^t (lambda - supply(u)) du),   supply(u) = c x replicas(u),

and ``replicas(u)`` only grows with ``u`` (replicas arrive; none leave within the plan). So
the unclamped path has a non-increasing slope: it is concave, and once it falls below zero
it stays there. The clamped backlog is therefore zero at the deadline ``D`` exactly when the
unclamped one is <= 0 at ``D``, which is linear in the number ``k`` of new replicas:

    Q + lambda D - c (R D + sum_i max(0, D - t_i)) - k c max(0, D - T_new) <= 0.

The fewest ``k`` is one division: O(starting replicas), no search and no simulation. Each
replica counts once, for the time it will actually serve, so a burst during a cold start is
answered once: the replicas asked for it are supply from their ready time at every later
step, and the queue they were asked for does not ask again
(``tests/test_predictive_drain.py`` checks this against a second-by-second simulation).

Where each replica queues its own requests (vLLM behind a least-outstanding router, as the
replay's request engine models it), a backlog stays with the ready replicas that hold it and
new replicas take only new arrivals: past ready + enough others to carry every arrival, no
count drains it sooner, so the plan never asks for more than that (``drain_replicas``). A
shared queue (a gateway's, or the fluid engine's) would drain faster with more; the plan
does not count on one.

Worked number: Q = 66 queued, lambda = 22 req/s, 2 ready at c = 8 req/s, none starting,
cold start 90 s, drain within 30 s of it (D = 120 s): Q + lambda D - c R D = 66 + 2,640 -
1,920 = 786 requests left for new replicas serving the last D - T_new = 30 s at 8 req/s:
k = ceil(786 / 240) = ceil(3.28) = 4, 6 in all on a shared queue; but 2 + ceil(22 / 8) = 5
is the most that drains sooner, so 5, asked for once. With those 3 starting (asked 15 s
ago, ready in 75 s, so serving 120 - 75 = 45 s of the next 120) and (22 - 16) x 15 = 90
more queued (156), the next step plans 156 + 2,640 - 8 x (2 x 120 + 3 x 45) = 156 + 2,640 -
3,000 = -204 <= 0: no new replica.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_EPS = 1e-9


def backlog_left(queue: float, arrival_rps: float, ready: int, per_replica_rps: float,
                 starting_in_s: Sequence[float], new: int, new_in_s: float,
                 deadline_s: float) -> float:
    """The unclamped fluid backlog at ``deadline_s`` (requests; <= 0: drained by then).

    ``starting_in_s``: seconds until each replica still starting serves (0 when due or
    overdue); ``new`` replicas serve from ``new_in_s`` on."""
    served_s = ready * deadline_s + sum(max(0.0, deadline_s - max(0.0, t))
                                        for t in starting_in_s)
    served_s += new * max(0.0, deadline_s - new_in_s)
    return queue + arrival_rps * deadline_s - per_replica_rps * served_s


def drain_replicas(queue: float, arrival_rps: float, ready: int, per_replica_rps: float,
                   starting_in_s: Sequence[float], new_in_s: float, deadline_s: float,
                   most: int) -> int:
    """Replicas in all (ready + starting + new) for the fluid backlog to drain by
    ``deadline_s`` seconds from now, new ones serving from ``new_in_s``; when no count up to
    the bound drains it by then, the bound (the count that drains it soonest). The bound is
    ``most`` and the count past which no replica drains sooner where each replica queues
    its own requests: ``ready`` plus enough others to carry every arrival (at least those
    starting). Never fewer than ready + starting: this plan only adds.

    A queue of 0 (or less) needs nothing beyond what is there. A per-replica rate that is
    not a positive number asks for nothing either (no plan can be made; the caller's other
    rules still apply)."""
    have = ready + len(starting_in_s)
    if queue <= 0 or not (per_replica_rps > 0 and math.isfinite(per_replica_rps)):
        return have
    left = backlog_left(queue, max(0.0, arrival_rps), ready, per_replica_rps, starting_in_s,
                        0, new_in_s, deadline_s)
    if left <= 0:
        return have
    # Beyond this count no replica drains the backlog sooner where each replica queues its
    # own requests (vLLM behind a least-outstanding router, the request engine): the queue
    # stays with the ready replicas that hold it, and new ones take only new arrivals, so
    # the fastest drain is the ready replicas' full rate once the others carry every
    # arrival. Only a shared queue (a gateway's; the fluid engine) drains faster with more.
    useful = ready + max(len(starting_in_s),
                         math.ceil(max(0.0, arrival_rps) / per_replica_rps - _EPS))
    window = deadline_s - new_in_s
    if window <= 0:
        return max(have, min(most, useful))
    k = math.ceil(left / (per_replica_rps * window) - _EPS)
    return max(have, min(most, useful, have + k))
