"""A silent fleet is not missing data: predictive releases it once the readings prove it idle.

With no first token in the rate window a TTFT percentile cannot exist (histogram_quantile of
all-zero bucket rates is NaN, left out of the snapshot). The policy used to read that as
missing data ("scale up only") and kept the last burst's fleet through every silent hour.
Only a *proof* of idleness (request rate, queue and requests in flight fresh, trusted and
exactly 0, and no gateway arrivals) lifts that rule; anything less keeps it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.core.decide import decide
from autoscaler.core.spec import Capacity, PolicyKind, Spec
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State

# 4 req/s per replica at the SLO, planned at the default utilisation: 12 req/s needs 4
# replicas (ceil(12 / (4 x 0.85)) = ceil(3.53) = 4), as does ceil(12 / (4 x 0.8)).
CAPACITY = Capacity(requests_per_second=4.0, concurrency=8.0)
SYNC = 15.0
BURST_RPS = 12.0
BURST_REPLICAS = 4


def spec() -> Spec:
    """Every predictive default (hold, band, HPA-shaped behaviour) on a given capacity that
    is not learned: these fake readings carry no real per-replica load, and the test is
    about when the fleet may be released, not what a replica carries."""
    base = Spec(max_replicas=50, min_replicas=1, capacity=CAPACITY,
                policy=PolicyKind.PREDICTIVE, sync_period_s=SYNC)
    return replace(base, predictive=replace(base.predictive, learn_capacity=False))


def busy(at: float, current: int) -> Snapshot:
    """A served burst: first tokens at 12 req/s, TTFT well within the SLO, 3 running."""
    return Snapshot(current_replicas=current, ready_replicas=current, metrics={
        Signal.REQUEST_RATE: MetricValue(BURST_RPS, at),
        Signal.QUEUE_DEPTH: MetricValue(0.0, at),
        Signal.RUNNING: MetricValue(3.0, at),
        Signal.TTFT_P99: MetricValue(0.4, at)})


Reading = tuple[float, float] | None
"""(value, age in seconds) of one signal in the silent snapshot; None: absent."""


def silent(at: float, current: int, *, rate: Reading = (0.0, 0.0),
           queue: Reading = (0.0, 0.0), running: Reading = (0.0, 0.0),
           arrivals: Reading = None, bounds: dict[Signal, float] | None = None) -> Snapshot:
    """No TTFT percentile (no first token in the window); the other readings as given."""
    metrics: dict[str, MetricValue] = {}
    for sig, reading in ((Signal.REQUEST_RATE, rate), (Signal.QUEUE_DEPTH, queue),
                         (Signal.RUNNING, running), (Signal.ARRIVAL_RATE, arrivals)):
        if reading is not None:
            metrics[sig] = MetricValue(reading[0], at - reading[1])
    lower = {sig: MetricValue(v, at) for sig, v in (bounds or {}).items()}
    return Snapshot(current_replicas=current, ready_replicas=current, metrics=metrics,
                    lower_bounds=lower)


def after_burst(s: Spec) -> tuple[State, int, float]:
    """Ten minutes of burst: the state, the count it holds, and the next step's time."""
    state, current, t = State(), BURST_REPLICAS, 0.0
    for _ in range(40):
        d, state = decide(busy(t, current), state, s, t)
        current = d.replicas
        t += SYNC
    assert current == BURST_REPLICAS  # the premise: the burst's fleet is 4
    return state, current, t


def run_silence(s: Spec, state: State, current: int, start: float, steps: int,
                **reading: object) -> tuple[list[Decision], State, int]:
    out: list[Decision] = []
    t = start
    for _ in range(steps):
        d, state = decide(silent(t, current, **reading), state, s, t)  # type: ignore[arg-type]
        current = d.replicas if d.valid else current
        out.append(d)
        t += SYNC
    return out, state, current


# 80 steps of 15 s = 20 minutes of silence, longer than any hold the burst left (the base
# hold is max(scale-down window, cold start) and it has not doubled: nothing was released).
SILENT_STEPS = 80


