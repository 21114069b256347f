"""Every default of the decision core, in one place, with its unit and where it comes from.

Numbers marked *upstream* are the Kubernetes / Knative defaults; keep them in step with
their sources (named next to each).
"""

from __future__ import annotations

# --- HPA (kube-controller-manager, autoscaling/v2) -------------------------------------
HPA_SYNC_PERIOD_S = 15.0
"""Seconds between HPA reconciliations (--horizontal-pod-autoscaler-sync-period). *upstream*"""
HPA_TOLERANCE = 0.1
"""Relative change below which the HPA does not scale
(--horizontal-pod-autoscaler-tolerance). *upstream*"""
HPA_DOWNSCALE_STABILIZATION_S = 300
"""Scale-down stabilisation window, seconds
(--horizontal-pod-autoscaler-downscale-stabilization; also the default scaleDown
window). *upstream*"""
HPA_SCALE_UP_LIMIT_FACTOR = 2.0
"""Legacy path (no ``behavior``): at most this multiple of current replicas per step.
*upstream*"""
HPA_SCALE_UP_LIMIT_MINIMUM = 4
"""Legacy path (no ``behavior``): but always allow scaling up to at least this many. *upstream*"""
HPA_DEFAULT_SCALE_UP_PERCENT = 100
"""Default scaleUp Percent policy value (per 15 s period). *upstream*"""
HPA_DEFAULT_SCALE_UP_PODS = 4
"""Default scaleUp Pods policy value (per 15 s period). *upstream*"""
HPA_DEFAULT_SCALE_DOWN_PERCENT = 100
"""Default scaleDown Percent policy value (per 15 s period). *upstream*"""
HPA_DEFAULT_POLICY_PERIOD_S = 15
"""Default periodSeconds of the default policies. *upstream*"""
HPA_MAX_STABILIZATION_S = 3600
"""Upper bound of stabilizationWindowSeconds accepted by API validation. *upstream*"""
HPA_MAX_POLICY_PERIOD_S = 1800
"""Upper bound of a policy's periodSeconds accepted by API validation. *upstream*"""

# --- Knative KPA (config-autoscaler ConfigMap) -----------------------------------------
KPA_STABLE_WINDOW_S = 60.0
"""stable-window, seconds. *upstream*"""
KPA_PANIC_WINDOW_PERCENTAGE = 10.0
"""panic-window-percentage: the panic window is this % of the stable window (6 s). *upstream*"""
KPA_PANIC_THRESHOLD_PERCENTAGE = 200.0
"""panic-threshold-percentage: panic when panic-window demand >= 200% of current
capacity. *upstream*"""
KPA_TARGET_UTILIZATION = 0.70
"""container-concurrency-target-percentage (70%), as a fraction. *upstream*"""
KPA_MAX_SCALE_UP_RATE = 1000.0
"""max-scale-up-rate: at most this multiple of ready pods in one step. *upstream*"""
KPA_MAX_SCALE_DOWN_RATE = 2.0
"""max-scale-down-rate: at most divide ready pods by this in one step. *upstream*"""
KPA_SCALE_DOWN_DELAY_S = 0.0
"""scale-down-delay, seconds (max over this window of recommendations). *upstream*"""
KPA_METRIC = "concurrency"
"""Knative's default autoscaling metric (``autoscaling.knative.dev/metric``). *upstream*"""
KPA_TICK_S = 2.0
"""Knative's decider ticks every 2 s; the replay may run it at the sync period instead."""

# --- Baselines users run (targets from each project's documentation) -----------------
HPA_QUEUE_TARGET = 5.0
"""Requests waiting per replica, the AverageValue target of the HPA on the queue. GKE's LLM
autoscaling guide recommends queue size as the metric for throughput at a latency target
and leaves the number to a load test; 5 per replica is the starting threshold the KEDA /
vLLM examples use (``sum(vllm:num_requests_waiting)`` at averageValue 5). *upstream*"""
HPA_RUNNING_TARGET = 10.0
"""Requests running per replica (vLLM ``num_requests_running``, the "batch size" GKE's LLM
autoscaling guide names as the metric for a lower latency target than the queue), the
AverageValue target of the HPA on running requests. The guide gives no number; 10 is the
averageValue of Google's reference GKE manifest for it (GoogleCloudPlatform/
accelerated-platforms, ``hpa-vllm-openai-batch-size.yaml``, whose guide asks users to adjust
it); the Kubernetes project's vLLM HPA example (kubernetes/examples,
``AI/vllm-deployment/hpa``) uses 4. *upstream*"""
HPA_KV_TARGET = 0.8
"""Mean KV-cache usage per replica, the AverageValue target of the HPA on KV cache: llm-d
WVA's documented ``kvCacheThreshold`` (a replica is saturated at 80 %). *upstream*"""
KEDA_ACTIVATION_THRESHOLD = 0.0
"""KEDA ``activationThreshold`` default: active when the metric is above 0. *upstream*"""
KEDA_COOLDOWN_S = 300.0
"""KEDA ``cooldownPeriod`` default, seconds (only used to scale to zero). *upstream*"""
KEDA_POLLING_INTERVAL_S = 30.0
"""KEDA ``pollingInterval`` default, seconds (how often the scaler is checked). *upstream*"""
WVA_KV_CACHE_THRESHOLD = 0.8
"""llm-d WVA: token capacity = min(0.8 x KV-cache tokens, compute). *upstream*"""
WVA_SCALE_UP_THRESHOLD = 0.85
"""llm-d WVA: scale up when demand exceeds 85 % of token capacity. *upstream*"""
WVA_SCALE_DOWN_THRESHOLD = 0.70
"""llm-d WVA: scale down when demand is below 70 % of token capacity. *upstream*"""

