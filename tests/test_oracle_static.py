"""The replay-only hindsight baseline (policy ``oracle``) and the static policy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import PolicyKind, Reason, Snapshot, State, decide
from autoscaler.core.spec import Capacity, Spec
from autoscaler.sim.hindsight import BURST_DRAIN_FRACTION, STEADY_BIN_S, plan

CAP = Capacity(requests_per_second=4.0, concurrency=20.0)


def _oracle(**kw: object) -> Spec:
    base: dict[str, object] = {"max_replicas": 50, "capacity": CAP, "policy": PolicyKind.ORACLE,
                               "cold_start_s": 120.0, "sync_period_s": 15.0}
    base.update(kw)
    return Spec(**base)  # type: ignore[arg-type]


def test_the_oracle_provisions_for_a_jump_one_cold_start_ahead() -> None:
    # The worked example of the oracle's docstring: 10 req/s now, 13 req/s from now + 130 s,
    # 5 s bins; the window [now, now + 135 s] holds the jump, so 4 replicas, not 3.
    rates = tuple([10.0] * 26 + [13.0] * 10)
    decision = plan(rates, 5.0, _oracle())
    assert decision.valid
    assert decision.replicas == 4
    assert decision.reason == Reason.FORESIGHT


def test_the_oracle_plans_over_the_whole_window_the_replay_gives_it() -> None:
    # The replay passes [now, now + longest cold start + actuation + sync]; a jump at 170 s
    # (a late replica's start) is inside it and must be covered.
    rates = tuple([10.0] * 34 + [40.0] * 2)
    decision = plan(rates, 5.0, _oracle())
    assert decision.replicas == 10


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        pytest.param(0.0, 1, id="idle holds min replicas"),
        pytest.param(8.0, 2, id="exactly two replicas of load needs two"),
        pytest.param(8.000000001, 2, id="float noise above a multiple does not add one"),
        pytest.param(8.1, 3, id="just above two replicas of load needs three"),
        pytest.param(1000.0, 50, id="clamped at max replicas"),
    ],
)
def test_the_oracle_takes_the_fewest_replicas_that_cover_the_peak(
    rate: float, expected: int
) -> None:
    decision = plan((rate,) * 40, 5.0, _oracle())
    assert decision.replicas == expected


def test_the_core_holds_an_oracle_spec_because_only_the_replay_has_the_future() -> None:
    decision, state = decide(Snapshot(3, 3), State(), _oracle(), 0.0)
    assert not decision.valid
    assert decision.replicas == 3
    assert decision.reason == Reason.METRICS_MISSING
    assert state == State()


def _slow_oracle(rates: list[float], res: float, cap: float, slo: float) -> int:
    """The definition, spelled out: try n = 0, 1, 2, ... until both tests pass."""
    k = max(1, round(STEADY_BIN_S / res))
    n = 1 if max(rates) > 0 else 0  # any demand at all needs a replica
    while True:
        steady_ok = all(
            sum(rates[i:i + k]) / len(rates[i:i + k]) <= n * cap + 1e-9
            for i in range(0, len(rates), k))
        backlog, worst = 0.0, 0.0
        for r in rates:  # Lindley's recursion, one bin at a time
            backlog = max(0.0, backlog + r * res - n * cap * res)
            worst = max(worst, backlog)
        if steady_ok and worst <= n * cap * slo * BURST_DRAIN_FRACTION + 1e-9:
            return n
        n += 1


@given(rates=st.lists(st.floats(min_value=0.0, max_value=500.0), min_size=1, max_size=60),
       res=st.sampled_from([1.0, 5.0]), min_r=st.integers(0, 5), extra=st.integers(0, 200))
@settings(max_examples=200, deadline=None)
def test_the_oracle_is_the_fewest_replicas_passing_both_tests_within_bounds(
    rates: list[float], res: float, min_r: int, extra: int
) -> None:
    spec = _oracle(min_replicas=min_r, max_replicas=max(1, min_r + extra))
    decision = plan(tuple(rates), res, spec)
    assert spec.min_replicas <= decision.replicas <= spec.max_replicas
    expected = _slow_oracle(rates, res, CAP.requests_per_second, spec.slo.ttft_seconds)
    assert decision.recommendation == expected
    assert decision.replicas == min(spec.max_replicas, max(spec.min_replicas, expected))


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        pytest.param([0.0] * 9 + [30.0] + [0.0] * 5, 4,
                     id="a 30-request spike needs 4 replicas of 4 req/s, not the 1 its mean needs"),
        pytest.param([8.0] * 15, 2, id="steady 8 req/s needs exactly 2"),
    ],
)
def test_the_oracle_covers_bursts_shorter_than_its_averaging_bin(
    rates: list[float], expected: int
) -> None:
    # The worked example of replicas_for_window: with SLO 2 s the backlog must drain in 1 s.
    decision = plan(tuple(rates), 1.0, _oracle())
    assert decision.replicas == expected


@pytest.mark.parametrize(
    ("static", "expected"),
    [pytest.param(None, 10, id="defaults to max replicas"),
     pytest.param(4, 4, id="holds the configured count")],
)
def test_the_static_policy_holds_its_count_whatever_the_metrics(
    static: int | None, expected: int
) -> None:
    spec = Spec(max_replicas=10, capacity=CAP, policy=PolicyKind.STATIC, static_replicas=static)
    decision, state = decide(Snapshot(7, 7), State(), spec, 100.0)
    assert (decision.replicas, decision.reason, decision.valid) == (expected, Reason.FIXED, True)
    assert state == State()
