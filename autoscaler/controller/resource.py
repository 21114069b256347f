"""The ``InferenceAutoscaler`` custom resource: its schema at the boundary (pydantic) and
the plain data the controller works with.

``spec`` is the autoscaler spec users already write for ``autoscaler validate`` and
``--emit-spec`` (``SpecModel``: policy, min/max, HPA-shaped ``behavior``, SLO, capacity,
forecast settings) plus what only a cluster needs: which workload to scale, how, where its
metrics are, and what to do when they are missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from autoscaler.config import SpecModel, _Model, _path_of
from autoscaler.core.spec import Spec
from autoscaler.core.types import Signal
from autoscaler.errors import SpecError
from autoscaler.metrics.presets import PRESETS, check_template, get_preset

GROUP = "inference.autoscaler.dev"
VERSION = "v1alpha1"
KIND = "InferenceAutoscaler"
PLURAL = "inferenceautoscalers"
SHORT_NAMES = ("ias",)


class Mode(StrEnum):
    SCALE = "Scale"
    """Patch the target's ``scale`` subresource."""
    METRICS = "Metrics"
    """Decide and publish the decision through the external metrics API; a stock HPA scales."""
    SHADOW = "Shadow"
    """Decide and report (status, Events, metrics); never write the scale."""


_PRESET_NAMES = "|".join(sorted(PRESETS, key=len, reverse=True))  # names are [a-z-]
PRESET_PATTERN = f"^({_PRESET_NAMES})(\\+({_PRESET_NAMES}))*$"
"""A built-in preset or several joined by '+': the API server refuses anything else (there is
no ``custom`` preset: custom PromQL goes in ``queries``, signal by signal)."""


class ScaleTargetRefModel(_Model):
    api_version: str = Field("apps/v1", alias="apiVersion", min_length=1,
                             description="API group/version of the workload, e.g. apps/v1")
    kind: str = Field("Deployment", min_length=1,
                      description="Any kind with a scale subresource (Deployment, "
                                  "StatefulSet, a custom workload)")
    name: str = Field(min_length=1, max_length=253, description="Workload name, same namespace")


class MetricsSourceModel(_Model):
    preset: str = Field(
        "vllm", pattern=PRESET_PATTERN,
        description="Engine metric names: vllm, sglang, tgi, triton, tensorrt-llm, dcgm, or "
                    "several joined by '+' (vllm+dcgm); queries override single signals")
    selector: str = Field("", description='Extra PromQL label matchers, e.g. job="vllm"')
    namespace_label: str = Field("namespace", alias="namespaceLabel", min_length=1)
    workload_label: str = Field("workload", alias="workloadLabel", min_length=1,
                                description="Label naming the workload in Prometheus")
    workload: str | None = Field(None, description="Value of workloadLabel for this target "
                                                   "(default: scaleTargetRef.name)")
    window: str = Field("1m", pattern=r"^[0-9]+(ms|s|m|h)$",
                        description="rate() range, at least 4 scrape intervals")
    queries: dict[str, str] = Field(
        default_factory=dict,
        description="Signal -> PromQL template ($sel, $by, $window) overriding the preset")
    recording_rules: bool = Field(
        False, alias="recordingRules",
        description="Read the recording rules printed by `autoscaler metrics rules` instead "
                    "of aggregating raw series each cycle (advised from ~500 targets)")

    @model_validator(mode="after")
    def _signals_known(self) -> MetricsSourceModel:
        # Checked here, at the boundary, so a bad preset or template is an InvalidSpec
        # status and Event at once, not an autoscaler that holds for ever with "bad query"
        # (issue 12: `preset: custom` was advertised but get_preset raised; query overrides
        # skipped the template check the CLI applies).
        try:
            get_preset(self.preset)
        except SpecError as exc:
            raise ValueError(f"preset {self.preset!r}: {exc.allowed}") from None
        known = {s.value for s in Signal}
        for name, template in self.queries.items():
            if name not in known:
                raise ValueError(f"queries key {name!r} is not a signal; allowed: "
                                 f"{', '.join(sorted(known))}")
            try:
                check_template(template, field_name=f"queries.{name}")
            except SpecError as exc:
                raise ValueError(f"queries.{name}: {exc.allowed}") from None
        return self


