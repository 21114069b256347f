"""The replay's derived defaults (``autoscaler.replaying.default_specs``)."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.core.spec import Capacity, PolicyKind
from autoscaler.replaying import ReplayOptions, default_specs
from autoscaler.sim.profiles import load_profile
from autoscaler.traces.model import Trace
from autoscaler.traces.window import window_trace

CAPACITY = Capacity(requests_per_second=10.0, concurrency=20.0)


def _trace(hours: float, busiest_rps: float = 25.0) -> Trace:
    """10 req/s, with one busiest minute of ``busiest_rps`` in the first hour."""
    n = round(hours * 60)
    rates = np.full(n, 10.0)
    rates[30] = busiest_rps
    return Trace(name="t", duration_s=n * 60.0, rates_rps=rates, resolution_s=60.0)


@pytest.mark.parametrize(("hours", "expected"), [
    # Busiest minute 25 req/s = 2.5 replicas of 10 req/s.
    pytest.param(24 * 7, 8, id="week-2x3+2"),
    pytest.param(24, 8, id="day-2x3+2"),
    # Shorter than a day: 4 x 2.5 = 10 replicas at the day's unseen peak: 2 x 10 + 2.
    pytest.param(1, 22, id="hour-2x10+2"),
    pytest.param(23, 22, id="23h-2x10+2"),
])
def test_max_replicas_default(hours: float, expected: int) -> None:
    specs = default_specs(_trace(hours), load_profile("llama3-8b-h100"), CAPACITY,
                          ReplayOptions())
    assert {s.max_replicas for s in specs.values()} == {expected}


def test_an_hour_of_a_day_is_not_capped_at_what_the_hour_needed() -> None:
    # The hour after the busy minute runs at 10 req/s (1 replica): before, its default cap
    # was 2 x 1 + 2 = 4, below the 3 replicas the day's busiest minute needs; now 2 x 4 + 2.
    day = _trace(24)
    hour = window_trace(day, 3600.0, 3600.0)
    prof = load_profile("llama3-8b-h100")
    cap = default_specs(hour, prof, CAPACITY, ReplayOptions())[PolicyKind.HPA].max_replicas
    assert cap == 10
    assert cap >= default_specs(day, prof, CAPACITY, ReplayOptions())[
        PolicyKind.HPA].max_replicas


def test_an_explicit_max_replicas_wins() -> None:
    specs = default_specs(_trace(1), load_profile("llama3-8b-h100"), CAPACITY,
                          ReplayOptions(max_replicas=5))
    assert specs[PolicyKind.HPA].max_replicas == 5
    assert specs[PolicyKind.STATIC].static_replicas == 3
