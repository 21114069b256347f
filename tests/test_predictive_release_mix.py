"""The heavy-to-light prompt scenario of ``tests/test_capacity.py`` on seeds 3-7, with a
release planned on what the fleet has shown (``release.RELEASE_ON_SHOWN_CAPACITY``).

Two hours of 2,400-token prompts, then two of 600-token prompts, at 14 +- 4 req/s over an
hour's cycle and 150 generated tokens. After the shift one replica of the 8B profile
carries about 15.8 req/s (``capacity_for``), so the 18 req/s peak needs two. The
requests/s estimate, learned on the long prompts and converted with the work model
(``capacity.DECODE_TOKEN_WORK``), reads about 28 req/s per replica there; the
generated-token unit has no evidence. A release that skipped that unit went 2 -> 1 on seed
3 and met the next peak on one replica (98.11 % after the shift); planned on the decode
load the fleet has shown (``release.release_estimate``) it keeps two.

Measured with the loads moved to the mix and held against the plan's mean (2026-12-02,
``release.RELEASE_SHOWN_AT_MEAN``; after the shift / GPU-h / last hour's mean replicas):
seed 3 100.00 % / 12.66 / 2.00, 4 100.00 % / 12.64 / 2.00, 5 100.00 % / 13.35 / 1.88,
6 100.00 % / 13.36 / 2.00, 7 100.00 % / 13.63 / 2.00. The replays are cached per seed and
release switches (``heavy_to_light``), shared with ``tests/test_ratchet.py``.

First measured (rule on, loads kept in tokens; after the shift / GPU-h / last hour's mean):
seed 3 100.00 % / 12.84 / 2.00, 4 100.00 % / 12.61 / 2.00, 5 100.00 % / 14.57 / 2.71,
6 100.00 % / 14.50 / 2.77, 7 100.00 % / 14.92 / 2.65. Rule off: 100.00 % / 12.21,
100.00 % / 12.89, 99.57 % / 11.43, 100.00 % / 11.24, 100.00 % / 13.51.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from autoscaler.core import release
from autoscaler.core.spec import PolicyKind
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.replay import replay
from tests.test_capacity import PROFILE, SLO, _attainment_after, _trace

HALF = 2 * 3600.0


@dataclasses.dataclass(frozen=True)
class HeavyToLight:
    """One replay of the scenario: attainment after the shift, GPU-hours, and the mean
    replicas the policy asked for over the last hour."""

    after: float
    gpu_hours: float
    last_hour: float


@functools.cache
def _replayed(seed: int, switches: tuple[bool, ...]) -> HeavyToLight:
    del switches  # only the cache key: a replay under other release switches is another
    trace = _trace(seed, 2 * HALF, lambda t: 14.0 + 4.0 * np.sin(2 * np.pi * t / 3600.0),
                   lambda a: np.where(a < HALF, 2400.0, 600.0), 150.0)
    assert trace.arrivals_s is not None and trace.prompt_tokens is not None
    assert trace.output_tokens is not None
    late = trace.arrivals_s >= HALF
    first = dataclasses.replace(trace, arrivals_s=trace.arrivals_s[~late],
                                prompt_tokens=trace.prompt_tokens[~late],
                                output_tokens=trace.output_tokens[~late], duration_s=HALF)
    spec = default_specs(trace, PROFILE, capacity_for(first, PROFILE, SLO),
                         ReplayOptions())[PolicyKind.PREDICTIVE]
    planned: list[tuple[float, int]] = []
    result = replay(trace, spec, PROFILE,
                    on_decision=lambda t, _s, d: planned.append((t, d.replicas)))
    return HeavyToLight(
        after=_attainment_after(result, HALF), gpu_hours=result.summary.gpu_hours,
        last_hour=float(np.mean([n for t, n in planned if t >= 2 * HALF - 3600.0])))


def heavy_to_light(seed: int) -> HeavyToLight:
    """The scenario replayed on ``seed`` under the release switches as they are now, once
    per test session (``tests/test_ratchet.py`` asserts on the same replays)."""
    return _replayed(seed, (release.RELEASE_ON_SHOWN_CAPACITY, release.RELEASE_AT_MIX,
                            release.RELEASE_SHOWN_AT_MEAN))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4, 5, 6, 7])
def test_heavy_to_light_meets_99_percent_after_the_shift_with_the_rule_on(
        monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(release, "RELEASE_ON_SHOWN_CAPACITY", True)
    got = heavy_to_light(seed)
    assert got.after >= 0.99
    # The peak needs ceil(18 / (0.85 x 15.8)) = 2: at most one above it on average.
    assert got.last_hour <= 3.0
