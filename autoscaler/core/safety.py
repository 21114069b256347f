"""Safety rules every loop applies after ``decide``: the live controller and the replay.

``decide`` already holds on missing or stale data (``valid=False``, replicas = current).
What it cannot know is how long the data has been missing: that is the caller's count of
consecutive invalid cycles, kept next to the core's ``State`` and passed back in here.

The fallback rule: after ``failure_threshold`` consecutive invalid cycles the count is
raised to ``fallback.replicas`` if it is below; it is never lowered. With a threshold of 3
and a 15-s sync period, a fleet at 2 replicas whose metrics vanish holds at 2 for 30 s and
is raised to a fallback of 6 on the third invalid cycle (45 s).
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.core import defaults as d
from autoscaler.core.types import Decision, Reason
from autoscaler.errors import SpecError


@dataclass(frozen=True, slots=True)
class Fallback:
    """What to hold while metrics stay unusable (the CR's ``fallback``)."""

    replicas: int
    """Replicas to hold at least while metrics are missing (never a scale-down)."""
    failure_threshold: int = d.FALLBACK_FAILURE_THRESHOLD
    """Consecutive cycles without usable metrics before the fallback applies."""

    def validate(self, min_replicas: int, max_replicas: int, path: str = "fallback") -> None:
        if (isinstance(self.failure_threshold, bool) or not isinstance(self.failure_threshold, int)
                or not 1 <= self.failure_threshold <= d.FALLBACK_MAX_FAILURE_THRESHOLD):
            raise SpecError(f"{path}.failureThreshold", self.failure_threshold,
                            f"an integer 1..{d.FALLBACK_MAX_FAILURE_THRESHOLD}")
        if (isinstance(self.replicas, bool) or not isinstance(self.replicas, int)
                or not min_replicas <= self.replicas <= max_replicas):
            raise SpecError(f"{path}.replicas", self.replicas,
                            f"an integer within [minReplicas, maxReplicas] "
                            f"([{min_replicas}, {max_replicas}])")


@dataclass(frozen=True, slots=True)
class Guarded:
    """The count to act on after the safety rules, and why."""

    replicas: int
    reason: Reason
    message: str
    failures: int
    """Consecutive invalid cycles so far (0 after a valid one): pass it back next cycle."""
    acted: bool
    """True when a rule changed the decision (the fallback raised the count)."""


def guard(decision: Decision, *, current: int, failures: int, fallback: Fallback | None,
          max_replicas: int) -> Guarded:
    """Apply the hold and fallback rules to one decision.

    A valid decision passes through and resets the count of failures. An invalid one holds
    at ``current`` (never lower); from the ``failure_threshold``-th consecutive one on, a
    count below ``fallback.replicas`` is raised to it (capped at ``max_replicas``).

    A scale-up taken on lower bounds (``Reason.SCALE_UP_ON_LOWER_BOUND``) is acted on, but
    the metrics are still not usable as the load, so it counts as a failure like a hold: a
    fleet whose rate stays partial (one pod's exporter broken) reaches its fallback on the
    same cycle as without the rule, and the fallback only ever raises the count further.
    Worked number, threshold 3, fallback 6, current 4: hold, scale-up to 5 on a bound,
    hold: the third cycle raises 5 to 6.
    """
    on_bounds = decision.valid and decision.reason is Reason.SCALE_UP_ON_LOWER_BOUND
    if decision.valid and not on_bounds:
        return Guarded(decision.replicas, decision.reason, decision.message, 0, False)
    failures += 1
    held = max(current, decision.replicas) if on_bounds else current
    if (fallback is not None and failures >= fallback.failure_threshold
            and held < fallback.replicas):
        target = min(fallback.replicas, max_replicas)
        return Guarded(target, Reason.FALLBACK,
                       f"{failures} cycles without usable metrics: holding at least "
                       f"{fallback.replicas}", failures, True)
    return Guarded(held, decision.reason, decision.message, failures, False)
