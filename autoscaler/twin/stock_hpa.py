"""A stock HPA between our decision and the scale: what Metrics mode adds, for the replay.

In ``Metrics`` mode the controller does not write the scale. It serves its decided count as
``inference_autoscaler_desired_replicas`` through external.metrics.k8s.io, and a stock
HorizontalPodAutoscaler (``deploy/examples/hpa-external.yaml``, the closed loop's
``passthrough_hpa``) reads it and writes the scale. That HPA is a second control loop with
its own clock and arithmetic, so the replay predicts Metrics mode only when it runs one too:

* **its sync period** (``--horizontal-pod-autoscaler-sync-period``, 15 s by default; the
  e2e tier's control plane runs 2 s): it reads our newest value once per sync, so a count we
  decide just after one of its syncs waits for the next, and the decisions in between are
  never seen;
* **its tolerance** (10 % by default): an ``AverageValue`` target proposes
  ceil(usage / target) only when usage / (target x replicas) is outside [0.9, 1.1];
  inside, it keeps the count. With our count N served against ``averageValue: 1`` on
  current replicas R the ratio is N / R, so at R = 10 a decision of 9 (ratio 0.9) or 11
  (1.1) is *not* applied; at R = 7, 8 (1.14) is;
* **its arithmetic**, in milli-units as prometheus-adapter and the HPA use them
  (``autoscaler.core.policies.hpa``): ``AverageValue`` divides by the replicas, ``Value``
  multiplies the ratio by the *ready* replicas (with 6 replicas of which 3 are ready, a
  served 8 against ``value: 6`` is ratio 1.33 and proposes ceil(1.33 x 3) = 4);
* its ``minReplicas`` / ``maxReplicas``.

Not modelled: the HPA's own ``behavior`` (the passthrough HPA sets no stabilisation and a
100-pods-per-second limit; ours already ran in the controller), and the fallback: when our
value is withheld (invalid data) the HPA holds, which is what the replay's loop does with
an invalid decision, except that the replay may also raise to ``spec.fallback`` after N
invalid cycles where the live controller's fallback never reaches the HPA (it is served
only with a valid decision).

Timing. The replay decides every ``syncPeriodSeconds`` (t_k = k x sync). The HPA's syncs
are at ``offset + n x hpa_sync``; each reads the newest decision at or before it. With
``hpa_sync`` a whole multiple of the sync period, the decision an HPA sync reads is the
one at the start of the sync period holding that HPA sync, so ``wrap_decide`` applies the
HPA at exactly those decisions and holds at the others. The rest of the phase
(``offset`` modulo the sync period: 0.4 s of a 1-s period, say) is a fixed delay from
that decision to the HPA's write, which belongs in the replay's actuation delay.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from autoscaler.core.policies.hpa import (
    Tolerances,
    average_value_replicas,
    target_milli,
    usage_milli,
    value_replicas,
)
from autoscaler.core.spec import Spec
from autoscaler.core.types import Decision, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.sim.replay import DecideFn

AVERAGE_VALUE, VALUE = "AverageValue", "Value"


@dataclass(frozen=True, slots=True)
class StockHpa:
    """A stock HPA on one External metric: our decided replica count."""

    sync_period_s: float
    """Seconds between its syncs (kube-controller-manager's
    ``--horizontal-pod-autoscaler-sync-period``)."""
    offset_s: float = 0.0
    """Time of its first sync after the trace starts, seconds, in [0, sync_period_s)."""
    tolerance: float = 0.1
    """Relative tolerance of the usage ratio, both directions (``--horizontal-pod-
    autoscaler-tolerance``)."""
    target_type: str = AVERAGE_VALUE
    """``AverageValue`` or ``Value``."""
    target: float = 1.0
    """The target quantity (``averageValue: "1"`` lands exactly on our count)."""
    min_replicas: int = 1
    max_replicas: int | None = None
    """None: the autoscaler spec's ``maxReplicas``."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sync_period_s) and 0 < self.sync_period_s <= 3600):
            raise SpecError("hpa.syncPeriodSeconds", self.sync_period_s, "> 0 and <= 3600")
        if not (math.isfinite(self.offset_s) and 0 <= self.offset_s < self.sync_period_s):
            raise SpecError("hpa.offsetSeconds", self.offset_s,
                            f">= 0 and < the HPA's sync period ({self.sync_period_s:g})")
        if not (math.isfinite(self.tolerance) and 0 <= self.tolerance < 1):
            raise SpecError("hpa.tolerance", self.tolerance, ">= 0 and < 1")
        if self.target_type not in (AVERAGE_VALUE, VALUE):
            raise SpecError("hpa.target.type", self.target_type, "AverageValue or Value")
        if not (math.isfinite(self.target) and self.target > 0):
            raise SpecError("hpa.target", self.target, "> 0")

    def proposal(self, served: float, current: int, ready: int, max_replicas: int) -> int:
        """The count one HPA sync writes, given the served value, ``spec.replicas`` (the
        HPA divides by ``status.replicas``, which equals it once the pods exist) and the
        ready replicas; clamped to [minReplicas, maxReplicas].

        Examples (tolerance 0.1, AverageValue 1): served 8 at 7 replicas -> 8 (ratio
        1.14); served 9 at 10 -> 10 (ratio 0.9: inside); served 11 at 10 -> 10.
        """
        tol = Tolerances(scale_down=self.tolerance, scale_up=self.tolerance)
        u_m, t_m = usage_milli(served), target_milli(self.target)
        if self.target_type == AVERAGE_VALUE:
            n = average_value_replicas(u_m, t_m, current, tol).replicas
        else:
            n = value_replicas(u_m, t_m, current, ready, tol).replicas
        upper = self.max_replicas if self.max_replicas is not None else max_replicas
        return max(self.min_replicas, min(upper, n))

    def reads_at(self, t: float, decision_period_s: float) -> bool:
        """True when an HPA sync falls in [t, t + decision_period_s), i.e. reads the
        decision made at ``t`` (the newest one when it syncs).

        Example: HPA every 2 s from 0.4 s, decisions every 1 s: the decision at 2 s is read
        by the sync at 2.4 s; the one at 3 s by none (the sync at 4.4 s reads the one at 4).
        """
        # The first sync at or after t (1 us of slack for float sums of the sync period).
        n = math.ceil((t - self.offset_s) / self.sync_period_s - 1e-6)
        first = self.offset_s + max(0, n) * self.sync_period_s
        return first < t + decision_period_s - 1e-6


