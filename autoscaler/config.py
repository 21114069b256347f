"""The spec at the boundary: YAML (or a CR's ``spec``) in HPA-style camelCase, checked with
pydantic, turned into the core's plain dataclasses.

Errors name the file, the line (when the YAML says where), the field path and the allowed
values, e.g. ``spec.yaml:12: behavior.scaleUp.policies[0].periodSeconds: 0 is not allowed;
allowed: > 0 and <= 1800``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoscaler.core import defaults as d
from autoscaler.core.spec import (
    SLO,
    Behavior,
    Capacity,
    KpaParams,
    MetricTarget,
    MetricTargetType,
    PolicyKind,
    PredictiveParams,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
    Spec,
    default_scale_down_rules,
    default_scale_up_rules,
)
from autoscaler.errors import SpecError


class BoundaryModel(BaseModel):
    """Base of every user-facing model (specs, the custom resource): unknown fields are
    errors, camelCase aliases and snake_case names both accepted, instances frozen."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


_Model = BoundaryModel
"""Old private name, kept until ``controller/resource.py`` imports ``BoundaryModel``."""


class PolicyModel(BoundaryModel):
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(alias="periodSeconds", gt=0, le=d.HPA_MAX_POLICY_PERIOD_S)


class RulesModel(BoundaryModel):
    stabilization_window_seconds: int | None = Field(
        None, alias="stabilizationWindowSeconds", ge=0, le=d.HPA_MAX_STABILIZATION_S)
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(None, alias="selectPolicy")
    policies: list[PolicyModel] | None = None
    tolerance: float | None = Field(None, ge=0.0, le=1.0)

    def to_core(self, default: ScalingRules) -> ScalingRules:
        """Unset fields take the upstream default of that direction (as the API server does)."""
        return ScalingRules(
            stabilization_window_seconds=(
                self.stabilization_window_seconds
                if self.stabilization_window_seconds is not None
                else default.stabilization_window_seconds),
            policies=tuple(
                ScalingPolicy(ScalingPolicyType(p.type), p.value, p.period_seconds)
                for p in self.policies) if self.policies is not None else default.policies,
            select_policy=SelectPolicy(self.select_policy or default.select_policy),
            tolerance=self.tolerance,
        )


class BehaviorModel(BoundaryModel):
    scale_up: RulesModel | None = Field(None, alias="scaleUp")
    scale_down: RulesModel | None = Field(None, alias="scaleDown")

    def to_core(self) -> Behavior:
        up = default_scale_up_rules()
        down = default_scale_down_rules()
        return Behavior(
            scale_up=self.scale_up.to_core(up) if self.scale_up else up,
            scale_down=self.scale_down.to_core(down) if self.scale_down else down,
        )


class TargetModel(BoundaryModel):
    type: Literal["Value", "AverageValue"]
    value: float = Field(gt=0)


class MetricModel(BoundaryModel):
    metric: str = Field(min_length=1, description="A signal name, e.g. concurrency")
    target: TargetModel


class CapacityModel(BoundaryModel):
    requests_per_second: float = Field(alias="requestsPerSecond", gt=0)
    concurrency: float = Field(gt=0)


class SLOModel(BoundaryModel):
    ttft_seconds: float = Field(d.SLO_TTFT_S, alias="ttftSeconds", gt=0, le=3600)
    target_attainment: float = Field(d.SLO_TARGET_ATTAINMENT, alias="targetAttainment", gt=0,
                                     le=1)


