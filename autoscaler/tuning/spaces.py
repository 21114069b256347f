"""Search spaces: which knobs of each policy are tuned, within which bounds, in which unit.

Every bound of the search lives in this module. A candidate is a plain ``dict`` of parameter
name -> value; ``apply_params`` turns it into a full ``Spec`` on top of the policy's replay
default (``autoscaler.replaying.default_specs``), so whatever is not tuned keeps the value
the comparison replays with.

Two ways to draw candidates from the same space:

* ``suggest`` hands the space to an optuna trial (TPE learns where the cheap feasible
  region is);
* ``from_unit`` maps a point of the unit cube (one coordinate per parameter) to a candidate,
  for the deterministic sweep whose candidate list is a scrambled Sobol sequence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from autoscaler.core import defaults as d
from autoscaler.core.spec import (
    Behavior,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
    Spec,
)
from autoscaler.core.types import Signal
from autoscaler.errors import SpecError
from autoscaler.forecast import MODEL_NAMES

if TYPE_CHECKING:
    import optuna

ParamValue = float | int | str
Params = dict[str, ParamValue]

TUNABLE: tuple[PolicyKind, ...] = (
    PolicyKind.PREDICTIVE, PolicyKind.HPA, PolicyKind.KPA, PolicyKind.HPA_QUEUE,
    PolicyKind.HPA_KV, PolicyKind.HPA_RUNNING, PolicyKind.KEDA, PolicyKind.WVA)
"""Policies with a search space (hindsight has none: it is replayed once for reference;
static has one knob: its count)."""

BEHAVIOR_PERIOD_S = d.HPA_DEFAULT_POLICY_PERIOD_S
"""periodSeconds of every tuned behaviour policy (15 s, the upstream default): rates are
tuned through the policy's value, which keeps the space one knob smaller per direction."""


@dataclass(frozen=True)
class FloatParam:
    """A real-valued knob in [low, high] (``log``: sampled uniformly in log space)."""

    name: str
    low: float
    high: float
    unit: str
    doc: str
    log: bool = False

    def suggest(self, trial: optuna.Trial) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def from_unit(self, u: float) -> float:
        if self.log:
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)


@dataclass(frozen=True)
class IntParam:
    """A whole-number knob in [low, high] on a grid of ``step`` (high - low is a multiple)."""

    name: str
    low: int
    high: int
    unit: str
    doc: str
    step: int = 1

    def suggest(self, trial: optuna.Trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high, step=self.step)

    def from_unit(self, u: float) -> int:
        # Equal-width cells, one per grid value: with [0, 600] step 15 there are 41 values
        # and u in [40/41, 1) maps to 600; u == 1 is clipped into the last cell.
        n = (self.high - self.low) // self.step + 1
        return self.low + min(int(u * n), n - 1) * self.step


@dataclass(frozen=True)
class ChoiceParam:
    """A categorical knob."""

    name: str
    choices: tuple[str, ...]
    unit: str
    doc: str

    def suggest(self, trial: optuna.Trial) -> str:
        return str(trial.suggest_categorical(self.name, self.choices))

    def from_unit(self, u: float) -> str:
        return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]


Param = FloatParam | IntParam | ChoiceParam

FORECASTERS: tuple[str, ...] = ("trend", *MODEL_NAMES)
"""The predictive policy's forecaster choices: the built-in trend and every
``autoscaler.forecast`` model. On traces shorter than 6 h the named models have too little
history and the trend stands in (see ``predictive.MIN_MODEL_HISTORY_S``), so there the choice
is a no-op and the search learns to ignore it."""

_SCALE_UP = (
    IntParam("scale_up_percent", 50, 400, "% of current replicas per 15 s",
             "behavior.scaleUp Percent policy (upstream default 100)", step=10),
    IntParam("scale_up_pods", 1, 10, "replicas per 15 s",
             "behavior.scaleUp Pods policy (upstream default 4); the larger of the two applies"),
)
_SCALE_DOWN = (
    IntParam("scale_down_window_s", 0, 600, "s",
             "behavior.scaleDown.stabilizationWindowSeconds (upstream default 300)", step=15),
    IntParam("scale_down_percent", 10, 100, "% of current replicas per 15 s",
             "behavior.scaleDown Percent policy (upstream default 100)", step=10),
)

