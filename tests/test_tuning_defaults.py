"""The search starts from each policy's defaults: ``nearest`` (a value's nearest point of a
knob's range), ``default_params`` (a spec's point of its policy space) and the first
candidate of every TPE study, with worked numbers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from autoscaler.core.spec import (
    Behavior,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
)
from autoscaler.sim.profiles import load_profile
from autoscaler.traces import default_workload
from autoscaler.tuning import (
    SPACES,
    Candidate,
    TuneSettings,
    apply_params,
    default_params,
    prepare,
    search,
)
from autoscaler.tuning.searching import best_of
from autoscaler.tuning.spaces import (
    ChoiceParam,
    FloatParam,
    IntParam,
    ParamValue,
    distance,
    nearest,
    unit_of,
)

HOLD = IntParam("hold_s", 0, 900, "s", "", step=15)
PERCENT = IntParam("scale_up_percent", 50, 400, "%", "", step=10)
UTIL = FloatParam("target_utilization", 0.5, 1.0, "fraction", "")
DRAIN = FloatParam("backlog_drain_s", 10.0, 300.0, "s", "", log=True)
FORECASTER = ChoiceParam("forecaster", ("trend", "naive"), "name", "")


@pytest.mark.parametrize(("param", "value", "want"), [
    # 127 / 15 = 8.47 steps -> 8 -> 120 s.
    pytest.param(HOLD, 127, 120, id="hold 127 s -> 120 s on the 15-s grid"),
    # 128 / 15 = 8.53 steps -> 9 -> 135 s.
    pytest.param(HOLD, 128, 135, id="hold 128 s -> 135 s"),
    # 7.5 steps rounds half up -> 8 -> 120 s.
    pytest.param(HOLD, 112.5, 120, id="hold half a step rounds up"),
    pytest.param(HOLD, 1200, 900, id="hold above the range -> 900 s"),
    pytest.param(HOLD, -30, 0, id="hold below the range -> 0 s"),
    # (52 - 50) / 10 = 0.2 steps -> 50 %.
    pytest.param(PERCENT, 52, 50, id="52 % -> 50 % (grid from 50)"),
    pytest.param(UTIL, 1.2, 1.0, id="utilisation 1.2 -> 1.0"),
    pytest.param(UTIL, 0.85, 0.85, id="utilisation inside the range is kept"),
    pytest.param(DRAIN, 5.0, 10.0, id="log-scale drain 5 s -> 10 s"),
    pytest.param(FORECASTER, "naive", "naive", id="a choice is kept"),
    pytest.param(FORECASTER, "prophet", "trend", id="an unknown choice -> the first"),
])
def test_nearest_point_of_a_knob(param: Any, value: ParamValue, want: ParamValue) -> None:
    got = nearest(param, value)
    assert got == pytest.approx(want) if isinstance(want, float) else got == want
    assert type(got) is type(want)


@pytest.fixture(scope="module")
def bases() -> Any:
    ctx = prepare(default_workload(seed=0, duration_s=2400.0), load_profile("llama3-8b-h100"),
                  TuneSettings(budget=1, engine="fluid"))
    return ctx.base


def _rules(*pols: ScalingPolicy, window: int = 0) -> ScalingRules:
    return ScalingRules(stabilization_window_seconds=window, policies=pols,
                        select_policy=SelectPolicy.MAX)


def test_the_replay_defaults_are_their_own_points(bases: Any) -> None:
    """The documented defaults, written out (sources in ``autoscaler.core.defaults``)."""
    want: dict[PolicyKind, dict[str, ParamValue]] = {
        # No behavior (the HPA's legacy path): the upstream rules, +100 % / +4 pods per 15 s,
        # a 300-s scale-down window at -100 % per 15 s, tolerance 0.1.
        PolicyKind.HPA_QUEUE: {"target": 5.0, "tolerance": 0.1, "scale_up_percent": 100,
                               "scale_up_pods": 4, "scale_down_window_s": 300,
                               "scale_down_percent": 100},
        PolicyKind.KEDA: {"target": 5.0, "scale_up_percent": 100, "scale_up_pods": 4,
                          "scale_down_window_s": 300, "scale_down_percent": 100},
        # 0.70 / 0.85 = 0.8235.
        PolicyKind.WVA: {"kv_cache_threshold": 0.8, "scale_up_threshold": 0.85,
                         "band": 0.8235294, "scale_down_window_s": 300,
                         "scale_down_percent": 100},
        PolicyKind.KPA: {"target_utilization": 0.7, "stable_window_s": 60.0,
                         "panic_window_percentage": 10.0, "panic_threshold_percentage": 200.0,
                         "scale_down_delay_s": 0.0, "max_scale_down_rate": 2.0},
        # The predictive policy holds releases itself (hold_s): its behaviour window is
        # not a knob of its space (it stays the replay default's 0 s).
        PolicyKind.PREDICTIVE: {"headroom_quantile": 0.9, "target_utilization": 0.85,
                                "backlog_drain_s": 30.0, "hold_s": 120, "forecaster": "trend",
                                "scale_down_band": 0.85, "scale_up_percent": 100,
                                "scale_up_pods": 4, "scale_down_percent": 100},
    }
    for kind, params in want.items():
        got = default_params(bases[kind])
        assert got == pytest.approx(params), kind


@pytest.mark.parametrize(("kind", "change", "name", "want"), [
    # 5.6 req/s of a replica's 8 req/s at the SLO = 0.7.
    pytest.param(PolicyKind.HPA, {"metrics": (MetricTarget(
        "request_rate", MetricTargetType.AVERAGE_VALUE, 5.6),), "rps": 8.0},
        "target_fraction", 0.7, id="hpa 5.6 of 8 req/s -> fraction 0.7"),
    # +200 % per 60 s is +50 % per 15 s.
    pytest.param(PolicyKind.HPA_RUNNING, {"behavior": Behavior(scale_up=_rules(
        ScalingPolicy(ScalingPolicyType.PERCENT, 200, 60),
        ScalingPolicy(ScalingPolicyType.PODS, 8, 60)))},
        "scale_up_percent", 50, id="200 % per 60 s -> 50 % per 15 s"),
    # 8 pods per 60 s is 2 per 15 s.
    pytest.param(PolicyKind.HPA_RUNNING, {"behavior": Behavior(scale_up=_rules(
        ScalingPolicy(ScalingPolicyType.PERCENT, 200, 60),
        ScalingPolicy(ScalingPolicyType.PODS, 8, 60)))},
        "scale_up_pods", 2, id="8 pods per 60 s -> 2 per 15 s"),
    # Only a Pods policy: the Percent knob takes the upstream 100 %.
    pytest.param(PolicyKind.HPA_KV, {"behavior": Behavior(scale_up=_rules(
        ScalingPolicy(ScalingPolicyType.PODS, 1, 15)))},
        "scale_up_percent", 100, id="no Percent policy -> 100 %"),
    pytest.param(PolicyKind.HPA_KV, {"behavior": Behavior(scale_up=replace(_rules(
        ScalingPolicy(ScalingPolicyType.PODS, 1, 15)), tolerance=0.05))},
        "tolerance", 0.05, id="scale-up tolerance 0.05 is the space's one tolerance"),
    # A 127-s hold is 8.47 steps of 15 s -> 120 s.
    pytest.param(PolicyKind.PREDICTIVE, {"hold": 127.0}, "hold_s", 120,
                 id="predictive hold 127 s -> 120 s"),
    # 0.6 / 0.9 = 0.667.
    pytest.param(PolicyKind.WVA, {"wva": (0.9, 0.6)}, "band", 0.6666667,
                 id="wva 0.6 / 0.9 -> band 0.667"),
])
def test_default_params_of_a_changed_spec(bases: Any, kind: PolicyKind, change: dict[str, Any],
                                          name: str, want: ParamValue) -> None:
    spec = bases[kind]
    if "metrics" in change:
        spec = replace(spec, metrics=change["metrics"],
                       capacity=replace(spec.capacity, requests_per_second=change["rps"]))
    if "behavior" in change:
        spec = replace(spec, behavior=change["behavior"])
    if "hold" in change:
        spec = replace(spec, predictive=replace(spec.predictive,
                                                scale_down_window_s=change["hold"]))
    if "wva" in change:
        up, down = change["wva"]
        spec = replace(spec, wva=replace(spec.wva, scale_up_threshold=up,
                                         scale_down_threshold=down))
    assert default_params(spec)[name] == pytest.approx(want)


@pytest.mark.parametrize("kind", list(SPACES), ids=str)
def test_the_defaults_point_replays_the_default_spec(bases: Any, kind: PolicyKind) -> None:
    """Applied back, the point gives the default spec itself. The HPA-shaped policies with a
    tolerance knob write the global 0.1 out (None in the spec means that 0.1)."""
    spec = bases[kind]
    back = apply_params(spec, default_params(spec))
    if any(p.name == "tolerance" for p in SPACES[kind]):
        assert back.behavior is not None
        assert (back.behavior.scale_up.tolerance, back.behavior.scale_down.tolerance) == (
            0.1, 0.1)
        b = spec.behavior if spec.behavior is not None else Behavior()
        spec = replace(spec, behavior=Behavior(
            scale_up=replace(b.scale_up, tolerance=0.1),
            scale_down=replace(b.scale_down, tolerance=0.1)))
    assert back == spec


def test_every_study_replays_its_defaults_first(bases: Any) -> None:
    ctx = prepare(default_workload(seed=0, duration_s=2400.0), load_profile("llama3-8b-h100"),
                  TuneSettings(policies=(PolicyKind.PREDICTIVE, PolicyKind.HPA), budget=2,
                               engine="fluid", attainment=0.9))
    cands = search(ctx)
    for kind in (PolicyKind.PREDICTIVE, PolicyKind.HPA):
        first = min((c for c in cands if c.policy == kind.value), key=lambda c: c.index)
        assert first.index == 0
        assert first.params == pytest.approx(default_params(ctx.base[kind]))
        others = [c for c in cands if c.policy == kind.value and c.index > 0]
        assert len(others) == 1 and others[0].params != first.params


# --- Ties go to the candidate nearest the defaults ------------------------------------------

@pytest.mark.parametrize(("param", "value", "want"), [
    pytest.param(HOLD, 300, 300 / 900, id="hold 300 s on [0, 900] -> 0.333"),
    pytest.param(HOLD, 900, 1.0, id="hold at the top -> 1"),
    # ln(30 / 10) / ln(300 / 10) = 1.0986 / 3.4012 = 0.323.
    pytest.param(DRAIN, 30.0, 0.3230, id="log drain 30 s on [10, 300] -> 0.323"),
    pytest.param(DRAIN, 10.0, 0.0, id="log drain at the bottom -> 0"),
    pytest.param(FORECASTER, "naive", 1.0, id="second of two choices -> 1"),
])
def test_unit_coordinate_of_a_value(param: Any, value: ParamValue, want: float) -> None:
    assert unit_of(param, value) == pytest.approx(want, abs=1e-4)


PRED_DEFAULTS: dict[str, ParamValue] = {
    "headroom_quantile": 0.9, "target_utilization": 0.85, "backlog_drain_s": 30.0,
    "hold_s": 120, "forecaster": "trend", "scale_down_band": 0.85, "scale_up_percent": 100,
    "scale_up_pods": 4, "scale_down_percent": 100}


@pytest.mark.parametrize(("change", "want"), [
    pytest.param({}, 0.0, id="the defaults themselves -> 0"),
    # (300 - 120) / 900 = 0.2.
    pytest.param({"hold_s": 300}, 0.2, id="hold 120 -> 300 s: 0.2"),
    # Any other forecaster is 1 away, whatever its place in the list.
    pytest.param({"forecaster": "last"}, 1.0, id="another forecaster: 1"),
    pytest.param({"forecaster": "ses"}, 1.0, id="a later forecaster: also 1"),
    # sqrt(0.2^2 + 1^2) = 1.0198.
    pytest.param({"hold_s": 300, "forecaster": "last"}, 1.0198, id="both: 1.0198"),
    # band 0.85 -> 0.55 on [0.5, 1.0]: 0.6; quantile 0.9 -> 0.5 on [0.5, 0.99]: 0.8163;
    # sqrt(0.3600 + 0.6664) = sqrt(1.0264) = 1.0131.
    pytest.param({"scale_down_band": 0.55, "headroom_quantile": 0.5}, 1.0131,
                 id="band and quantile: 1.0131"),
])
def test_distance_from_the_predictive_defaults(change: dict[str, ParamValue],
                                               want: float) -> None:
    other = {**PRED_DEFAULTS, **change}
    assert distance(PolicyKind.PREDICTIVE, other, PRED_DEFAULTS) == pytest.approx(
        want, abs=1e-4)


def _pc(i: int, gpu: float, att: float, events: int = 0, **change: ParamValue) -> Candidate:
    return Candidate("predictive", i, {**PRED_DEFAULTS, **change}, gpu_hours=gpu,
                     attainment=att, scale_events=events)


@pytest.mark.parametrize(("cands", "want"), [
    # Azure conv x5's case: equal GPU-hours and no scale event; the later candidate is 0.2 from
    # the defaults (hold 300 s), the earlier one 0.6 (band 0.55): the later one wins.
    pytest.param([_pc(0, 2.918, 1.0, scale_down_band=0.55), _pc(1, 2.918, 1.0, hold_s=300)],
                 1, id="equal GPU-h: the one nearer the defaults"),
    # Fewer GPU-hours still win, however far from the defaults.
    pytest.param([_pc(0, 2.917, 1.0, scale_down_band=0.55), _pc(1, 2.918, 1.0)],
                 0, id="fewer GPU-h win over nearness"),
    # Fewer scale events come before nearness.
    pytest.param([_pc(0, 2.918, 1.0, 3), _pc(1, 2.918, 1.0, 1, scale_down_band=0.55)],
                 1, id="fewer scale events come first"),
    # Equal everything and equal distance (release rate 100 -> 10 % of [10, 100]: 1.0;
    # another forecaster: 1.0), listed in reverse: the lower index.
    pytest.param([_pc(1, 2.918, 1.0, scale_down_percent=10),
                  _pc(0, 2.918, 1.0, forecaster="naive")],
                 0, id="equal distance: the lower index"),
    # None feasible: the highest attainment, then fewer GPU-h, then nearness.
    pytest.param([_pc(0, 3.0, 0.95, scale_down_band=0.55), _pc(1, 3.0, 0.95, hold_s=135)],
                 1, id="none feasible: nearest among the best attainment"),
])
def test_ties_go_to_the_candidate_nearest_the_defaults(cands: list[Candidate],
                                                       want: int) -> None:
    best, _ = best_of(cands, 0.99, PRED_DEFAULTS)
    assert best is not None and best.index == want
