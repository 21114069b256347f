"""The Pareto front of (GPU-hours, SLO attainment): fewer GPU-hours and higher attainment are
both better. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` = (gpu_hours, attainment) is at least as good as ``b`` on both and better on one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, by increasing GPU-hours.

    Of several identical points only the first (lowest index) is kept, so the front lists
    each trade-off once. O(n log n): sort by GPU-hours (ties: higher attainment first, then
    index), then a point is on the front exactly when its attainment beats every cheaper
    point's. Worked example: (10, 0.99), (8, 0.95), (9, 0.95), (12, 0.999) -> sorted 8, 9,
    10, 12; 9 does not beat 0.95, so the front is (8, 0.95), (10, 0.99), (12, 0.999).
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = -float("inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
