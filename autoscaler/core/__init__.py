"""The pure decision core: no I/O, no clock, no cluster or Prometheus clients.

``decide(snapshot, state, spec, now)`` is the one entry point; the live controller and the
replay simulator both call it.
"""

from autoscaler.core.decide import decide
from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.core.types import Decision, MetricValue, Reason, Signal, Snapshot, State

__all__ = [
    "Decision",
    "MetricValue",
    "PolicyKind",
    "Reason",
    "Signal",
    "Snapshot",
    "Spec",
    "State",
    "decide",
]
