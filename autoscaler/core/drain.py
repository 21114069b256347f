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


def drain_replicas(queue: float, arrival_rps: float, ready: int, per_replica_rps: float,
                   starting_in_s: Sequence[float], new_in_s: float, deadline_s: float,
                   most: int) -> int:
    """The fewest replicas in all for the fluid backlog to drain by ``deadline_s`` seconds
    from now: ready ones first (serving from now), then those starting in the order they
    will serve (a Deployment scaled down removes the newest not-ready pod first), then new
    ones serving from ``new_in_s``. When no count up to the bound drains it by then, the
    bound (the count that drains it soonest), but never fewer than ready + starting. The
    bound is ``most`` and the count past which no replica drains sooner where each replica
    queues its own requests: ``ready`` plus enough others to carry every arrival (at least
    those starting).

    A count the caller compares with its plan: the backlog asks for more only when it
    needs more than the plan gives, and it keeps a starting replica only while the drain
    needs it. A few requests waiting for the next batch step ask for about what carries
    the arrivals, which the plan already gives. No queue (or a per-replica rate that is not
    a positive number: no plan can be made) asks for nothing: 0. O(starting replicas)."""
    if queue <= 0 or not (per_replica_rps > 0 and math.isfinite(per_replica_rps)):
        return 0
    arrival = max(0.0, arrival_rps)
    starting = sorted(max(0.0, t) for t in starting_in_s)
    # The unclamped backlog at the deadline with no replica, then with the ready ones
    # (serving from now: the fewest is one division), then with each starting one added in
    # the order it will serve.
    left = queue + arrival * deadline_s
    if deadline_s > 0:
        fewest_ready = max(0, math.ceil(left / (per_replica_rps * deadline_s) - _EPS))
        if fewest_ready <= ready:
            return fewest_ready
    left -= per_replica_rps * ready * deadline_s
    for j, t in enumerate(starting):
        if left <= 0:
            return ready + j
        left -= per_replica_rps * max(0.0, deadline_s - t)
    have = ready + len(starting)
    if left <= 0:
        return have
    useful = ready + max(len(starting), math.ceil(arrival / per_replica_rps - _EPS))
    bound = max(have, min(most, useful))
    window = deadline_s - new_in_s
    if window <= 0:
        return bound
    k = math.ceil(left / (per_replica_rps * window) - _EPS)
    return min(bound, have + k)
