"""The spec at the boundary: YAML (or a CR's ``spec``) in HPA-style camelCase, checked with
pydantic, turned into the core's plain dataclasses.

Errors name the file, the line (when the YAML says where), the field path and the allowed
values, e.g. ``spec.yaml:12: behavior.scaleUp.policies[0].periodSeconds: 0 is not allowed;
allowed: > 0 and <= 1800``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from autoscaler.core import defaults as d
from autoscaler.core.spec import (
    SLO,
    Behavior,
    Capacity,
    KedaParams,
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
    WvaParams,
    default_behavior,
    default_scale_down_rules_for,
    default_scale_up_rules,
    prior_capacity,
)
from autoscaler.errors import SpecError, short_repr


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> X; ``list[X]`` -> X (a list index in a location is skipped)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin is list and args:
        return _unwrap(args[0])
    if len(args) == 1 and origin is not Literal:
        return _unwrap(args[0])
    return annotation


class BoundaryModel(BaseModel):
    """Base of every user-facing model (specs, the custom resource): unknown fields are
    errors, camelCase aliases and snake_case names both accepted, instances frozen."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Strict numbers at the boundary: pydantic would read ``true`` as 1 and ``"4"`` as 4
        for a numeric field; a user who wrote either meant something else."""
        if isinstance(value, (bool, str)) and info.field_name is not None:
            annotation = _unwrap(cls.model_fields[info.field_name].annotation)
            if annotation in (int, float):
                raise ValueError("a number, not " + ("true/false" if isinstance(value, bool)
                                                     else "a string"))
        return value


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

    def to_core(self, policy: PolicyKind) -> Behavior:
        """A side left out gets the policy's default rules (``default_scale_down_rules_for``:
        the HPA's, but the predictive policy's own scale-down window)."""
        up = default_scale_up_rules()
        down = default_scale_down_rules_for(policy)
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
    ttft_seconds_per_prompt_token: float = Field(
        d.SLO_TTFT_S_PER_PROMPT_TOKEN, alias="ttftSecondsPerPromptToken", ge=0, le=0.01,
        description="Extra TTFT allowed per prompt token, seconds per token (0..0.01): the "
        "objective is ttftSeconds + prompt tokens x this.")


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
    scale_down_band: float = Field(
        d.PREDICTIVE_SCALE_DOWN_BAND, alias="scaleDownBand", ge=0.5, le=1,
        description="Hysteresis, a fraction 0.5..1 of targetUtilization: replicas are "
        "released only to the count that would run at targetUtilization x this (0.85 x 0.85 "
        "= 0.72 by default); 1 = no band")
    keep_idle_cold_starts: float = Field(
        d.PREDICTIVE_KEEP_IDLE_COLD_STARTS, alias="keepIdleColdStarts", ge=0, le=10,
        description="Keep a replica no longer needed for this many cold starts (0..10, in "
        "units of coldStartSeconds) before releasing it; the hold is the longer of this and "
        "scaleDownWindowSeconds")
    learn_capacity: bool = Field(
        d.PREDICTIVE_LEARN_CAPACITY, alias="learnCapacity", strict=True,
        description="Learn one replica's capacity at the SLO from the fleet (capacity is "
        "then the prior); false plans on capacity as given")


class KedaModel(BoundaryModel):
    activation_threshold: float = Field(
        d.KEDA_ACTIVATION_THRESHOLD, alias="activationThreshold", ge=0, le=1e12,
        description="KEDA activationThreshold, in the trigger metric's unit (0..1e12): at or "
        "below it the scaler is inactive")
    cooldown_s: float = Field(
        d.KEDA_COOLDOWN_S, alias="cooldownPeriod", ge=0, le=86400,
        description="KEDA cooldownPeriod, seconds (0..86400): inactive this long before "
        "scaling to minReplicas when that is 0")


class WvaModel(BoundaryModel):
    kv_cache_threshold: float = Field(
        d.WVA_KV_CACHE_THRESHOLD, alias="kvCacheThreshold", gt=0, le=1,
        description="llm-d WVA: one replica's token capacity is this fraction (0..1, 0 "
        "excluded) of its KV-cache tokens, limited by compute (capacity.concurrency)")
    scale_up_threshold: float = Field(
        d.WVA_SCALE_UP_THRESHOLD, alias="scaleUpThreshold", gt=0, le=1,
        description="Scale up when demand exceeds this fraction (0..1, 0 excluded) of the "
        "fleet's token capacity")
    scale_down_threshold: float = Field(
        d.WVA_SCALE_DOWN_THRESHOLD, alias="scaleDownThreshold", gt=0, le=1,
        description="Scale down when demand is below this fraction (0..1, 0 excluded, at "
        "most scaleUpThreshold) of the fleet's token capacity")
    # scaleDownThreshold <= scaleUpThreshold is the core's check (``WvaParams.validate``),
    # so its error names the field and the range it has there, e.g. "> 0 and <= 0.85".


class SpecModel(BoundaryModel):
    """The user-facing autoscaler spec (also the CRD's ``spec`` minus the target reference)."""

    policy: Literal["hpa", "kpa", "predictive", "hindsight", "oracle", "static", "hpa-queue",
                    "hpa-kv", "keda", "wva", "hpa-running"] = "predictive"
    min_replicas: int = Field(1, alias="minReplicas", ge=0, le=d.MAX_REPLICAS_LIMIT)
    max_replicas: int = Field(alias="maxReplicas", ge=1, le=d.MAX_REPLICAS_LIMIT)
    metrics: list[MetricModel] = Field(default_factory=list)
    behavior: BehaviorModel | None = None
    slo: SLOModel = Field(default_factory=lambda: SLOModel.model_validate({}))
    capacity: CapacityModel | None = Field(
        None, description="What one replica serves at the SLO. Optional: left out, the "
        "predictive policy learns it from the fleet, starting from a documented prior ("
        f"{d.CAPACITY_PRIOR_RPS:g} requests/s, {d.CAPACITY_PRIOR_CONCURRENCY:g} in flight) "
        "and never scaling down before the fleet has shown its capacity; required by wva "
        "and by kpa without its own target")
    cold_start_seconds: float = Field(d.COLD_START_S, alias="coldStartSeconds", ge=0, le=3600)
    sync_period_seconds: float = Field(d.HPA_SYNC_PERIOD_S, alias="syncPeriodSeconds", ge=1,
                                       le=3600)
    max_metric_age_seconds: float = Field(d.MAX_METRIC_AGE_S, alias="maxMetricAgeSeconds",
                                          ge=1, le=86400)
    static_replicas: int | None = Field(None, alias="staticReplicas", ge=0)
    kpa: KpaModel = Field(default_factory=lambda: KpaModel.model_validate({}))
    predictive: PredictiveModel = Field(default_factory=lambda: PredictiveModel.model_validate({}))
    keda: KedaModel = Field(default_factory=lambda: KedaModel.model_validate({}))
    wva: WvaModel = Field(default_factory=lambda: WvaModel.model_validate({}))

    def to_core(self) -> Spec:
        return Spec(
            policy=PolicyKind(self.policy),
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            metrics=tuple(MetricTarget(m.metric, MetricTargetType(m.target.type),
                                       m.target.value) for m in self.metrics),
            behavior=(self.behavior.to_core(PolicyKind(self.policy)) if self.behavior is not None
                      else default_behavior(PolicyKind(self.policy))),
            slo=SLO(self.slo.ttft_seconds, self.slo.target_attainment,
                    self.slo.ttft_seconds_per_prompt_token),
            capacity=(Capacity(self.capacity.requests_per_second, self.capacity.concurrency)
                      if self.capacity is not None else prior_capacity()),
            cold_start_s=self.cold_start_seconds,
            sync_period_s=self.sync_period_seconds,
            max_metric_age_s=self.max_metric_age_seconds,
            static_replicas=self.static_replicas,
            kpa=KpaParams(**self.kpa.model_dump()),
            predictive=PredictiveParams(**self.predictive.model_dump()),
            keda=KedaParams(**self.keda.model_dump()),
            wva=WvaParams(**self.wva.model_dump()),
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


MAX_SPEC_BYTES = 1 << 20
"""A spec is a few hundred bytes; 1 MiB leaves room for comments and keeps a wrong file (a
trace, a binary) from being parsed at all."""
MAX_YAML_NODES = 100_000
"""Nodes after expanding aliases: eight nested anchors of nine aliases each are 43 million
nodes built from 600 bytes (a "billion laughs" document)."""
MAX_ERRORS_CHARS = 480
"""Errors are listed together up to this many characters, then counted ("and 3 more")."""
CUSTOM_RESOURCE_KIND = "InferenceAutoscaler"
"""``controller.resource.KIND``, repeated here because the resource module imports this one."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last value silently) and YAML 1.2 numbers like ``1e3`` are numbers (YAML 1.1
    reads them as strings, which strict numeric fields would then refuse)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line "
                    f"{first.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


@dataclass(frozen=True)
class SpecDocument:
    """One YAML document read from a spec file: the data, and its node tree for line
    numbers."""

    source: str
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: tuple[int | str, ...]) -> int | None:
        return _line_of(self.root, loc)

    def where(self, loc: tuple[int | str, ...]) -> str:
        line = self.line_of(loc)
        return f"{self.source}:{line}" if line is not None else self.source


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """Node count with every alias expanded, stopping as soon as it passes ``limit``."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        for child in children:
            total += size(child, depth + 1)
            if total > limit:
                break
        sizes[id(node)] = total
        return total

    return size(root, 0)


def read_spec_text(text: str, *, source: str = "<spec>") -> SpecDocument:
    """Parse YAML text as one spec document: one line naming the line for broken YAML, a
    repeated key, a second document, or a document too large to be a spec."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError("(file)", len(text), "", source=source,
                        problem=f"{len(text):,} characters; a spec has at most "
                        f"{MAX_SPEC_BYTES:,}")
    loader: _UniqueKeyLoader | None = None
    try:
        loader = _UniqueKeyLoader(text)  # reads the stream: a control character fails here
        root = loader.get_single_node()
        if root is not None and _expanded_nodes(root, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise SpecError("(yaml)", None, "", source=source,
                            problem=f"anchors and aliases expand to more than "
                            f"{MAX_YAML_NODES:,} nodes; write the values out")
        data = loader.construct_document(root) if root is not None else None
    except yaml.composer.ComposerError as exc:
        if "expected a single document" in str(exc.context or ""):
            mark = exc.problem_mark
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            raise SpecError("(yaml)", None, "", source=where,
                            problem="a second YAML document starts here; a spec file holds "
                            "one document (no ---)") from exc
        raise _yaml_error(exc, text, source) from exc
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, source) from exc
    except RecursionError as exc:
        raise SpecError("(yaml)", None, "", source=source,
                        problem="nested too deeply to be a spec") from exc
    finally:
        if loader is not None:
            loader.dispose()
    return SpecDocument(source, data, root)


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> SpecError:
    mark = getattr(exc, "problem_mark", None)
    line: int | None = mark.line + 1 if mark is not None else None
    position = getattr(exc, "position", None)  # a ReaderError: a control character
    if line is None and isinstance(position, int):
        line = text.count("\n", 0, position) + 1
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    where = f"{source}:{line}" if line is not None else source
    return SpecError("(yaml)", None, "valid YAML", source=where,
                     problem=f"not valid YAML: {short_repr(str(problem))[1:-1]}")


def read_spec_file(path: str | Path) -> SpecDocument:
    """Read one spec document from ``path``: a missing, unreadable, binary or oversized file
    is one line naming it."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError("(file)", str(p), "a readable YAML file", source=str(p),
                        problem=f"cannot read it ({exc.strerror or exc}); expected a "
                        "readable YAML file") from exc
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError("(file)", len(raw), "", source=str(p),
                        problem=f"over {MAX_SPEC_BYTES:,} bytes; a spec is a short YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError("(file)", raw[exc.start], "", source=f"{p}:{line}",
                        problem=f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); expected a "
                        "YAML spec, not a binary or differently encoded file") from exc
    return read_spec_text(text, source=str(p))


