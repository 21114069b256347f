"""The replay simulator: replica profiles, two engines, a fake Prometheus and the replay
loop that drives the pure decision core (``autoscaler.core.decide``) over a trace."""

from autoscaler.sim.calibrate import capacity_at_slo
from autoscaler.sim.profiles import (
    DEFAULT_PROFILE,
    ReplicaProfile,
    builtin_profiles,
    load_profile,
)
from autoscaler.sim.replay import replay
from autoscaler.sim.result import ReplayResult, ReplaySummary, Timeline

__all__ = [
    "DEFAULT_PROFILE",
    "ReplayResult",
    "ReplaySummary",
    "ReplicaProfile",
    "Timeline",
    "builtin_profiles",
    "capacity_at_slo",
    "load_profile",
    "replay",
]