def check_period(hpa: StockHpa, spec: Spec, option: str = "hpa.syncPeriodSeconds") -> None:
    """Refuse an HPA sync period that is not a whole multiple of the spec's (see the module
    docstring: only then is the phase a fixed delay). 2 s over 1 s passes; 1.5 s does not."""
    k = hpa.sync_period_s / spec.sync_period_s
    if k < 1 - 1e-9 or abs(k - round(k)) > 1e-9:
        raise SpecError(option, hpa.sync_period_s,
                        f"a whole multiple of the spec's syncPeriodSeconds "
                        f"({spec.sync_period_s:g})")


def wrap_decide(inner: DecideFn, hpa: StockHpa, *, option: str = "hpa.syncPeriodSeconds"
                ) -> DecideFn:
    """``inner`` (our policy, as the controller runs it) followed by ``hpa``.

    The inner policy decides every sync period, from the count the HPA last wrote, and its
    state (stabilisation history, forecasts) advances every time, as in the controller.
    At decisions an HPA sync reads, the HPA's proposal from the served count is returned;
    at the others, the current count (the HPA has not looked). An invalid inner decision
    is returned as it is: the value is withheld and the HPA holds. ``check_period`` runs
    on every call (``option`` names the setting in its error).
    """

    def decide(snap: Snapshot, state: State, spec: Spec, now: float
               ) -> tuple[Decision, State]:
        check_period(hpa, spec, option)
        d, new_state = inner(snap, state, spec, now)
        if not d.valid:
            return d, new_state
        current = snap.current_replicas
        if not hpa.reads_at(now, spec.sync_period_s):
            return replace(d, replicas=current, message=(
                f"{d.message}; served {d.replicas}, the HPA has not synced (holding "
                f"{current})")), new_state
        n = hpa.proposal(float(d.replicas), current, snap.ready_replicas, spec.max_replicas)
        if n == d.replicas:
            return d, new_state
        return replace(d, replicas=n, message=(
            f"{d.message}; served {d.replicas}, the HPA writes {n} ({hpa.target_type} "
            f"{hpa.target:g}, tolerance {hpa.tolerance:g}, {current} replicas, "
            f"{snap.ready_replicas} ready)")), new_state

    return decide


class HpaStage:
    """``wrap_decide`` with ``hpa`` as a ``ReplayOptions.decide_stage``, whose ``check``
    refuses a spec it cannot follow before a replay starts."""

    def __init__(self, hpa: StockHpa, option: str = "hpa.syncPeriodSeconds") -> None:
        self.hpa = hpa
        self.option = option

    def __call__(self, inner: DecideFn) -> DecideFn:
        return wrap_decide(inner, self.hpa, option=self.option)

    def check(self, spec: Spec) -> None:
        check_period(self.hpa, spec, self.option)