_BOUND_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def allowed_range(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """The allowed range of the numeric field at ``loc`` in words ("a whole number >= 0 and
    <= 100000"), from the model's own constraints; None for other fields."""
    current: Any = model
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = next((f for name, f in current.model_fields.items()
                     if part in (name, f.alias)), None)
        if info is None:
            return None
        current = _unwrap(info.annotation)
    if info is None or current not in (int, float):
        return None
    bounds = []
    for meta in info.metadata:
        for attr, word in _BOUND_WORDS.items():
            bound = getattr(meta, attr, None)
            if bound is not None:
                bounds.append(f"{word} {bound:g}")
    noun = "a whole number" if current is int else "a number"
    return noun + (" " + " and ".join(bounds) if bounds else "")


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _reworded(msg: str) -> str:
    msg = msg.removeprefix("Input should be ").removeprefix("Value error, ")
    for long, short in (("greater than or equal to", ">="), ("greater than", ">"),
                        ("less than or equal to", "<="), ("less than", "<")):
        msg = msg.replace(long, short)
    return msg


@dataclass(frozen=True)
class _Problem:
    line: int
    where: str
    field: str
    value: object
    allowed: str
    problem: str | None

    def brief(self, source: str) -> str:
        at = self.where.removeprefix(source).removeprefix(":")
        head = f"line {at} " if at else ""
        what = self.problem or f"{short_repr(self.value, 60)} ({self.allowed})"
        return f"{head}{self.field}: {what}"


def _problems(exc: ValidationError, doc: SpecDocument, prefix: tuple[str | int, ...],
              model: type[BaseModel]) -> list[_Problem]:
    """Every pydantic error, in document order, each naming its field and allowed range."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = field_path(loc) or "(spec)"
        if err["type"] == "missing":
            # pydantic's input here is the whole parent mapping: name the field instead.
            at = prefix + loc[:-1]
            out.append(_Problem(doc.line_of(at) or 0, doc.where(at), field, None, "required",
                                "required, but missing"))
            continue
        allowed = _reworded(str(err["msg"]))
        value = err.get("input")
        rng = allowed_range(model, loc) if loc else None
        if not loc:
            # A cross-field rule ("minReplicas must be <= maxReplicas"): blame the field the
            # message starts with and show its value, not the whole mapping.
            first = allowed.split(" ", 1)[0]
            named = tuple(first.split("."))
            if any(named[0] in (name, f.alias) for name, f in model.model_fields.items()):
                loc, field = named, first
                value = _lookup(doc.data, prefix + loc)
        if err["type"] == "extra_forbidden":
            out.append(_Problem(doc.line_of(prefix + loc) or 0, doc.where(prefix + loc),
                                field, None, "a known field",
                                "no such field (check its spelling and indentation)"))
            continue
        if rng is not None:
            allowed = rng + ("" if "not" not in allowed else f" ({allowed})")
        out.append(_Problem(doc.line_of(prefix + loc) or 0, doc.where(prefix + loc), field,
                            value, allowed, None))
    return sorted(out, key=lambda p: p.line)


def validation_error(exc: ValidationError, doc: SpecDocument,
                     prefix: tuple[str | int, ...] = (),
                     model: type[BaseModel] | None = None, name_prefix: str = "") -> SpecError:
    """One ``SpecError`` listing every error pydantic found (bounded: the first ones, then a
    count); the first error's file, line and field are its own. ``prefix`` locates the
    validated mapping in the document; ``name_prefix`` goes before every field name."""
    items = [replace(p, field=name_prefix + p.field)
             for p in _problems(exc, doc, prefix, model or SpecModel)]
    first = items[0]
    rest: list[str] = []
    used = 0
    for i, item in enumerate(items[1:]):
        text = item.brief(doc.source)
        if used + len(text) > MAX_ERRORS_CHARS:
            rest.append(f"and {len(items) - 1 - i} more")
            break
        rest.append(text)
        used += len(text)
    return SpecError(first.field, first.value, first.allowed, source=first.where,
                     also=tuple(rest), problem=first.problem)


def spec_from_document(doc: SpecDocument) -> Spec:
    """Validate a bare spec (or an ``InferenceAutoscaler``'s ``spec``) into the core type."""
    data = doc.data
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        raise SpecError("(document)", data, "", source=doc.where(()),
                        problem=f"got {got}; expected a mapping of spec fields (policy, "
                        "maxReplicas, capacity, ...)")
    kind = data.get("kind")
    if kind is not None and kind != CUSTOM_RESOURCE_KIND:
        api = data.get("apiVersion")
        got = f"{short_repr(kind)[1:-1] if isinstance(kind, str) else short_repr(kind)}"
        if isinstance(api, str):
            got += f" ({short_repr(api)[1:-1]})"
        raise SpecError("kind", kind, "", source=doc.where(("kind",)),
                        problem=f"got a {got}; expected a bare autoscaler spec (policy, "
                        f"maxReplicas, capacity, ...) or an {CUSTOM_RESOURCE_KIND} "
                        "(inference.autoscaler.dev)")
    payload = data["spec"] if isinstance(data.get("spec"), dict) else data
    prefix: tuple[str, ...] = ("spec",) if payload is not data else ()
    try:
        return SpecModel.model_validate(payload).to_core()
    except ValidationError as exc:
        raise validation_error(exc, doc, prefix) from exc
    except SpecError as exc:  # a cross-field rule of the core spec
        loc = tuple(exc.field.split("[")[0].split("."))
        raise SpecError(exc.field, exc.value, exc.allowed, problem=exc.problem,
                        source=doc.where(prefix + loc)) from exc


def parse_spec(text: str, *, source: str = "<spec>") -> Spec:
    """Parse a spec from YAML text (a bare spec, or an object with a ``spec`` key)."""
    return spec_from_document(read_spec_text(text, source=source))


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    return spec_from_document(read_spec_file(path))


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
        "slo": {"ttftSeconds": spec.slo.ttft_seconds,
                "targetAttainment": spec.slo.target_attainment,
                "ttftSecondsPerPromptToken": spec.slo.ttft_seconds_per_prompt_token},
        "coldStartSeconds": spec.cold_start_s,
        "syncPeriodSeconds": spec.sync_period_s,
        "maxMetricAgeSeconds": spec.max_metric_age_s,
    }
    if spec.capacity.known:
        doc["capacity"] = {"requestsPerSecond": spec.capacity.requests_per_second,
                           "concurrency": spec.capacity.concurrency}
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
        "scaleDownWindowSeconds": p.scale_down_window_s, "forecaster": p.forecaster,
        "scaleDownBand": p.scale_down_band, "keepIdleColdStarts": p.keep_idle_cold_starts,
        "learnCapacity": p.learn_capacity}
    doc["keda"] = {"activationThreshold": spec.keda.activation_threshold,
                   "cooldownPeriod": spec.keda.cooldown_s}
    doc["wva"] = {"kvCacheThreshold": spec.wva.kv_cache_threshold,
                  "scaleUpThreshold": spec.wva.scale_up_threshold,
                  "scaleDownThreshold": spec.wva.scale_down_threshold}
    return doc


