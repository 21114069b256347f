"""A release inside a proven silence that the next surge asks back is not a flap
(``recur.SILENCE_SETTLES_RELEASE``, off by default: it cost on ServeGen clients 1, 6, 28).

The release hold doubles after a release asked back soon after (``predictive._next_hold``).
With the rule on, a release made while the fleet was provably idle, asked back by the
traffic that ended that silence, leaves the hold where it was: keeping through silences is
``autoscaler.core.recur``'s priced question, not the hold's.
"""

from __future__ import annotations

import pytest

from autoscaler.core import recur
from autoscaler.core.decide import decide
from autoscaler.core.policies import predictive
from autoscaler.core.policies.predictive import PredictiveState
from autoscaler.core.recur import Plan, Surge, SurgeMemory
from tests.test_predictive_idle import BURST_REPLICAS, SYNC, after_burst, busy, run_silence, spec


@pytest.mark.parametrize(("mem", "expected"), [
    pytest.param(SurgeMemory(), None, id="no surge yet: no silence"),
    pytest.param(SurgeMemory(surge=Surge(start=2500.0, gap_s=1500.0)), (1000.0, 2500.0),
                 id="traffic at 2,500 s after 1,500 s of silence: (1,000, 2,500)"),
    pytest.param(SurgeMemory(surge=Surge(start=2500.0, gap_s=0.0)), None,
                 id="a surge with no silence before it: none"),
    pytest.param(SurgeMemory(quiet_since=3000.0), None,
                 id="a silence under way (not ended, no surge): none"),
])
def test_the_silence_a_surge_ended(mem: SurgeMemory, expected: tuple[float, float] | None
                                   ) -> None:
    assert recur.silence_before(mem) == expected


@pytest.mark.parametrize(("pending", "silence", "expected"), [
    # Base hold 120 s (horizon 1,920 s), hold at 2^1; a start at 2,500 s, 1 -> 3.
    pytest.param(1240.0, (1000.0, 2500.0), (1, None),
                 id="released 240 s into the silence the surge ended: hold stays 2^1"),
    pytest.param(900.0, (1000.0, 2500.0), (2, None),
                 id="released before the silence began: a flap, doubles"),
    pytest.param(1240.0, None, (2, None), id="no silence known: a flap, doubles"),
    pytest.param(2500.0, (1000.0, 2500.0), (2, None),
                 id="released at the surge's first decision (not in the silence): doubles"),
])
def test_a_release_in_the_silence_is_settled_not_doubled(
        pending: float, silence: tuple[float, float] | None,
        expected: tuple[int, float | None]) -> None:
    prev = PredictiveState(hold_doublings=1, last_release=pending)
    assert predictive._next_hold(prev, 120.0, 2500.0, 1, 3, silence) == expected


def test_a_release_in_the_silence_not_asked_back_still_halves() -> None:
    # The quiet horizon (16 x 120 = 1,920 s) passes with no start: halves, as before.
    prev = PredictiveState(hold_doublings=2, last_release=1240.0)
    assert predictive._next_hold(prev, 120.0, 3200.0, 1, 1, (1000.0, 2500.0)) == (1, None)


def cycles(n: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Hold doublings after each of n bursts (10 min at 12 req/s) that follow a 20-min
    silence in which the fleet is released (proved idle, ``_provably_idle``). Whether to
    keep through the silence is recur's plan, taken out here (it would keep these bursts'
    fleets: a whole lead time of 12 req/s on one replica of 4 is far past the budget) so
    that only the hold decides."""
    monkeypatch.setattr(recur, "plan", lambda *args, **kwargs: Plan())
    s = spec()
    state, current, t = after_burst(s)
    out = []
    for _ in range(n):
        steps = 1200 // int(SYNC)
        _, state, current = run_silence(s, state, current, t, steps)
        assert current == s.min_replicas  # the premise: released inside the silence
        t += steps * SYNC
        for _ in range(40):
            d, state = decide(busy(t, current), state, s, t)
            current = d.replicas
            t += SYNC
        assert current >= BURST_REPLICAS  # asked back by the surge
        assert isinstance(state.policy, PredictiveState)
        out.append(state.policy.hold_doublings)
    return out


def test_with_the_rule_on_surges_after_silences_leave_the_hold_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recur, "SILENCE_SETTLES_RELEASE", True)
    assert cycles(3, monkeypatch) == [0, 0, 0]


def test_off_by_default_each_surge_after_a_silence_doubles_the_hold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 minutes of silence is within the 1,920-s horizon of a 120-s base hold (and of a
    # 240-s one: 3,840 s), so each ask-back is a flap: 2^1, then 2^2.
    assert not recur.SILENCE_SETTLES_RELEASE
    assert cycles(2, monkeypatch) == [1, 2]