class FallbackModel(_Model):
    failure_threshold: int = Field(3, alias="failureThreshold", ge=1, le=1000,
                                   description="Consecutive cycles without usable metrics "
                                               "before the fallback applies")
    replicas: int = Field(ge=0, description="Replicas to hold at least, while metrics are "
                                            "missing (never a scale-down)")


class InferenceAutoscalerSpecModel(SpecModel):
    scale_target_ref: ScaleTargetRefModel = Field(alias="scaleTargetRef")
    mode: Literal["Scale", "Metrics", "Shadow"] = "Scale"
    metrics_source: MetricsSourceModel = Field(
        default_factory=lambda: MetricsSourceModel.model_validate({}), alias="metricsSource")
    fallback: FallbackModel | None = None

    @model_validator(mode="after")
    def _min_le_max(self) -> InferenceAutoscalerSpecModel:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be <= maxReplicas")
        if self.fallback is not None and not (
                self.min_replicas <= self.fallback.replicas <= self.max_replicas):
            raise ValueError("fallback.replicas must be within [minReplicas, maxReplicas]")
        return self


@dataclass(frozen=True, slots=True)
class TargetRef:
    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.split("/", 1)[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class MetricsSourceSpec:
    preset: str
    selector: str
    namespace_label: str
    workload_label: str
    workload: str
    window: str
    queries: tuple[tuple[str, str], ...] = ()
    recorded: bool = False


@dataclass(frozen=True, slots=True)
class Fallback:
    failure_threshold: int
    replicas: int


@dataclass(frozen=True, slots=True)
class Autoscaler:
    """One validated ``InferenceAutoscaler``, as the controller uses it."""

    namespace: str
    name: str
    generation: int
    uid: str
    spec: Spec
    target: TargetRef
    mode: Mode
    source: MetricsSourceSpec
    fallback: Fallback | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def _lookup(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def parse_autoscaler(obj: Mapping[str, Any]) -> Autoscaler:
    """Validate a CR (as the API returns it). A bad spec is a ``SpecError`` whose field path
    starts with ``spec.`` and whose source is ``namespace/name``."""
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    where = f"{KIND} {ns}/{name}"
    try:
        model = InferenceAutoscalerSpecModel.model_validate(obj.get("spec") or {})
        core = model.to_core()
    except ValidationError as exc:
        err = exc.errors()[0]
        allowed = str(err["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
        path, value = _path_of(tuple(err["loc"])), err.get("input")
        if not path:
            # A cross-field rule ("minReplicas must be <= maxReplicas"): name the field the
            # message starts with and show its value, not the whole spec.
            path = allowed.split(" ", 1)[0]
            value = _lookup(obj.get("spec") or {}, path)
        raise SpecError("spec." + path, value, allowed, source=where) from exc
    except SpecError as exc:
        raise SpecError("spec." + exc.field, exc.value, exc.allowed, source=where,
                        problem=exc.problem) from exc
    ref = model.scale_target_ref
    src = model.metrics_source
    return Autoscaler(
        namespace=ns, name=name, generation=int(meta.get("generation") or 0),
        uid=str(meta.get("uid") or ""), spec=core,
        target=TargetRef(ref.api_version, ref.kind, ref.name), mode=Mode(model.mode),
        source=MetricsSourceSpec(src.preset, src.selector, src.namespace_label,
                                 src.workload_label, src.workload or ref.name, src.window,
                                 tuple(sorted(src.queries.items())), src.recording_rules),
        fallback=(Fallback(model.fallback.failure_threshold, model.fallback.replicas)
                  if model.fallback else None))
