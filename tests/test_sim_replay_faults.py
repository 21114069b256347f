"""Observation faults and the core fallback rule through ``replay()`` itself.

``tests/test_sim_observe.py`` checks the same faults on a closed loop in miniature; here
they go through the replay's own loop (``set_up`` / ``run_loop`` / ``summarize``), so what
is tuned offline meets what the live loop meets.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autoscaler.core.safety import Fallback
from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.core.types import Decision, Snapshot
from autoscaler.errors import SpecError
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.observe import CounterReset, Fault, PodSilent, PrometheusRestart, ScrapeGap
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import replay
from autoscaler.traces.model import Trace

FAULT_T = 1800.0
FAULTS: dict[str, tuple[Fault, ...]] = {
    "scrape gap": (ScrapeGap(FAULT_T, FAULT_T + 120.0),),
    "silent pod": (PodSilent(FAULT_T, FAULT_T + 120.0, 1),),
    "prometheus restart": (PrometheusRestart(FAULT_T, 30.0),),
    "counter reset": (CounterReset(FAULT_T + 5.0, 2),),
}
POLICIES = tuple(dict.fromkeys(PolicyKind))  # every registered policy, aliases once
SECONDS = 2700.0
RATE_RPS = 40.0


def eager(spec: Spec) -> Spec:
    """No scale-down delay anywhere: a low reading would show at once."""
    behavior = spec.behavior
    if behavior is not None:
        behavior = replace(behavior, scale_down=replace(
            behavior.scale_down, stabilization_window_seconds=0))
    return replace(spec, behavior=behavior,
                   predictive=replace(spec.predictive, scale_down_window_s=0.0),
                   kpa=replace(spec.kpa, scale_down_delay_s=0.0))


def flat_trace() -> Trace:
    return Trace(name="flat", duration_s=SECONDS,
                 rates_rps=np.full(int(SECONDS // 60), RATE_RPS), resolution_s=60.0)


def run(policy: PolicyKind, faults: tuple[Fault, ...], *,
        fallback: Fallback | None = None) -> tuple[list[tuple[float, int]], dict[str, int]]:
    """(decision time, count the loop acts on after it) for every decision, and the
    reasons."""
    profile = load_profile()
    trace = flat_trace()
    # maxReplicas 10 = 2 x 4 + 2 for 40 req/s, the cap these swings were written against
    # (the default now leaves room for 4x the busiest minute of a trace under a day).
    spec = eager(default_specs(trace, profile, capacity_for(trace, profile, 2.0),
                               ReplayOptions(max_replicas=10))[policy])
    if fallback is not None:
        spec = replace(spec, fallback=fallback)
    seen: list[tuple[float, int]] = []

    def record(t: float, snap: Snapshot, _d: Decision) -> None:
        # A snapshot's current count is what the loop acted on after the previous decision.
        seen.append((t, snap.current_replicas))

    result = replay(trace, spec, profile, engine="fluid", faults=faults, on_decision=record)
    # Shift: the count after decision i is the current count of decision i + 1.
    after = [(seen[i][0], seen[i + 1][1]) for i in range(len(seen) - 1)]
    return after, result.reasons


@pytest.mark.parametrize(("policy", "fault"), [
    pytest.param(p, f, id=f"{p.value} holds through a {f}") for p in POLICIES for f in FAULTS])
def test_every_policy_holds_and_never_scales_down_through_each_fault(
        policy: PolicyKind, fault: str) -> None:
    # A scale-down in the fault's window is allowed only where the same replay without the
    # fault scales down too: the queue-driven policies (hpa-queue, keda) swing 10 -> 1 -> 10
    # on this flat load by themselves (an empty queue reads as no demand), with or without
    # a fault; every other policy must simply hold.
    counts, _ = run(policy, FAULTS[fault])
    clean = dict(run(policy, ())[0])
    before = [n for t, n in counts if FAULT_T - 300.0 <= t < FAULT_T]
    after = [(t, n) for t, n in counts if FAULT_T <= t <= FAULT_T + 600.0]
    assert before and after
    lowered = [(t, n) for t, n in after if n < min(before[-1], clean[t])]
    assert not lowered, (before[-1], lowered)


def test_a_fault_that_leaves_the_policy_blind_is_counted_as_holds() -> None:
    # A 5-minute gap is longer than the 60-s rate window plus staleness: decisions in it
    # are invalid, and the replay reports them under their own reasons, not as scalings.
    _, reasons = run(PolicyKind.HPA, (ScrapeGap(FAULT_T, FAULT_T + 300.0),))
    _, clean = run(PolicyKind.HPA, ())
    # Every one of the 300 / 15 = 20 decisions inside the gap sees no data (more may,
    # while the rate window after it is not yet covered).
    assert sum(reasons.values()) == sum(clean.values())
    assert reasons["MetricsMissing"] - clean.get("MetricsMissing", 0) >= 300 // 15, reasons


@pytest.mark.parametrize("policy", [
    pytest.param(p, id=f"{p.value} is raised to the fallback")
    for p in (PolicyKind.HPA, PolicyKind.KPA, PolicyKind.PREDICTIVE)])
def test_the_fallback_raises_after_n_invalid_cycles_and_never_lowers(
        policy: PolicyKind) -> None:
    # A 10-minute scrape gap: with a threshold of 2 and 15-s cycles the fallback applies
    # from the second invalid decision on; it is set above the steady count, so it raises.
    clean, _ = run(policy, ())
    steady = clean[-1][1]
    fb = Fallback(replicas=steady + 3, failure_threshold=2)
    counts, reasons = run(policy, (ScrapeGap(FAULT_T, FAULT_T + 600.0),), fallback=fb)
    before = [n for t, n in counts if t < FAULT_T]
    inside = [n for t, n in counts if FAULT_T + 120.0 <= t < FAULT_T + 600.0]
    assert reasons.get("Fallback", 0) >= 1, reasons
    assert max(inside) >= steady + 3
    assert min(n for t, n in counts if t >= FAULT_T) >= before[-1]


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("scrape-gap:1h:90m", ScrapeGap(3600.0, 5400.0), id="scrape gap, units"),
    pytest.param("pod-silent:60:120", PodSilent(60.0, 120.0), id="silent pod"),
    pytest.param("restart:2h", PrometheusRestart(7200.0), id="restart"),
    pytest.param("counter-reset:30s", CounterReset(30.0), id="counter reset"),
])
def test_fault_option_parses(text: str, expected: Fault) -> None:
    from autoscaler.cli.replay import parse_fault

    assert parse_fault(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param("scrape-gap:2h:1h", id="end before start"),
    pytest.param("restart", id="no time"),
    pytest.param("restart:1h:2h", id="too many times"),
    pytest.param("meteor:1h", id="unknown kind"),
    pytest.param("counter-reset:soon", id="not a time"),
])
def test_bad_fault_option_is_one_spec_error(text: str) -> None:
    from autoscaler.cli.replay import parse_fault

    with pytest.raises(SpecError, match="--fault"):
        parse_fault(text)


def test_bad_fault_option_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from autoscaler.cli.app import main

    assert main(["replay", "--fault", "restart:later"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fault" in err[0], err
