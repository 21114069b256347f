"""The fake Prometheus' query memo (``FakePrometheus(cache=True)``, the replay's default)
answers exactly what recomputing every query from the stored samples answers
(``cache=False``): same raw readings, same judged observations, same replays."""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import pytest

from autoscaler.core.spec import PolicyKind
from autoscaler.core.types import Decision, Snapshot
from autoscaler.observation import RawTarget
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.fluid_engine import FluidEngine
from autoscaler.sim.observe import (
    CounterReset,
    FakePrometheus,
    Fault,
    PodSilent,
    PrometheusRestart,
    ScrapeGap,
)
from autoscaler.sim.profiles import load_profile
from autoscaler.traces.synthetic import default_workload
from autoscaler.traces.window import window_trace

replay_module = importlib.import_module("autoscaler.sim.replay")
"""The module (``autoscaler.sim.replay`` the name is the function)."""

FAULTS: dict[str, tuple[Fault, ...]] = {
    "none": (),
    "scrape gap": (ScrapeGap(400.0, 520.0),),
    "pod silent": (PodSilent(300.0, 700.0, pods=2),),
    "restart": (PrometheusRestart(450.0, 40.0),),
    "counter reset": (CounterReset(380.0, pods=1),),
    "all four": (ScrapeGap(200.0, 260.0), PodSilent(300.0, 500.0, 1),
                 PrometheusRestart(610.0, 30.0), CounterReset(760.0, 2)),
}


def same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (an empty histogram's quantile is NaN in both)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def raw_equal(a: RawTarget, b: RawTarget) -> bool:
    return (a.at == b.at and a.window_s == b.window_s and a.present == b.present
            and a.series == b.series and list(a.values) == list(b.values)
            and all(same(a.values[s], b.values[s]) for s in a.values))


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
@pytest.mark.parametrize("window", [60.0, 50.0], ids=["60-s window", "50-s window"])
def test_memo_answers_what_recomputing_answers(fault: str, window: float) -> None:
    # A fleet that grows and shrinks (new pods, removed pods), queried every 2 s and at odd
    # moments between scrapes, and long after the last scrape (the lookback running out).
    profile = load_profile()
    rng = np.random.default_rng(3)
    rates = rng.gamma(2.0, 10.0, size=1200)
    eng = FluidEngine(profile, rates, prompt_tokens=300.0, output_tokens=100.0,
                      slo_ttft_s=2.0, initial_replicas=3)
    fast = FakePrometheus(rate_window_s=window, faults=FAULTS[fault])
    slow = FakePrometheus(rate_window_s=window, faults=FAULTS[fault], cache=False)
    fleet = {0.0: 3, 150.0: 6, 330.0: 4, 480.0: 7, 700.0: 2, 900.0: 5}
    compared = 0
    for step in range(1, 1200 * 10 // 13):
        t = step * 1.3
        eng.advance(t)
        for at, n in fleet.items():
            if at <= t < at + 1.3:
                eng.set_target(n, t)
        if (t // 15.0) != ((t - 1.3) // 15.0) and not 1000.0 < t < 1400.0:  # a scrape
            s = eng.sample(t)
            fast.scrape(s)
            slow.scrape(s)
        a, b = fast.raw(t), slow.raw(t)
        assert raw_equal(a, b), (t, a, b)
        oa, ob = fast.observe(t), slow.observe(t)
        assert list(oa.readings) == list(ob.readings)
        assert all(ra.status == rb.status and same(ra.value, rb.value)
                   and ra.observed_at == rb.observed_at and ra.detail == rb.detail
                   for ra, rb in zip(oa.readings.values(), ob.readings.values(), strict=True))
        assert (oa.newest_sample, oa.pods_reporting, oa.coverage, oa.pods_on_time) == (
            ob.newest_sample, ob.pods_reporting, ob.coverage, ob.pods_on_time)
        ready = fast.ready()
        assert fast.snapshot(t, ready, ready) == slow.snapshot(t, ready, ready)
        compared += 1
    assert compared > 900


@pytest.mark.parametrize("policy", [PolicyKind.KPA, PolicyKind.HPA, PolicyKind.HPA_QUEUE],
                         ids=lambda p: p.value)
def test_replay_with_the_memo_equals_the_replay_without(
        policy: PolicyKind, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = window_trace(default_workload(), 3600.0, 1800.0)
    profile = load_profile()
    options = ReplayOptions()
    spec = default_specs(trace, profile, capacity_for(trace, profile, options.slo_ttft_s),
                         options)[policy]
    faults = (ScrapeGap(300.0, 420.0), CounterReset(900.0, 1), PrometheusRestart(1200.0))

    def run(cache: bool) -> tuple[list[tuple[float, Snapshot, Decision]], Any]:
        seen: list[tuple[float, Snapshot, Decision]] = []

        class Prom(FakePrometheus):
            def __init__(self, **kw: Any) -> None:
                super().__init__(**kw, cache=cache)

        monkeypatch.setattr(replay_module, "FakePrometheus", Prom)
        res = replay_module.replay(trace, spec, profile, engine="fluid", faults=faults,
                                   on_decision=lambda t, s, d: seen.append((t, s, d)))
        return seen, res.summary

    fast, fast_summary = run(True)
    slow, slow_summary = run(False)
    assert len(fast) == len(slow) > 100
    for (t1, s1, d1), (t2, s2, d2) in zip(fast, slow, strict=True):
        assert (t1, s1, d1) == (t2, s2, d2)
    assert fast_summary == slow_summary