# --- Our own --------------------------------------------------------------------------
MAX_METRIC_AGE_S = 60.0
"""A sample older than this (seconds) counts as stale: the decision is invalid (hold)."""
COLD_START_S = 120.0
"""Seconds from asking for a replica to it serving (image pull, weights load, warm-up)."""
SLO_TTFT_S = 2.0
"""Time-to-first-token objective, seconds."""
SLO_TARGET_ATTAINMENT = 0.99
"""Fraction of requests that must meet the TTFT objective."""
SLO_TTFT_S_PER_PROMPT_TOKEN = 0.0
"""Default slope of the TTFT objective (seconds per prompt token): a flat objective."""
PREDICTIVE_HEADROOM_QUANTILE = 0.9
"""Plan for this quantile of the forecast demand (0.5 = the point forecast)."""
PREDICTIVE_HISTORY_S = 1800.0
"""Seconds of demand history the simple trend forecaster keeps."""
PREDICTIVE_BACKLOG_DRAIN_S = 30.0
"""When a queue builds, add capacity to drain it within this many seconds."""
PREDICTIVE_TARGET_UTILIZATION = 0.85
"""Plan each replica at this fraction of its capacity at the SLO."""
PREDICTIVE_SCALE_DOWN_WINDOW_S = 120.0
"""Scale down only to the max recommendation seen over this many seconds."""
PREDICTIVE_DOWNSCALE_STABILIZATION_S = 0
"""The predictive policy's default ``behavior.scaleDown.stabilizationWindowSeconds``, live
and in the replay alike. It already holds releases itself, on its forecast
(``PREDICTIVE_SCALE_DOWN_WINDOW_S``, the band below, the release hold that doubles when a
release is asked back, ``PREDICTIVE_KEEP_IDLE_COLD_STARTS``): the HPA's blind 300 s on top
would keep every replica of a 10-minute burst 5 minutes past it whatever the forecast says.
Left out of a spec, this is what runs; a spec that sets the window keeps its own."""
PREDICTIVE_SCALE_DOWN_BAND = 0.85
"""Release replicas only to the count that would run at ``targetUtilization`` x this
(0.85 x 0.85 = 0.72 by default): hysteresis between scaling up and down. The gap mirrors
llm-d WVA's documented 0.85 up / 0.70 down saturation thresholds."""
PREDICTIVE_KEEP_IDLE_COLD_STARTS = 1.0
"""Keep a replica that is no longer needed for this many cold starts (ski rental: idling
for one cold start costs the GPU time a restart would, and the restart also risks the SLO;
holding exactly that long is never worse than twice the best choice in hindsight)."""
PREDICTIVE_LEARN_CAPACITY = True
"""Learn one replica's capacity at the SLO from the fleet; ``capacity`` is then a prior."""
KV_CACHE_TARGET = 0.8
"""Plan the KV cache at this fraction of its tokens (llm-d WVA's default token capacity is
0.8 x KV-cache tokens, from its documentation)."""
FALLBACK_FAILURE_THRESHOLD = 3
"""Consecutive cycles without usable metrics before ``fallback.replicas`` applies."""
FALLBACK_MAX_FAILURE_THRESHOLD = 1000
"""Upper bound of ``fallback.failureThreshold``."""
MAX_REPLICAS_LIMIT = 100_000
"""Sanity bound on maxReplicas."""
CAPACITY_PRIOR_RPS = 2.0
"""Requests/s one replica is assumed to carry at the SLO when a spec gives no ``capacity``
(a prior only the capacity-learning predictive policy runs on). Deliberately low: a chat
model on one GPU carries a few to tens of requests/s at a 2 s TTFT, and a low guess costs
replicas while a high one costs the SLO. Until the fleet has shown its capacity the
decision never scales down on it."""
CAPACITY_PRIOR_CONCURRENCY = 16.0
"""Requests in flight per replica of the same prior (2 req/s x ~8 s per request)."""

CONTROLLER_TICK_S = 5.0
"""How often the controller loop wakes, seconds; each autoscaler still decides on its own
syncPeriodSeconds."""