class KpaModel(BoundaryModel):
    metric: Literal["concurrency", "rps"] = d.KPA_METRIC  # type: ignore[assignment]
    target_concurrency: float | None = Field(None, alias="targetConcurrency", gt=0)
    target_rps: float | None = Field(None, alias="targetRps", gt=0)
    target_utilization: float = Field(d.KPA_TARGET_UTILIZATION, alias="targetUtilization",
                                      gt=0, le=1)
    stable_window_s: float = Field(d.KPA_STABLE_WINDOW_S, alias="stableWindowSeconds", ge=5,
                                   le=3600)
    panic_window_percentage: float = Field(d.KPA_PANIC_WINDOW_PERCENTAGE,
                                           alias="panicWindowPercentage", ge=1, le=100)
    panic_threshold_percentage: float = Field(d.KPA_PANIC_THRESHOLD_PERCENTAGE,
                                              alias="panicThresholdPercentage", ge=110, le=1000)
    max_scale_up_rate: float = Field(d.KPA_MAX_SCALE_UP_RATE, alias="maxScaleUpRate", gt=1)
    max_scale_down_rate: float = Field(d.KPA_MAX_SCALE_DOWN_RATE, alias="maxScaleDownRate",
                                       gt=1)
    scale_down_delay_s: float = Field(d.KPA_SCALE_DOWN_DELAY_S, alias="scaleDownDelaySeconds",
                                      ge=0, le=3600)


class PredictiveModel(BoundaryModel):
    headroom_quantile: float = Field(d.PREDICTIVE_HEADROOM_QUANTILE, alias="headroomQuantile",
                                     ge=0.5, le=0.999)
    target_utilization: float = Field(d.PREDICTIVE_TARGET_UTILIZATION,
                                      alias="targetUtilization", gt=0, le=1)
    history_s: float = Field(d.PREDICTIVE_HISTORY_S, alias="historySeconds", ge=60)
    backlog_drain_s: float = Field(d.PREDICTIVE_BACKLOG_DRAIN_S, alias="backlogDrainSeconds",
                                   ge=1, le=3600)
    scale_down_window_s: float = Field(d.PREDICTIVE_SCALE_DOWN_WINDOW_S,
                                       alias="scaleDownWindowSeconds", ge=0, le=86400)
    forecaster: str = "trend"


class SpecModel(BoundaryModel):
    """The user-facing autoscaler spec (also the CRD's ``spec`` minus the target reference)."""

    policy: Literal["hpa", "kpa", "predictive", "oracle", "static"] = "predictive"
    min_replicas: int = Field(1, alias="minReplicas", ge=0, le=d.MAX_REPLICAS_LIMIT)
    max_replicas: int = Field(alias="maxReplicas", ge=1, le=d.MAX_REPLICAS_LIMIT)
    metrics: list[MetricModel] = Field(default_factory=list)
    behavior: BehaviorModel | None = None
    slo: SLOModel = Field(default_factory=lambda: SLOModel.model_validate({}))
    capacity: CapacityModel
    cold_start_seconds: float = Field(d.COLD_START_S, alias="coldStartSeconds", ge=0, le=3600)
    sync_period_seconds: float = Field(d.HPA_SYNC_PERIOD_S, alias="syncPeriodSeconds", ge=1,
                                       le=3600)
    max_metric_age_seconds: float = Field(d.MAX_METRIC_AGE_S, alias="maxMetricAgeSeconds",
                                          ge=1, le=86400)
    static_replicas: int | None = Field(None, alias="staticReplicas", ge=0)
    kpa: KpaModel = Field(default_factory=lambda: KpaModel.model_validate({}))
    predictive: PredictiveModel = Field(default_factory=lambda: PredictiveModel.model_validate({}))

    def to_core(self) -> Spec:
        return Spec(
            policy=PolicyKind(self.policy),
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            metrics=tuple(MetricTarget(m.metric, MetricTargetType(m.target.type),
                                       m.target.value) for m in self.metrics),
            behavior=self.behavior.to_core() if self.behavior is not None else None,
            slo=SLO(self.slo.ttft_seconds, self.slo.target_attainment),
            capacity=Capacity(self.capacity.requests_per_second, self.capacity.concurrency),
            cold_start_s=self.cold_start_seconds,
            sync_period_s=self.sync_period_seconds,
            max_metric_age_s=self.max_metric_age_seconds,
            static_replicas=self.static_replicas,
            kpa=KpaParams(**self.kpa.model_dump()),
            predictive=PredictiveParams(**self.predictive.model_dump()),
        )