_TOLERANCE = FloatParam("tolerance", 0.0, 0.2, "fraction",
                        "relative change below which the HPA does not scale, both directions "
                        "(upstream default 0.1)")

SPACES: dict[PolicyKind, tuple[Param, ...]] = {
    PolicyKind.PREDICTIVE: (
        FloatParam("headroom_quantile", 0.5, 0.99, "quantile",
                   "plan for this quantile of the forecast demand"),
        FloatParam("target_utilization", 0.5, 1.0, "fraction of capacity at the SLO",
                   "plan each replica at this fraction of its requests/s at the SLO"),
        FloatParam("backlog_drain_s", 10.0, 300.0, "s",
                   "drain a visible queue within this many seconds", log=True),
        IntParam("hold_s", 0, 900, "s",
                 "predictive.scaleDownWindowSeconds: scale down only to the max "
                 "recommendation over this window", step=15),
        ChoiceParam("forecaster", FORECASTERS, "name", "predictive.forecaster"),
        FloatParam("scale_down_band", 0.5, 1.0, "fraction of targetUtilization",
                   "predictive.scaleDownBand: release replicas only to the count at "
                   "targetUtilization x this (hysteresis)"),
        *_SCALE_UP,
        # The behaviour's scale-down window is not searched here: predictive's hold
        # (``hold_s``, the max recommendation over the window) already is that window, and
        # a second one only let the search buy in-sample feasibility with long holds twice
        # over (code, seed 0: hold 585 s + window 540 s). It stays at the replay default's
        # (0 s, ``default_params``); the rate of a release is still searched.
        _SCALE_DOWN[1],
    ),
    PolicyKind.HPA: (
        FloatParam("target_fraction", 0.3, 1.0, "fraction of capacity at the SLO",
                   "External request_rate AverageValue target = this x one replica's "
                   "requests/s at the SLO"),
        FloatParam("tolerance", 0.0, 0.2, "fraction",
                   "relative change below which the HPA does not scale, both directions "
                   "(upstream default 0.1)"),
        *_SCALE_UP,
        *_SCALE_DOWN,
    ),
    PolicyKind.HPA_QUEUE: (
        FloatParam("target", 0.5, 50.0, "requests waiting per replica",
                   "External queue_depth AverageValue target (documented start 5)", log=True),
        _TOLERANCE,
        *_SCALE_UP,
        *_SCALE_DOWN,
    ),
    PolicyKind.HPA_KV: (
        FloatParam("target", 0.2, 0.95, "fraction of the KV cache",
                   "KV-cache usage target per replica (documented start 0.8)"),
        _TOLERANCE,
        *_SCALE_UP,
        *_SCALE_DOWN,
    ),
    PolicyKind.HPA_RUNNING: (
        FloatParam("target", 1.0, 256.0, "requests running per replica",
                   "External running_requests AverageValue target (documented start 10; "
                   "256 is vLLM's default max_num_seqs, beyond which none can run)",
                   log=True),
        _TOLERANCE,
        *_SCALE_UP,
        *_SCALE_DOWN,
    ),
    PolicyKind.KEDA: (
        FloatParam("target", 0.5, 50.0, "requests waiting per replica",
                   "the Prometheus trigger's threshold (averageValue; documented start 5)",
                   log=True),
        *_SCALE_UP,
        *_SCALE_DOWN,
    ),
    PolicyKind.WVA: (
        FloatParam("kv_cache_threshold", 0.5, 0.95, "fraction of the KV cache",
                   "wva.kvCacheThreshold: token capacity = this x KV tokens (documented 0.8)"),
        FloatParam("scale_up_threshold", 0.6, 0.98, "fraction of token capacity",
                   "wva: scale up above this (documented 0.85)"),
        FloatParam("band", 0.5, 0.95, "fraction of the scale-up threshold",
                   "wva: scale down below scale_up_threshold x this (documented 0.70 / 0.85 "
                   "= 0.82)"),
        *_SCALE_DOWN,
    ),
    PolicyKind.KPA: (
        FloatParam("target_utilization", 0.3, 1.0, "fraction of capacity at the SLO",
                   "kpa.targetUtilization on the rps metric (upstream default 0.7)"),
        FloatParam("stable_window_s", 10.0, 300.0, "s",
                   "kpa.stableWindowSeconds (upstream default 60; allowed 6 s..1 h)", log=True),
        FloatParam("panic_window_percentage", 5.0, 50.0, "% of the stable window",
                   "kpa.panicWindowPercentage (upstream default 10)"),
        FloatParam("panic_threshold_percentage", 110.0, 400.0, "% of current capacity",
                   "kpa.panicThresholdPercentage (upstream default 200)"),
        FloatParam("scale_down_delay_s", 0.0, 600.0, "s",
                   "kpa.scaleDownDelaySeconds (upstream default 0)"),
        FloatParam("max_scale_down_rate", 1.5, 10.0, "x per tick",
                   "kpa.maxScaleDownRate (upstream default 2)"),
    ),
}
"""Every tuned knob per policy with its bounds and unit. Bounds are chosen inside what the
spec accepts (``core.spec``) and wide enough to contain the upstream default, so the default
configuration is a point of the space and tuning can only match or beat it in-sample."""


