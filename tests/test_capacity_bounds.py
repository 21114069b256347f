"""What an overload at one prompt mix says at another (``autoscaler.core.capacity``).

A breach, a doubt and the envelope are per-replica loads remembered for hours; in a token
unit they are counted at the mix of the minute they were seen. The learner takes a
replica's work (prompt tokens + 1 x generated tokens) as what does not change with the
mix, so a remembered load moves with the unit's share of the work when the mix moves.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import capacity as cap

SLO = 2.0


@pytest.fixture(autouse=True)
def _unit_decode_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worked numbers of this module count a generated token as one prompt token's work
    (600 + 1 x 150 = 750); the re-expression's arithmetic is the same at any decode cost
    (``capacity.DECODE_TOKEN_WORK``, 2.4 by default; ``tests/test_ratchet.py`` works at it)."""
    monkeypatch.setattr(cap, "DECODE_TOKEN_WORK", 1.0)


SHORT = (600.0, 150.0)
"""Tokens per request before the shift: work 600 + 1 x 150 = 750, prompt share 0.8."""
LONG = (2400.0, 150.0)
"""After it: work 2,400 + 150 = 2,550, prompt share 2,400 / 2,550 = 0.941."""


def _step(est: cap.LearnedCapacity, t: float, *, per_replica_rps: float,
          mix: tuple[float, float], ttft: float) -> cap.LearnedCapacity:
    """Two ready replicas, each serving ``per_replica_rps`` of ``mix``."""
    o = cap.FleetObservation(
        ready_replicas=2, current_replicas=2,
        served=(2 * per_replica_rps * mix[0], 2 * per_replica_rps * mix[1],
                2 * per_replica_rps),
        ttft_s=ttft, queue=0.0, kv_usage=0.2)
    return cap.update(est, o, slo_ttft_s=SLO, now=t, prior_rps=12.0, tokens_per_request=mix)


def _overloaded_on_short_prompts() -> tuple[cap.LearnedCapacity, float]:
    """Five minutes of slack at 10 req/s per replica, then three readings at 16 req/s per
    replica with TTFT p99 at 5 s against 2 s: a certain, confirmed overload of every unit
    at 16 x 600 = 9,600 prompt tokens/s, 16 x 150 = 2,400 generated tokens/s."""
    est, t = cap.start(12.0, SHORT), 0.0
    for _ in range(20):
        est, t = _step(est, t, per_replica_rps=10.0, mix=SHORT, ttft=0.3), t + 15.0
    for _ in range(3):
        est, t = _step(est, t, per_replica_rps=16.0, mix=SHORT, ttft=5.0), t + 15.0
    return est, t


def test_an_overload_on_short_prompts_is_the_same_work_on_long_ones() -> None:
    est, t = _overloaded_on_short_prompts()
    assert est.breach == pytest.approx((9600.0, 2400.0, 16.0))
    # The prompts grow fourfold; each replica now serves 4 req/s, 4 x 2,400 = 9,600 prompt
    # tokens/s (the same as the overload's, but a third more work: 4 x 2,550 = 10,200
    # against 16 x 750 = 12,000 x 0.85) with TTFT p99 at 0.3 s, for 40 minutes.
    for _ in range(160):
        est, t = _step(est, t, per_replica_rps=4.0, mix=LONG, ttft=0.3), t + 15.0
    # The breach is 12,000 of work per replica: in prompt tokens at the long mix
    # 9,600 x (2,400 / 2,550) / (600 / 750) = 11,294; in generated tokens
    # 2,400 x (150 / 2,550) / (150 / 750) = 705.9; in requests of the learned mix, 16.
    assert est.breach[0] == pytest.approx(9600.0 * (2400.0 / 2550.0) / (600.0 / 750.0))
    assert est.breach[1] == pytest.approx(2400.0 * (150.0 / 2550.0) / (150.0 / 750.0))
    assert est.breach[2] == pytest.approx(16.0)
    # Probes of the prompt unit went past the short prompts' 9,600 tokens/s, up to that
    # breach and no further (kept as counted, they stopped at 9,600: 4.0 req/s of long
    # prompts where 12,000 of work is 4.7).
    assert est.capacity[0] == pytest.approx(11294.1, abs=0.1)


def test_at_the_same_mix_the_bounds_stay_as_counted() -> None:
    est, t = _overloaded_on_short_prompts()
    for _ in range(160):
        est, t = _step(est, t, per_replica_rps=10.0, mix=SHORT, ttft=0.3), t + 15.0
    assert est.breach == pytest.approx((9600.0, 2400.0, 16.0))
    assert est.capacity[0] <= 9600.0  # probes stop at the breach


MIXES = st.tuples(st.floats(10.0, 8000.0), st.floats(1.0, 2000.0))


@settings(max_examples=200, deadline=None)
@given(first=MIXES, path=st.lists(MIXES, min_size=1, max_size=6),
       bounds=st.tuples(st.floats(1.0, 1e5), st.floats(1.0, 1e5), st.floats(0.1, 100.0)))
def test_the_bounds_depend_on_the_mix_only_not_on_the_path(
        first: tuple[float, float], path: list[tuple[float, float]],
        bounds: tuple[float, float, float]) -> None:
    # Remembered at ``first`` and re-expressed through any sequence of mixes, a bound in a
    # token unit is its work at ``first`` in that unit at the last mix; the requests/s
    # unit, already counted as requests of the learned mix, never moves.
    est = replace(cap.start(1.0, first), envelope=bounds, breach=bounds, doubt=bounds,
                  recent_mix=first, bounds_mix=first)
    for mix in path:
        est = cap._bounds_at_mix(replace(est, recent_mix=mix))
    last = path[-1]
    w0, w1 = first[0] + first[1], last[0] + last[1]
    want = (bounds[0] * (last[0] / w1) / (first[0] / w0),
            bounds[1] * (last[1] / w1) / (first[1] / w0), bounds[2])
    for got in (est.envelope, est.breach, est.doubt):
        assert got == pytest.approx(want, rel=1e-9)
    assert est.bounds_mix == last


def test_an_unknown_mix_moves_no_bound() -> None:
    bounds = (9600.0, 2400.0, 16.0)
    est = replace(cap.start(1.0, SHORT), breach=bounds, recent_mix=SHORT, bounds_mix=SHORT)
    kept = cap._bounds_at_mix(replace(est, recent_mix=(math.nan, 150.0)))
    assert kept.breach == bounds and kept.bounds_mix == SHORT
    # The first known mix is where the bounds are counted: nothing moves either.
    fresh = replace(est, bounds_mix=(math.nan, math.nan))
    assert cap._bounds_at_mix(replace(fresh, recent_mix=LONG)).breach == bounds