def field_path(loc: tuple[int | str, ...]) -> str:
    """('behavior', 'scaleUp', 'policies', 0, 'periodSeconds') -> behavior.scaleUp.policies[0]..."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


_path_of = field_path
"""Old private name, kept until ``controller/resource.py`` imports ``field_path``."""


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node found along ``loc``."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(
                node.value):
            match = node.value[part]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def _spec_from_data(data: Any, source: str, root: yaml.Node | None) -> Spec:
    if not isinstance(data, dict):
        raise SpecError("(document)", type(data).__name__, "a mapping of spec fields",
                        source=source)
    payload = data.get("spec", data) if "spec" in data and isinstance(data["spec"], dict) else data
    prefix: tuple[str, ...] = ("spec",) if payload is not data else ()
    try:
        return SpecModel.model_validate(payload).to_core()
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _line_of(root, prefix + loc)
        where = f"{source}:{line}" if line is not None else source
        allowed = str(err["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
        raise SpecError(field_path(loc) or "(spec)", err.get("input"), allowed,
                        source=where) from exc
    except SpecError as exc:
        raise SpecError(exc.field, exc.value, exc.allowed, source=source) from exc


def parse_spec(text: str, *, source: str = "<spec>") -> Spec:
    """Parse a spec from YAML text (a bare spec, or an object with a ``spec`` key)."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise SpecError("(yaml)", str(getattr(exc, "problem", exc)), "valid YAML",
                        source=where) from exc
    return _spec_from_data(data, source, root)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("(file)", str(p), "a readable YAML file", source=str(p)) from exc
    return parse_spec(text, source=str(p))


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The user-facing (camelCase) form of a core spec, e.g. for ``--emit-spec``."""
    def rules(r: ScalingRules) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stabilizationWindowSeconds": r.stabilization_window_seconds,
            "selectPolicy": r.select_policy.value,
            "policies": [{"type": p.type.value, "value": p.value,
                          "periodSeconds": p.period_seconds} for p in r.policies],
        }
        if r.tolerance is not None:
            out["tolerance"] = r.tolerance
        return out

    doc: dict[str, Any] = {
        "policy": spec.policy.value,
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "capacity": {"requestsPerSecond": spec.capacity.requests_per_second,
                     "concurrency": spec.capacity.concurrency},
        "slo": {"ttftSeconds": spec.slo.ttft_seconds,
                "targetAttainment": spec.slo.target_attainment},
        "coldStartSeconds": spec.cold_start_s,
        "syncPeriodSeconds": spec.sync_period_s,
        "maxMetricAgeSeconds": spec.max_metric_age_s,
    }
    if spec.metrics:
        doc["metrics"] = [{"metric": m.signal, "target": {"type": m.type.value,
                                                          "value": m.value}}
                          for m in spec.metrics]
    if spec.behavior is not None:
        doc["behavior"] = {"scaleUp": rules(spec.behavior.scale_up),
                           "scaleDown": rules(spec.behavior.scale_down)}
    if spec.static_replicas is not None:
        doc["staticReplicas"] = spec.static_replicas
    k = spec.kpa
    doc["kpa"] = {k2: v for k2, v in {
        "metric": k.metric, "targetConcurrency": k.target_concurrency,
        "targetRps": k.target_rps, "targetUtilization": k.target_utilization,
        "stableWindowSeconds": k.stable_window_s,
        "panicWindowPercentage": k.panic_window_percentage,
        "panicThresholdPercentage": k.panic_threshold_percentage,
        "maxScaleUpRate": k.max_scale_up_rate, "maxScaleDownRate": k.max_scale_down_rate,
        "scaleDownDelaySeconds": k.scale_down_delay_s}.items() if v is not None}
    p = spec.predictive
    doc["predictive"] = {
        "headroomQuantile": p.headroom_quantile, "targetUtilization": p.target_utilization,
        "historySeconds": p.history_s, "backlogDrainSeconds": p.backlog_drain_s,
        "scaleDownWindowSeconds": p.scale_down_window_s, "forecaster": p.forecaster}
    return doc
