"""Parameter search on replayed traffic (``autoscaler tune``).

``spaces`` holds every tuned knob and its bounds, ``pareto`` the front of (GPU-hours,
attainment), ``searching`` the candidate evaluation, the optuna search, the deterministic
sharded sweep and the per-policy outcome. The HTML page and plot are
``autoscaler.reporting.tune_report``.

Layering: above ``autoscaler.replaying`` / ``sim`` / ``traces`` (it replays through them);
nothing below imports it.
"""

from autoscaler.tuning.pareto import dominates, pareto_front
from autoscaler.tuning.searching import (
    HELD_OUT_SCORING,
    Candidate,
    Context,
    Outcome,
    TuneSettings,
    candidate_list,
    evaluate,
    finish,
    held_out_summary,
    outcome_json,
    prepare,
    run_shard,
    search,
    shard_slice,
    split_trace,
    sweep,
)
from autoscaler.tuning.spaces import (
    SPACES,
    TUNABLE,
    apply_params,
    default_params,
    from_unit,
    space_for,
)

__all__ = [
    "HELD_OUT_SCORING", "SPACES", "TUNABLE", "Candidate", "Context", "Outcome", "TuneSettings",
    "apply_params", "candidate_list", "default_params", "dominates", "evaluate", "finish",
    "from_unit", "held_out_summary", "outcome_json", "pareto_front", "prepare", "run_shard",
    "search", "shard_slice", "space_for", "split_trace", "sweep",
]
