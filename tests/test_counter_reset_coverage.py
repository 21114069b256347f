"""The counter-reset coverage rule: a reset loses what the pod counted between the last scrape
before it and the reset (Prometheus sees only the value after it, counted from 0), so the
rate window is not yet valid until it is covered again. On the pure judge, on the live
collector's query, on the replay's fake Prometheus, and through a replay with no scale-down
delay at all."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.core.types import Signal
from autoscaler.metrics.collect import CollectorConfig
from autoscaler.metrics.presets import get_preset
from autoscaler.observation import RawTarget, Status, WindowSeries, judge
from tests import test_sim_replay_faults as faults
from tests.test_sim_replay_faults import FAULT_T, FAULTS, eager

AT, WINDOW = 600.0, 60.0
SINCE = AT - WINDOW
TIMES = [510.0, 525.0, 540.0, 555.0, 570.0, 585.0, 600.0]
"""Scrapes every 15 s over a range of 1.5 windows, (510, 600]: the window is (540, 600]."""


def steady(rate: float = 5.0) -> list[tuple[float, float]]:
    return [(t, 1000.0 + rate * t) for t in TIMES]


def reset_after(t_reset: float, rate: float = 5.0) -> list[tuple[float, float]]:
    """A pod at ``rate`` whose counter restarts from 0 at ``t_reset`` (between scrapes)."""
    return [(t, 1000.0 + rate * t if t < t_reset else rate * (t - t_reset)) for t in TIMES]


def status(series: list[list[tuple[float, float]]], *, since: float | None = SINCE
           ) -> Status:
    if since is None:  # the old query: the window's samples only
        series = [[p for p in s if p[0] > SINCE] for s in series]
    raw = RawTarget(at=AT, window_s=WINDOW, values={Signal.REQUEST_RATE: 20.0},
                    series=WindowSeries.from_samples(series, counter=True, since=since))
    return judge(raw, max_age_s=60.0).readings[Signal.REQUEST_RATE].status


@pytest.mark.parametrize(("series", "expected"), [
    pytest.param([steady()] * 4, Status.OK, id="no reset"),
    # Reset at 564: (555, 564] is lost, 45 of the window's 1,200 across 4 pods.
    pytest.param([steady()] * 3 + [reset_after(564.0)], Status.NOT_YET_VALID,
                 id="a reset inside the window"),
    pytest.param([steady()] * 3 + [reset_after(592.0)], Status.NOT_YET_VALID,
                 id="a reset before the newest scrape"),
    # Reset at 548: the scrape before it (540) is at the window's start, outside (left-open):
    # only the sample before the window shows the drop, and (540, 548] is in the window.
    pytest.param([steady()] * 3 + [reset_after(548.0)], Status.NOT_YET_VALID,
                 id="a reset between the scrape before the window and its first"),
    # Reset at 530: what was lost, (525, 530], lies before the window: covered.
    pytest.param([steady()] * 3 + [reset_after(530.0)], Status.OK,
                 id="a reset wholly before the window"),
    pytest.param([steady()] * 2 + [reset_after(564.0), reset_after(575.0)],
                 Status.NOT_YET_VALID, id="two pods reset"),
])
def test_a_counter_reset_leaves_the_window_uncovered(series: list[list[tuple[float, float]]],
                                                     expected: Status) -> None:
    assert status(series) is expected


def test_without_the_sample_before_the_window_a_reset_at_its_start_is_not_seen() -> None:
    # Why the live query reads 1.5 windows: from the window's samples alone the reset at
    # 548 looks like a pod counting from 0 (a new pod), and the lost (540, 548] passes.
    assert status([steady()] * 3 + [reset_after(548.0)], since=None) is Status.OK


@pytest.mark.parametrize(("window", "expected"), [
    pytest.param("1m", "[90s]", id="1m reads 90s"),
    pytest.param("30s", "[45s]", id="30s reads 45s"),
    pytest.param("45s", "[67500ms]", id="45s reads 67500ms"),
])
def test_the_live_query_reads_the_sample_before_the_window_in_the_same_query(
        window: str, expected: str) -> None:
    cfg = CollectorConfig(preset=get_preset("vllm"), window=window)
    series_q, _, counter = cfg.series_queries()
    assert counter and series_q.endswith(expected)
    plain, quantiles = cfg.plan()
    # 8 signal queries (the TTFT quantiles share one) + the series and the pod count.
    assert len(plain) + len(quantiles) + 2 == 10


def _no_delay(spec: Spec) -> Spec:
    """Every scale-down delay removed: the HPA-shaped window and the policy's own hold
    (``eager``), the ski-rental hold and the hysteresis band."""
    spec = eager(spec)
    return replace(spec, predictive=replace(spec.predictive, keep_idle_cold_starts=0.0,
                                            scale_down_band=1.0))


def test_a_counter_reset_causes_no_scale_down_with_every_delay_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Two of four pods restart 5 s after a scrape; before the rule, predictive at a flat
    # 40 req/s went 4 -> 3 at 1845 on the under-read and back up to 5, then 6.
    monkeypatch.setattr(faults, "eager", _no_delay)
    counts, _ = faults.run(PolicyKind.PREDICTIVE, FAULTS["counter reset"])
    clean = dict(faults.run(PolicyKind.PREDICTIVE, ())[0])
    before = [n for t, n in counts if FAULT_T - 300.0 <= t < FAULT_T]
    window = [(t, n) for t, n in counts if FAULT_T <= t <= FAULT_T + 600.0]
    assert before and window
    lowered = [(t, n) for t, n in window if n < min(before[-1], clean[t])]
    assert not lowered, (before[-1], lowered)
    # The flat load needs the same count throughout: nothing the reset caused either way.
    assert [n for _, n in window] == [clean[t] for t, _ in window]