@pytest.mark.parametrize(("reading", "released"), [
    pytest.param({}, True, id="idle: rate 0, queue 0, running 0 -> released after the hold"),
    pytest.param({"queue": (2.0, 0.0)}, False, id="rate 0 but 2 queued -> holds"),
    pytest.param({"running": (1.0, 0.0)}, False, id="rate 0, queue 0 but 1 running -> holds"),
    pytest.param({"running": None}, False,
                 id="no running gauge (nothing proves no request is inside a batch) -> holds"),
    pytest.param({"running": (0.0, 600.0)}, False, id="running 0 but stale -> holds"),
    pytest.param({"rate": None}, False, id="request rate absent -> holds"),
    pytest.param({"rate": (0.0, 600.0)}, False, id="request rate 0 but stale -> holds"),
    pytest.param({"rate": None, "bounds": {Signal.REQUEST_RATE: 0.0}}, False,
                 id="request rate only a lower bound of 0 -> holds"),
    pytest.param({"queue": None, "bounds": {Signal.QUEUE_DEPTH: 0.0}}, False,
                 id="queue only a lower bound of 0 -> holds"),
    pytest.param({"running": None, "bounds": {Signal.RUNNING: 0.0}}, False,
                 id="running only a lower bound of 0 -> holds"),
    pytest.param({"arrivals": (3.0, 0.0)}, False,
                 id="first tokens 0 but a gateway sees 3 req/s arriving (stalled) -> holds"),
    pytest.param({"arrivals": (0.0, 600.0)}, False, id="gateway arrivals 0 but stale -> holds"),
    pytest.param({"arrivals": (0.0, 0.0)}, True,
                 id="gateway arrivals fresh and 0 too -> released after the hold"),
])
def test_a_missing_ttft_releases_only_a_provably_idle_fleet(
        reading: dict[str, object], released: bool) -> None:
    s = spec()
    state, current, start = after_burst(s)
    decisions, _, end = run_silence(s, state, current, start, SILENT_STEPS, **reading)
    if released:
        assert end == s.min_replicas
        # Not before the silence has lasted one hold, max(scale-down window, 1 cold start)
        # >= 120 s: a shorter silence is a gap between bursts.
        hold_s = max(s.predictive.scale_down_window_s,
                     s.cold_start_s * s.predictive.keep_idle_cold_starts)
        assert hold_s >= 120.0
        early = [d for i, d in enumerate(decisions) if i * SYNC < hold_s]
        assert early and all(d.replicas == BURST_REPLICAS for d in early)
        assert decisions[-1].reason != Reason.METRICS_MISSING
    else:
        assert end == BURST_REPLICAS
        assert all(d.replicas >= BURST_REPLICAS for d in decisions)


def test_an_hour_of_silence_releases_the_burst_and_the_next_burst_is_answered() -> None:
    s = spec()
    state, current, t = after_burst(s)
    hour = 3600 // int(SYNC)
    # Without the proof (no in-flight gauge: what main did on every silent fleet) the
    # burst's 4 replicas are kept for the whole hour: 4 replica-hours.
    kept, _, kept_end = run_silence(s, state, current, t, hour, running=None)
    assert kept_end == BURST_REPLICAS
    assert sum(d.replicas for d in kept) * SYNC / 3600.0 == pytest.approx(4.0)
    # Proved idle: released after the hold, the hour costs well under half of that (one
    # replica from the release on, 4 only while the hold and the stabilisation last).
    idle, state, current = run_silence(s, state, current, t, hour)
    assert current == s.min_replicas
    assert sum(d.replicas for d in idle) * SYNC / 3600.0 < 2.0
    # The next burst is answered as the first one was: 12 req/s asks for 4 replicas at
    # once (the HPA-shaped scale-up allows 1 -> 4 in one step).
    t += hour * SYNC
    d, state = decide(busy(t, current), state, s, t)
    assert d.replicas >= BURST_REPLICAS
    assert d.reason not in (Reason.METRICS_MISSING, Reason.METRICS_STALE)


def test_a_fleet_proved_idle_is_not_released_below_min_replicas() -> None:
    s = replace(spec(), min_replicas=2)
    state, current, start = after_burst(s)
    _, _, end = run_silence(s, state, current, start, SILENT_STEPS)
    assert end == 2