# --- PromQL pieces users type: durations and label matchers ---------------------------------

_DURATION = re.compile(r"^(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?"
                       r"(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$")
_DURATION_UNITS_S = (365 * 86_400.0, 7 * 86_400.0, 86_400.0, 3600.0, 60.0, 1.0, 0.001)
MAX_PROMETHEUS_DURATION_S = 365 * 86_400.0
"""Longer windows are typos (and Prometheus' int64 milliseconds overflow near 292 years)."""
DURATION_ALLOWED = ("a Prometheus duration > 0 and <= 1y: units y, w, d, h, m, s, ms in that "
                    "order, e.g. 1m, 90s, 1h30m")


def prometheus_duration(field: str, text: str) -> float:
    """Seconds of a Prometheus duration (``1m``, ``1h30m``, ``500ms``) as ``promtool`` reads
    it; anything else is a ``SpecError`` naming ``field``."""
    m = _DURATION.match(text) if isinstance(text, str) and text else None
    if m is None:
        raise SpecError(field, text, DURATION_ALLOWED)
    seconds = sum(int(g) * unit for g, unit in zip(m.groups(), _DURATION_UNITS_S, strict=True)
                  if g is not None)
    if not 0 < seconds <= MAX_PROMETHEUS_DURATION_S:
        raise SpecError(field, text, DURATION_ALLOWED)
    return seconds


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPERATOR = re.compile(r"\s*(=~|!~|!=|=)\s*")
_ESCAPES = {"a", "b", "f", "n", "r", "t", "v", "\\"}
MATCHERS_ALLOWED = ('comma-separated PromQL label matchers, each name, one of = != =~ !~, '
                    'and a quoted string, e.g. job="vllm",model=~"llama.*"')
