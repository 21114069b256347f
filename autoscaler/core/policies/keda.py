"""``keda``: KEDA's Prometheus scaler on the queue, as a ScaledObject runs it.

KEDA does not compute replica counts itself above one: it serves the trigger's metric to an
HPA it creates (``metricType: AverageValue``), so from 1 to ``maxReplicas`` the count is the
HPA's, ``desired = ceil(metric / target)`` outside the 10 % tolerance, with the HPA's
behaviour (``autoscaler.core.policies.hpa``). What KEDA adds is *activation*
(KEDA's documentation, "Scaling Deployments"):

* the scaler is active while the metric is above ``activationThreshold`` (default 0);
* with ``minReplicaCount`` 0, once every trigger has been inactive for ``cooldownPeriod``
  (default 300 s) KEDA scales the target to 0; an active trigger brings it back to 1 and
  the HPA takes over from there.

With ``minReplicas`` >= 1 (every replay here) activation never acts, and KEDA on the queue
is the HPA on the queue: both are kept so the comparison names what users deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autoscaler.core.policies import hpa
from autoscaler.core.spec import Spec
from autoscaler.core.types import Decision, PolicyState, Reason, Snapshot, State


@dataclass(frozen=True, slots=True)
class KedaState(PolicyState):
    last_active: float | None = None
    """When a trigger was last above its activation threshold."""


def decide(snapshot: Snapshot, state: State, spec: Spec, now: float) -> tuple[Decision, State]:
    prev = state.policy if isinstance(state.policy, KedaState) else KedaState()
    values = [snapshot.get(m.signal, now, spec.max_metric_age_s) for m in spec.metrics]
    active = any(v is not None and v > spec.keda.activation_threshold for v in values)
    known = all(v is not None for v in values)
    last_active = now if active or prev.last_active is None else prev.last_active
    policy = replace(prev, last_active=last_active)
    current = snapshot.current_replicas
    if spec.min_replicas == 0:
        if current == 0:
            if active:
                return (Decision(replicas=1, reason=Reason.DESIRED_WITHIN_RANGE,
                                 recommendation=1,
                                 message="a trigger is active: scaling from zero to 1"),
                        replace(state, policy=policy))
            return (Decision(replicas=0, reason=Reason.WITHIN_TOLERANCE, recommendation=0,
                             message="every trigger inactive: staying at zero"),
                    replace(state, policy=policy))
        if known and not active and now - last_active >= spec.keda.cooldown_s:
            return (Decision(replicas=0, reason=Reason.TOO_FEW_REPLICAS, recommendation=0,
                             message=f"every trigger inactive for {spec.keda.cooldown_s:g} s "
                                     "(cooldownPeriod): scaling to zero"),
                    replace(state, policy=policy))
    # The HPA KEDA creates has minReplicas = max(minReplicaCount, 1): zero is KEDA's own.
    hpa_spec = spec if spec.min_replicas >= 1 else replace(spec, min_replicas=1)
    decision, new_state = hpa.decide(snapshot, replace(state, policy=None), hpa_spec, now)
    return decision, replace(new_state, policy=policy)
