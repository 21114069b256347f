"""The autoscaler spec as plain, validated, immutable dataclasses.

Field names are Python-style; the user-facing (YAML / CR) names are HPA-style camelCase and
appear in every error message (``behavior.scaleUp.policies[0].periodSeconds``), because that
is what the user wrote. Parsing YAML into these lives at the boundary (``autoscaler.config``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

from autoscaler.core import defaults as d
from autoscaler.core.safety import Fallback
from autoscaler.errors import SpecError


def _check_range(
    path: str, value: float, lo: float, hi: float, *, lo_open: bool = False
) -> None:
    bad = (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or math.isnan(value)
        or value > hi
        or (value <= lo if lo_open else value < lo)
    )
    if bad:
        lo_s = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise SpecError(path, value, f"{lo_s} and <= {hi:g}")


class PolicyKind(StrEnum):
    """Which decision policy the spec runs."""

    HPA = "hpa"
    KPA = "kpa"
    PREDICTIVE = "predictive"
    HINDSIGHT = "hindsight"
    """The replay-only baseline that is given the true future rates: a heuristic, not a
    bound (``autoscaler.sim.hindsight``). It was called ``oracle``, which is still accepted."""
    ORACLE = "hindsight"  # the old name, an alias: PolicyKind.ORACLE is PolicyKind.HINDSIGHT
    STATIC = "static"
    HPA_QUEUE = "hpa-queue"
    """The HPA on the queue (vLLM ``num_requests_waiting``), AverageValue per replica."""
    HPA_RUNNING = "hpa-running"
    """The HPA on running requests (vLLM ``num_requests_running``, GKE's "batch size"),
    AverageValue per replica."""
    HPA_KV = "hpa-kv"
    """The HPA on KV-cache usage (mean fraction over replicas), AverageValue per replica."""
    KEDA = "keda"
    """KEDA's Prometheus scaler on the queue: the HPA's algorithm behind KEDA's activation."""
    WVA = "wva"
    """llm-d workload-variant-autoscaler's default saturation logic (from its docs)."""

    @classmethod
    def _missing_(cls, value: object) -> PolicyKind | None:
        return cls.HINDSIGHT if value == "oracle" else None


HPA_FAMILY: frozenset[PolicyKind] = frozenset(
    {PolicyKind.HPA, PolicyKind.HPA_QUEUE, PolicyKind.HPA_KV, PolicyKind.KEDA,
     PolicyKind.HPA_RUNNING})
"""Policies that run the HPA's algorithm on ``metrics`` (and so need at least one)."""


class MetricTargetType(StrEnum):
    VALUE = "Value"
    AVERAGE_VALUE = "AverageValue"


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """An HPA External-metric target on one signal (see ``Signal``)."""

    signal: str
    type: MetricTargetType
    value: float
    """Target value in the signal's unit; for AverageValue, per replica."""

    def validate(self, path: str) -> None:
        if not self.signal:
            raise SpecError(f"{path}.metric", self.signal, "a non-empty signal name")
        _check_range(f"{path}.target.value", self.value, 0.0, 1e12, lo_open=True)


class ScalingPolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """One HPA rate-limit policy: at most ``value`` Pods (or Percent) per ``period_seconds``."""

    type: ScalingPolicyType
    value: int
    period_seconds: int

    def validate(self, path: str) -> None:
        _check_range(f"{path}.value", self.value, 0, 1e9, lo_open=True)
        _check_range(f"{path}.periodSeconds", self.period_seconds, 0, d.HPA_MAX_POLICY_PERIOD_S,
                     lo_open=True)


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """HPA ``HPAScalingRules`` for one direction."""

    stabilization_window_seconds: int
    """Seconds of past recommendations considered (min over them for up, max for down)."""
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = SelectPolicy.MAX
    tolerance: float | None = None
    """Relative tolerance for this direction; None = the global 0.1."""

    def validate(self, path: str) -> None:
        _check_range(f"{path}.stabilizationWindowSeconds", self.stabilization_window_seconds,
                     0, d.HPA_MAX_STABILIZATION_S)
        if self.select_policy != SelectPolicy.DISABLED and not self.policies:
            raise SpecError(f"{path}.policies", [], "at least one policy unless selectPolicy "
                            "is Disabled")
        for i, p in enumerate(self.policies):
            p.validate(f"{path}.policies[{i}]")
        if self.tolerance is not None:
            _check_range(f"{path}.tolerance", self.tolerance, 0.0, 1.0)


def default_scale_up_rules() -> ScalingRules:
    """The HPA's default scaleUp rules (as kube-apiserver defaults them)."""
    return ScalingRules(
        stabilization_window_seconds=0,
        policies=(
            ScalingPolicy(ScalingPolicyType.PERCENT, d.HPA_DEFAULT_SCALE_UP_PERCENT,
                          d.HPA_DEFAULT_POLICY_PERIOD_S),
            ScalingPolicy(ScalingPolicyType.PODS, d.HPA_DEFAULT_SCALE_UP_PODS,
                          d.HPA_DEFAULT_POLICY_PERIOD_S),
        ),
        select_policy=SelectPolicy.MAX,
    )


def default_scale_down_rules() -> ScalingRules:
    """The HPA's default scaleDown rules (as kube-apiserver defaults them)."""
    return ScalingRules(
        stabilization_window_seconds=d.HPA_DOWNSCALE_STABILIZATION_S,
        policies=(
            ScalingPolicy(ScalingPolicyType.PERCENT, d.HPA_DEFAULT_SCALE_DOWN_PERCENT,
                          d.HPA_DEFAULT_POLICY_PERIOD_S),
        ),
        select_policy=SelectPolicy.MAX,
    )


def default_scale_down_rules_for(policy: PolicyKind) -> ScalingRules:
    """The scaleDown rules a left-out ``behavior.scaleDown`` gets: the HPA's, except for the
    predictive policy, whose window is ``PREDICTIVE_DOWNSCALE_STABILIZATION_S`` (it holds
    releases on its own forecast)."""
    rules = default_scale_down_rules()
    if policy is PolicyKind.PREDICTIVE:
        return replace(rules, stabilization_window_seconds=d.PREDICTIVE_DOWNSCALE_STABILIZATION_S)
    return rules


def default_behavior(policy: PolicyKind) -> Behavior | None:
    """The ``behavior`` a spec without one runs with, in the live controller and the replay
    alike (one place, so what is replayed is what runs). None is the HPA's legacy path (an
    HPA with no ``behavior`` field), right for the HPA-shaped policies; the predictive
    policy gets the HPA's default rules with its own scale-down window."""
    if policy is PolicyKind.PREDICTIVE:
        return Behavior(scale_down=default_scale_down_rules_for(policy))
    return None


@dataclass(frozen=True, slots=True)
class Behavior:
    """HPA v2 ``behavior``. A side left out gets the upstream default rules."""

    scale_up: ScalingRules = field(default_factory=default_scale_up_rules)
    scale_down: ScalingRules = field(default_factory=default_scale_down_rules)

    def validate(self, path: str = "behavior") -> None:
        self.scale_up.validate(f"{path}.scaleUp")
        self.scale_down.validate(f"{path}.scaleDown")


@dataclass(frozen=True, slots=True)
class SLO:
    ttft_seconds: float = d.SLO_TTFT_S
    """Time-to-first-token objective, seconds."""
    target_attainment: float = d.SLO_TARGET_ATTAINMENT
    """Fraction of requests that must meet it, 0..1."""
    ttft_seconds_per_prompt_token: float = d.SLO_TTFT_S_PER_PROMPT_TOKEN
    """Extra TTFT allowed per prompt token, seconds (0..0.01). A request with P prompt tokens
    meets the objective when its TTFT <= ttft_seconds + P x this (``ttft_objective``). Linear,
    because prefill time is linear in the prompt: one number tracks the physical floor, where
    a per-length table would add arbitrary step edges. Worked example: 2 s + 0.0002 s/token
    gives a 10,000-token prompt 4 s, a 500-token prompt 2.1 s."""

    def validate(self, path: str = "slo") -> None:
        _check_range(f"{path}.ttftSeconds", self.ttft_seconds, 0.0, 3600.0, lo_open=True)
        _check_range(f"{path}.targetAttainment", self.target_attainment, 0.0, 1.0, lo_open=True)
        _check_range(f"{path}.ttftSecondsPerPromptToken", self.ttft_seconds_per_prompt_token,
                     0.0, 0.01)


def ttft_objective(spec: Spec | SLO, prompt_tokens: float) -> float:
    """The TTFT objective (seconds) of a request with ``prompt_tokens`` prompt tokens: the
    one rule the replay's scoring, the calibration and the live status all use. Live, where
    only fleet rates are known, pass the mean prompt (prompt-token rate / request rate)."""
    slo = spec.slo if isinstance(spec, Spec) else spec
    return slo.ttft_seconds + slo.ttft_seconds_per_prompt_token * max(0.0, prompt_tokens)


class CapacitySource(StrEnum):
    """Where a spec's ``capacity`` came from."""

    GIVEN = "given"
    """The user wrote it (``capacity`` in the spec)."""
    PROFILE = "profile"
    """Calibrated from a replica profile (the replay, for a spec that leaves it out)."""
    PRIOR = "prior"
    """Neither: the documented prior (``defaults.CAPACITY_PRIOR_*``). Only a policy that
    learns capacity may run on it, and the decision never scales down while nothing has
    been learned yet (``autoscaler.core.decide``)."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """The capacity model of one replica at the SLO."""

    requests_per_second: float
    """Arrival rate one replica sustains while meeting the TTFT SLO (requests/s)."""
    concurrency: float
    """Requests in flight on one replica at that rate (Little's law: rate x latency)."""
    source: CapacitySource = CapacitySource.GIVEN

    @property
    def known(self) -> bool:
        """False for the documented prior: a guess, not a measurement of this workload."""
        return self.source != CapacitySource.PRIOR

    def validate(self, path: str = "capacity") -> None:
        _check_range(f"{path}.requestsPerSecond", self.requests_per_second, 0.0, 1e9,
                     lo_open=True)
        _check_range(f"{path}.concurrency", self.concurrency, 0.0, 1e9, lo_open=True)


@dataclass(frozen=True, slots=True)
class KpaParams:
    """Knative KPA settings (config-autoscaler names in the docs)."""

    metric: str = d.KPA_METRIC
    """``concurrency`` (requests in flight, Knative's default) or ``rps`` (requests/s)."""
    target_concurrency: float | None = None
    """Per-replica concurrency target before utilisation; None = ``capacity.concurrency``."""
    target_rps: float | None = None
    """Per-replica requests/s target before utilisation (``rps`` metric); None =
    ``capacity.requestsPerSecond``."""
    target_utilization: float = d.KPA_TARGET_UTILIZATION
    stable_window_s: float = d.KPA_STABLE_WINDOW_S
    panic_window_percentage: float = d.KPA_PANIC_WINDOW_PERCENTAGE
    panic_threshold_percentage: float = d.KPA_PANIC_THRESHOLD_PERCENTAGE
    max_scale_up_rate: float = d.KPA_MAX_SCALE_UP_RATE
    max_scale_down_rate: float = d.KPA_MAX_SCALE_DOWN_RATE
    scale_down_delay_s: float = d.KPA_SCALE_DOWN_DELAY_S

    def validate(self, path: str = "kpa") -> None:
        if self.metric not in ("concurrency", "rps"):
            raise SpecError(f"{path}.metric", self.metric, "concurrency or rps")
        if self.target_rps is not None:
            _check_range(f"{path}.targetRps", self.target_rps, 0.0, 1e9, lo_open=True)
        if self.target_concurrency is not None:
            _check_range(f"{path}.targetConcurrency", self.target_concurrency, 0.0, 1e9,
                         lo_open=True)
        _check_range(f"{path}.targetUtilization", self.target_utilization, 0.0, 1.0,
                     lo_open=True)
        _check_range(f"{path}.stableWindowSeconds", self.stable_window_s, 5.0, 3600.0)
        _check_range(f"{path}.panicWindowPercentage", self.panic_window_percentage, 1.0, 100.0)
        _check_range(f"{path}.panicThresholdPercentage", self.panic_threshold_percentage,
                     110.0, 1000.0)
        _check_range(f"{path}.maxScaleUpRate", self.max_scale_up_rate, 1.0, 1e6, lo_open=True)
        _check_range(f"{path}.maxScaleDownRate", self.max_scale_down_rate, 1.0, 1e6,
                     lo_open=True)
        _check_range(f"{path}.scaleDownDelaySeconds", self.scale_down_delay_s, 0.0, 3600.0)


@dataclass(frozen=True, slots=True)
class PredictiveParams:
    """Our predictive policy's settings."""

    headroom_quantile: float = d.PREDICTIVE_HEADROOM_QUANTILE
    """Plan for this quantile of the forecast demand, 0.5..0.999."""
    target_utilization: float = d.PREDICTIVE_TARGET_UTILIZATION
    """Plan each replica at this fraction of ``capacity.requestsPerSecond``, 0..1."""
    history_s: float = d.PREDICTIVE_HISTORY_S
    """Seconds of demand history kept for the forecaster."""
    backlog_drain_s: float = d.PREDICTIVE_BACKLOG_DRAIN_S
    """Drain a visible queue within this many seconds (reactive correction)."""
    scale_down_window_s: float = d.PREDICTIVE_SCALE_DOWN_WINDOW_S
    """Scale down only to the max recommendation over this many seconds."""
    forecaster: str = "trend"
    """Forecaster name: ``trend`` (the built-in simple one) or an ``autoscaler.forecast``
    model name (``auto``, ``profile``, ``damped``, ...)."""
    scale_down_band: float = d.PREDICTIVE_SCALE_DOWN_BAND
    """Scale down only to the count at ``target_utilization`` x this, 0.5..1 (hysteresis)."""
    keep_idle_cold_starts: float = d.PREDICTIVE_KEEP_IDLE_COLD_STARTS
    """Keep a replica no longer needed for this many cold starts before releasing it
    (0..10; the hold is the larger of this and ``scale_down_window_s``)."""
    learn_capacity: bool = d.PREDICTIVE_LEARN_CAPACITY
    """Learn the per-replica capacity at the SLO from the fleet (``capacity`` is the prior);
    False plans on ``capacity`` as given."""

    def validate(self, path: str = "predictive") -> None:
        _check_range(f"{path}.headroomQuantile", self.headroom_quantile, 0.5, 0.999)
        _check_range(f"{path}.targetUtilization", self.target_utilization, 0.0, 1.0,
                     lo_open=True)
        _check_range(f"{path}.historySeconds", self.history_s, 60.0, 30 * 86400.0)
        _check_range(f"{path}.backlogDrainSeconds", self.backlog_drain_s, 1.0, 3600.0)
        _check_range(f"{path}.scaleDownWindowSeconds", self.scale_down_window_s, 0.0, 86400.0)
        _check_range(f"{path}.scaleDownBand", self.scale_down_band, 0.5, 1.0)
        _check_range(f"{path}.keepIdleColdStarts", self.keep_idle_cold_starts, 0.0, 10.0)
        # Imported here: the forecasting package (numpy) is only needed once a spec is
        # checked, and the name list lives with the models it names.
        from autoscaler.forecast import MODEL_NAMES

        allowed = ("trend", *MODEL_NAMES)
        if self.forecaster not in allowed:
            raise SpecError(f"{path}.forecaster", self.forecaster, f"one of {', '.join(allowed)}")


@dataclass(frozen=True, slots=True)
class KedaParams:
    """KEDA ScaledObject settings (KEDA's names in the docs)."""

    activation_threshold: float = d.KEDA_ACTIVATION_THRESHOLD
    """``activationThreshold``: at or below it the scaler is inactive (the metric's unit)."""
    cooldown_s: float = d.KEDA_COOLDOWN_S
    """``cooldownPeriod``: seconds inactive before scaling to ``minReplicas`` when that is 0."""

    def validate(self, path: str = "keda") -> None:
        _check_range(f"{path}.activationThreshold", self.activation_threshold, 0.0, 1e12)
        _check_range(f"{path}.cooldownPeriod", self.cooldown_s, 0.0, 86400.0)


@dataclass(frozen=True, slots=True)
class WvaParams:
    """llm-d WVA saturation thresholds (fractions of one replica's token capacity)."""

    kv_cache_threshold: float = d.WVA_KV_CACHE_THRESHOLD
    """Token capacity is this fraction of the KV cache (limited by compute)."""
    scale_up_threshold: float = d.WVA_SCALE_UP_THRESHOLD
    """Scale up when demand exceeds this fraction of the fleet's token capacity."""
    scale_down_threshold: float = d.WVA_SCALE_DOWN_THRESHOLD
    """Scale down when demand is below this fraction of it."""

    def validate(self, path: str = "wva") -> None:
        _check_range(f"{path}.kvCacheThreshold", self.kv_cache_threshold, 0.0, 1.0, lo_open=True)
        _check_range(f"{path}.scaleUpThreshold", self.scale_up_threshold, 0.0, 1.0,
                     lo_open=True)
        _check_range(f"{path}.scaleDownThreshold", self.scale_down_threshold, 0.0,
                     self.scale_up_threshold, lo_open=True)


def prior_capacity() -> Capacity:
    """The capacity a spec without ``capacity`` starts from (``defaults.CAPACITY_PRIOR_*``)."""
    return Capacity(d.CAPACITY_PRIOR_RPS, d.CAPACITY_PRIOR_CONCURRENCY, CapacitySource.PRIOR)


def with_profile_capacity(spec: Spec, capacity: Capacity) -> Spec:
    """``spec`` with ``capacity`` (calibrated from a replica profile) in place of the
    documented prior when the spec left ``capacity`` out; a given capacity is kept."""
    if spec.capacity.known:
        return spec
    return replace(spec, capacity=replace(capacity, source=CapacitySource.PROFILE))


def default_hpa_metrics() -> tuple[MetricTarget, ...]:
    """Empty: the replay fills an HPA target from the capacity model when none is given."""
    return ()


@dataclass(frozen=True, slots=True)
class Spec:
    """One autoscaler: what to scale, on which signals, within which bounds and SLO."""

    max_replicas: int
    capacity: Capacity
    policy: PolicyKind = PolicyKind.PREDICTIVE
    min_replicas: int = 1
    metrics: tuple[MetricTarget, ...] = field(default_factory=default_hpa_metrics)
    """HPA-style External-metric targets (used by the ``hpa`` policy)."""
    behavior: Behavior | None = field(default_factory=Behavior)
    """HPA-shaped behaviour; None = the HPA's legacy path (no behavior field)."""
    slo: SLO = field(default_factory=SLO)
    cold_start_s: float = d.COLD_START_S
    """Seconds from asking for a replica until it serves (the forecast lead time)."""
    sync_period_s: float = d.HPA_SYNC_PERIOD_S
    """Seconds between decisions."""
    max_metric_age_s: float = d.MAX_METRIC_AGE_S
    """Samples older than this many seconds are stale (hold)."""
    static_replicas: int | None = None
    """For the ``static`` policy: the fixed count (None = ``max_replicas``)."""
    kpa: KpaParams = field(default_factory=KpaParams)
    predictive: PredictiveParams = field(default_factory=PredictiveParams)
    keda: KedaParams = field(default_factory=KedaParams)
    wva: WvaParams = field(default_factory=WvaParams)
    fallback: Fallback | None = None
    """Replicas to hold at least after ``failureThreshold`` cycles without usable metrics
    (``autoscaler.core.safety``); None = hold the current count."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        try:
            PolicyKind(self.policy)
        except ValueError as exc:
            raise SpecError("policy", self.policy,
                            ", ".join(k.value for k in PolicyKind)) from exc
        _check_range("minReplicas", self.min_replicas, 0, d.MAX_REPLICAS_LIMIT)
        _check_range("maxReplicas", self.max_replicas, 1, d.MAX_REPLICAS_LIMIT)
        if not isinstance(self.min_replicas, int) or not isinstance(self.max_replicas, int):
            raise SpecError("minReplicas/maxReplicas", (self.min_replicas, self.max_replicas),
                            "integers")
        if self.min_replicas > self.max_replicas:
            raise SpecError("minReplicas", self.min_replicas,
                            f"<= maxReplicas ({self.max_replicas})")
        self.capacity.validate()
        if not self.capacity.known:
            self._check_capacity_optional()
        for i, m in enumerate(self.metrics):
            m.validate(f"metrics[{i}]")
        if self.policy in HPA_FAMILY and not self.metrics:
            raise SpecError("metrics", [], f"at least one metric target for the {self.policy} "
                            "policy")
        if self.behavior is not None:
            self.behavior.validate()
        self.slo.validate()
        _check_range("coldStartSeconds", self.cold_start_s, 0.0, 3600.0)
        _check_range("syncPeriodSeconds", self.sync_period_s, 1.0, 3600.0)
        _check_range("maxMetricAgeSeconds", self.max_metric_age_s, 1.0, 86400.0)
        if self.static_replicas is not None:
            _check_range("staticReplicas", self.static_replicas, self.min_replicas,
                         self.max_replicas)
        self.kpa.validate()
        self.predictive.validate()
        self.keda.validate()
        self.wva.validate()
        if self.fallback is not None:
            self.fallback.validate(self.min_replicas, self.max_replicas)

    def _check_capacity_optional(self) -> None:
        """``capacity`` may be left out only where no decision divides by a guess: the
        predictive policy learning it, the HPA family (it divides by ``metrics`` targets)
        and ``static``; the KPA only with its own per-replica target."""
        need = None
        if self.policy == PolicyKind.PREDICTIVE and not self.predictive.learn_capacity:
            need = "the predictive policy unless predictive.learnCapacity is true"
        elif self.policy in (PolicyKind.WVA, PolicyKind.HINDSIGHT):
            need = f"the {self.policy.value} policy"
        elif self.policy == PolicyKind.KPA and (
                self.kpa.target_rps if self.kpa.metric == "rps"
                else self.kpa.target_concurrency) is None:
            target = "targetRps" if self.kpa.metric == "rps" else "targetConcurrency"
            need = f"the kpa policy unless kpa.{target} is set"
        if need is not None:
            raise SpecError("capacity", None, "", problem=f"required for {need}")