_RE2_MISSING = re.compile(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\(\?P=")
"""Python regex features RE2 (Prometheus' engine) lacks: lookarounds and backreferences."""


def label_name(field: str, text: str) -> str:
    """A Prometheus label name (``[a-zA-Z_][a-zA-Z0-9_]*``), else a ``SpecError``."""
    if not (isinstance(text, str) and _LABEL_NAME.fullmatch(text)):
        raise SpecError(field, text, "a label name: a letter or _, then letters, digits or _")
    return text


def _string_literal(text: str, i: int) -> tuple[str, int] | None:
    """The PromQL string literal starting at ``text[i]``: (its value, the index after it)."""
    quote = text[i]
    if quote == "`":
        end = text.find("`", i + 1)
        return (text[i + 1:end], end + 1) if end > 0 else None
    if quote not in "\"'":
        return None
    out: list[str] = []
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch == quote:
            return "".join(out), j + 1
        if ch == "\n":
            return None
        if ch != "\\":
            out.append(ch)
            j += 1
            continue
        nxt = text[j + 1:j + 2]
        if nxt in _ESCAPES or nxt == quote:
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
            j += 2
        elif nxt in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = text[j + 2:j + 2 + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                return None
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                return None
            out.append(chr(code))
            j += 2 + width
        elif nxt[:1].isdigit():
            digits = text[j + 1:j + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(
                    digits, 8) > 255:
                return None
            out.append(chr(int(digits, 8)))
            j += 4
        else:
            return None
    return None


def label_matchers(field: str, text: str) -> str:
    """``text`` if it is a list of PromQL label matchers (what goes between ``{`` and ``}``,
    empty allowed), else a ``SpecError`` naming ``field`` and the first bad position.

    Regex values must compile; Python's lookarounds and backreferences are refused because
    Prometheus' RE2 has none."""
    if not isinstance(text, str):
        raise SpecError(field, text, MATCHERS_ALLOWED)
    i, n = 0, len(text)
    if not text.strip():
        return text
    while True:
        while i < n and text[i] in " \t":
            i += 1
        name = _LABEL_NAME.match(text, i)
        if name is None:
            raise SpecError(field, text, MATCHERS_ALLOWED + f" (a label name at character "
                            f"{i + 1})")
        op = _OPERATOR.match(text, name.end())
        if op is None:
            raise SpecError(field, text, MATCHERS_ALLOWED + f" (an operator at character "
                            f"{name.end() + 1})")
        j = op.end()
        literal = _string_literal(text, j) if j < n else None
        if literal is None:
            raise SpecError(field, text, MATCHERS_ALLOWED + f" (a closed, quoted string at "
                            f"character {j + 1})")
        value, i = literal
        if op.group(1) in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise SpecError(field, text, f"a valid regular expression after "
                                f"{op.group(1)} ({exc})") from exc
            if _RE2_MISSING.search(value):
                raise SpecError(field, text, "a regular expression without lookarounds or "
                                "backreferences (Prometheus uses RE2)")
        while i < n and text[i] in " \t":
            i += 1
        if i == n:
            return text
        if text[i] != ",":
            raise SpecError(field, text, MATCHERS_ALLOWED + f" (a comma at character "
                            f"{i + 1})")
        i += 1