def space_for(policy: PolicyKind) -> tuple[Param, ...]:
    """The search space of ``policy``; SpecError for a policy without one."""
    try:
        return SPACES[PolicyKind(policy)]
    except (KeyError, ValueError) as exc:
        raise SpecError("--policy", str(policy),
                        f"one of {', '.join(k.value for k in TUNABLE)}") from exc


def suggest(trial: optuna.Trial, policy: PolicyKind) -> Params:
    """Draw one candidate for ``policy`` from an optuna trial."""
    return {p.name: p.suggest(trial) for p in space_for(policy)}


def from_unit(policy: PolicyKind, point: tuple[float, ...] | list[float]) -> Params:
    """The candidate at ``point`` of the unit cube (one coordinate per parameter, in the
    order of ``SPACES[policy]``)."""
    space = space_for(policy)
    if len(point) != len(space):
        raise ValueError(f"{policy}: {len(point)} coordinates for {len(space)} parameters")
    return {p.name: p.from_unit(float(u)) for p, u in zip(space, point, strict=True)}


def nearest(param: Param, value: ParamValue) -> ParamValue:
    """The point of ``param``'s range nearest ``value``: clipped to [low, high], on the grid
    of an ``IntParam`` (rounded half up), or a choice (the first one if ``value`` is not one).
    Worked numbers: a hold of 127 s on [0, 900] step 15 -> 8.47 steps -> 120 s; 1.2 on
    [0.5, 1.0] -> 1.0; 52 on [50, 400] step 10 -> 50."""
    if isinstance(param, ChoiceParam):
        return value if value in param.choices else param.choices[0]
    x = float(value)
    if isinstance(param, IntParam):
        k = math.floor((x - param.low) / param.step + 0.5)
        return param.low + min(max(k, 0), (param.high - param.low) // param.step) * param.step
    return min(max(x, param.low), param.high)


def unit_of(param: Param, value: ParamValue) -> float:
    """``value``'s coordinate on ``param``'s axis of the unit cube, the inverse of
    ``from_unit`` for a numeric knob (log-scaled knobs in log space); a choice's index over
    the last index (0 for a single choice). Worked numbers: 300 s on [10, 300] log ->
    1.0, 30 s -> ln 3 / ln 30 = 0.323; a hold of 300 s on [0, 900] -> 0.333."""
    if isinstance(param, ChoiceParam):
        n = len(param.choices)
        return param.choices.index(str(value)) / (n - 1) if n > 1 else 0.0
    x, lo, hi = float(value), float(param.low), float(param.high)
    if isinstance(param, FloatParam) and param.log:
        x, lo, hi = math.log(x), math.log(lo), math.log(hi)
    return (x - lo) / (hi - lo) if hi > lo else 0.0


def distance(policy: PolicyKind, a: Mapping[str, ParamValue],
             b: Mapping[str, ParamValue]) -> float:
    """Euclidean distance between two candidates of ``policy`` in the unit cube (each knob
    scaled to [0, 1] by ``unit_of``; two different choices are 1 apart, whatever their
    order). Worked number: the predictive defaults against the same point with a 300-s
    hold (120 s) and the naive forecaster: sqrt((180 / 900)^2 + 1^2) = 1.0198."""
    total = 0.0
    for p in space_for(policy):
        if isinstance(p, ChoiceParam):
            gap = 0.0 if a[p.name] == b[p.name] else 1.0
        else:
            gap = unit_of(p, a[p.name]) - unit_of(p, b[p.name])
        total += gap * gap
    return math.sqrt(total)


def _per_period(rules: ScalingRules, kind: ScalingPolicyType, fallback: int) -> float:
    """A rules' ``kind`` policy value per ``BEHAVIOR_PERIOD_S`` (a 100 %-per-60-s policy is
    25 % per 15 s); ``fallback`` when the rules have none of that kind."""
    for pol in rules.policies:
        if pol.type == kind:
            return pol.value * BEHAVIOR_PERIOD_S / pol.period_seconds
    return float(fallback)


def _behavior_params(b: Behavior | None, up: bool = True) -> Params:
    """The behaviour knobs of the space at ``b`` (None: the rules the HPA applies without a
    ``behavior``, as the upstream defaults name them: +100 % or +4 pods per 15 s, a 300-s
    scale-down window, -100 % per 15 s; the legacy path's up limit, max(2 x current, 4)
    per sync, is the same per 15-s sync)."""
    b = b if b is not None else Behavior()
    out: Params = {}
    if up:
        out["scale_up_percent"] = _per_period(b.scale_up, ScalingPolicyType.PERCENT,
                                              d.HPA_DEFAULT_SCALE_UP_PERCENT)
        out["scale_up_pods"] = _per_period(b.scale_up, ScalingPolicyType.PODS,
                                           d.HPA_DEFAULT_SCALE_UP_PODS)
    out["scale_down_window_s"] = b.scale_down.stabilization_window_seconds
    out["scale_down_percent"] = _per_period(b.scale_down, ScalingPolicyType.PERCENT,
                                            d.HPA_DEFAULT_SCALE_DOWN_PERCENT)
    return out


def _tolerance(b: Behavior | None) -> float:
    # The space has one tolerance for both directions: the scale-up one when set, as the
    # HPA applies it (a spec that sets only scaleDown's keeps the global 0.1 upward).
    if b is not None and b.scale_up.tolerance is not None:
        return b.scale_up.tolerance
    return d.HPA_TOLERANCE


def default_params(base: Spec) -> Params:
    """The point of ``base``'s policy space nearest ``base`` itself (each knob through
    ``nearest``): the configuration the comparison replays at defaults, as a candidate. The
    search replays it first for every policy alike, so a tuned winner is never worse in
    sample than the defaults when those meet the target. Worked number: the replay's HPA
    target 5.162 req/s on a replica of 7.374 req/s at the SLO -> target_fraction 0.700;
    the WVA's documented 0.70 / 0.85 -> band 0.8235."""
    kind = PolicyKind(base.policy)
    raw: Params
    if kind == PolicyKind.PREDICTIVE:
        p = base.predictive
        raw = {"headroom_quantile": p.headroom_quantile,
               "target_utilization": p.target_utilization,
               "backlog_drain_s": p.backlog_drain_s, "hold_s": p.scale_down_window_s,
               "forecaster": p.forecaster, "scale_down_band": p.scale_down_band,
               **_behavior_params(base.behavior)}
    elif kind == PolicyKind.HPA:
        raw = {"target_fraction": base.metrics[0].value / base.capacity.requests_per_second,
               "tolerance": _tolerance(base.behavior), **_behavior_params(base.behavior)}
    elif kind in (PolicyKind.HPA_QUEUE, PolicyKind.HPA_KV, PolicyKind.HPA_RUNNING,
                  PolicyKind.KEDA):
        raw = {"target": base.metrics[0].value, "tolerance": _tolerance(base.behavior),
               **_behavior_params(base.behavior)}
    elif kind == PolicyKind.WVA:
        w = base.wva
        raw = {"kv_cache_threshold": w.kv_cache_threshold,
               "scale_up_threshold": w.scale_up_threshold,
               "band": w.scale_down_threshold / w.scale_up_threshold,
               **_behavior_params(base.behavior, up=False)}
    else:
        k = base.kpa
        raw = {"target_utilization": k.target_utilization, "stable_window_s": k.stable_window_s,
               "panic_window_percentage": k.panic_window_percentage,
               "panic_threshold_percentage": k.panic_threshold_percentage,
               "scale_down_delay_s": k.scale_down_delay_s,
               "max_scale_down_rate": k.max_scale_down_rate}
    return {p.name: nearest(p, raw[p.name]) for p in space_for(kind) if p.name in raw}


def _behavior(params: Mapping[str, ParamValue], up_tol: float | None = None,
              down_tol: float | None = None) -> Behavior:
    return Behavior(
        scale_up=ScalingRules(
            stabilization_window_seconds=0,
            policies=(
                ScalingPolicy(ScalingPolicyType.PERCENT, int(params["scale_up_percent"]),
                              BEHAVIOR_PERIOD_S),
                ScalingPolicy(ScalingPolicyType.PODS, int(params["scale_up_pods"]),
                              BEHAVIOR_PERIOD_S)),
            select_policy=SelectPolicy.MAX, tolerance=up_tol),
        scale_down=ScalingRules(
            stabilization_window_seconds=int(params["scale_down_window_s"]),
            policies=(ScalingPolicy(ScalingPolicyType.PERCENT, int(params["scale_down_percent"]),
                                    BEHAVIOR_PERIOD_S),),
            select_policy=SelectPolicy.MAX, tolerance=down_tol),
    )


def apply_params(base: Spec, params: Mapping[str, ParamValue]) -> Spec:
    """``base`` (the policy's replay default) with ``params`` applied. Raises SpecError if a
    value is outside what the spec accepts (a hand-edited shard file, say)."""
    kind = PolicyKind(base.policy)
    names = {p.name for p in space_for(kind)}
    if set(params) != names:
        raise SpecError("params", sorted(params), f"exactly {', '.join(sorted(names))}")
    f = {k: v for k, v in params.items()}
    if kind == PolicyKind.PREDICTIVE:
        # The behaviour window is not in predictive's space: the base spec's is kept.
        window = (base.behavior or Behavior()).scale_down.stabilization_window_seconds
        behavior = (_behavior({"scale_down_window_s": window, **f})
                    if "scale_up_percent" in f else base.behavior)
        return replace(base, behavior=behavior, predictive=replace(
            base.predictive, headroom_quantile=float(f["headroom_quantile"]),
            target_utilization=float(f["target_utilization"]),
            backlog_drain_s=float(f["backlog_drain_s"]),
            scale_down_window_s=float(f["hold_s"]), forecaster=str(f["forecaster"]),
            scale_down_band=float(f["scale_down_band"])))
    if kind == PolicyKind.HPA:
        # Rounded to 3 decimals as the replay's default target is (what a person would type).
        target = round(base.capacity.requests_per_second * float(f["target_fraction"]), 3)
        tol = float(f["tolerance"])
        return replace(base, behavior=_behavior(f, tol, tol), metrics=(MetricTarget(
            Signal.REQUEST_RATE.value, MetricTargetType.AVERAGE_VALUE, max(target, 0.001)),))
    if kind in (PolicyKind.HPA_QUEUE, PolicyKind.HPA_KV, PolicyKind.HPA_RUNNING, PolicyKind.KEDA):
        tol_q = float(f["tolerance"]) if "tolerance" in f else None
        old = base.metrics[0]
        return replace(base, behavior=_behavior(f, tol_q, tol_q), metrics=(
            replace(old, value=max(float(f["target"]), 0.001)),))
    if kind == PolicyKind.WVA:
        up = float(f["scale_up_threshold"])
        down_only = {"scale_up_percent": d.HPA_DEFAULT_SCALE_UP_PERCENT,
                     "scale_up_pods": d.HPA_DEFAULT_SCALE_UP_PODS, **f}
        return replace(base, behavior=_behavior(down_only), wva=replace(
            base.wva, kv_cache_threshold=float(f["kv_cache_threshold"]),
            scale_up_threshold=up, scale_down_threshold=up * float(f["band"])))
    return replace(base, kpa=replace(
        base.kpa, target_utilization=float(f["target_utilization"]),
        stable_window_s=float(f["stable_window_s"]),
        panic_window_percentage=float(f["panic_window_percentage"]),
        panic_threshold_percentage=float(f["panic_threshold_percentage"]),
        scale_down_delay_s=float(f["scale_down_delay_s"]),
        max_scale_down_rate=float(f["max_scale_down_rate"])))
