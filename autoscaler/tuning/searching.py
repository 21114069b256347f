"""Tune policies on a replayed trace: evaluate candidates, search with optuna or sweep a
deterministic candidate list in shards, and sum it all up per policy.

The goal is the fewest GPU-hours subject to SLO attainment >= a target. Every policy gets
the same number of candidates (``budget``), so a comparison is always tuned against tuned;
the hindsight policy (a heuristic with foresight, not a bound) is replayed once for
reference, and every figure also carries the proven lower bound on GPU-hours at its
attainment (``autoscaler/sim/bound.py``) and the ratio to it.

Overfitting guard: candidates are replayed on the first ``1 - holdout`` of the trace (time
ordered); no candidate is chosen on the rest. Each policy's winner (and hindsight) is then
scored on that held-out rest as a *continuation*: the winner is replayed over the whole
trace and only the held-out part is scored (``replay(score_from_s=cut)``: attainment,
GPU-hours, the bound, starts and scale events over [cut, end)). So the fleet, the fake
Prometheus' history and the policy's state at the cut are what the in-sample part left, as
they would be for the tuned policy running on live. Replaying the held-out part on its own
would measure a restart: a fleet sized by hindsight, an empty Prometheus and a fresh policy
state at the cut (``HELD_OUT_SCORING``). Its cost: one whole-trace replay per winner
instead of a quarter-trace one, +0.75 of a trace per policy against the budget's 0.75 x
budget (+4% at budget 24).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.errors import AutoscalerError, SpecError
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.sim.replay import replay
from autoscaler.traces.model import Trace
from autoscaler.tuning.pareto import pareto_front
from autoscaler.tuning.spaces import (
    TUNABLE,
    Params,
    apply_params,
    default_params,
    distance,
    from_unit,
    space_for,
    suggest,
)

HELD_OUT_SCORING = (
    "continuation: each winner replayed over the whole trace, scored over the held-out part "
    "only (attainment, GPU-hours, bound, starts and scale events in [cut, end)); the fleet, "
    "Prometheus history and policy state at the cut are what the in-sample part left")
"""What the held-out figures measure (in the tune JSON's ``split`` and the reports)."""

MAX_SLO_PER_PROMPT_TOKEN = 0.01
"""The largest ``--slo-ttft-per-prompt-token``, seconds/token: ``autoscaler replay``'s bound
(10 s more for a 1,000-token prompt)."""

MIN_PART_S = 600.0
"""Each side of the holdout split must span at least 10 minutes (40 decisions at 15 s):
less is not a replay worth tuning on, or judging by."""

SELECT_ON_FOLDS = False
"""Off: winners are chosen on the whole in-sample part. On: on rolling-origin folds too
(``fold_count``): a candidate meets the target in sample when the whole part does *and*
so does every fold after the first, each scored as a continuation of the replay before
it, as the held-out part is. The first fold is the replay's start (an empty Prometheus,
no history, a fleet at the start count): no held-out window ever starts that way, so it
counts only through the whole part (Azure code 1 h, seed 0: every policy's first 15 min
is 59.6-98.7 %). Every policy is chosen the same way, from the same replays (no extra
budget); the folds are measured and written to the JSON either way.
Why off (``tune_all --quick --seeds 0``, sixth session, both without predictive's
behaviour window): it made predictive dearer held out where its misses sit in one window.
The demo's in-sample misses are in its second hour (14 of predictive's 24 candidates at
89.9-98.98 % there, none below 99.9 % in the other two), so its winner moved from 8.41
GPU-h in sample (2.01 held out) to 11.25 (3.05), and the best baseline from the KPA's
2.00 to the HPA's 2.22: gap closed -68 %, against -1 % without folds. Azure code 1 h:
predictive 1.19 held out with or without folds. Azure code x5: -67 % with folds, -161 %
without (its best baseline changed, KPA 0.83 -> HPA 0.99, both missing 99 % held out);
conv and conv x5 unchanged. One seed: the code x5 gain is a baseline's, not
predictive's (1.43 vs 1.62)."""


@dataclass(frozen=True)
class TuneSettings:
    """What is searched and how (units in the names)."""

    policies: tuple[PolicyKind, ...] = TUNABLE
    budget: int = 40
    """Candidates replayed per policy."""
    attainment: float = 0.99
    """SLO attainment target: a candidate is feasible when its attainment >= this."""
    slo_ttft_s: float = 2.0
    slo_ttft_s_per_prompt_token: float = 0.0
    """Extra TTFT objective per prompt token, seconds/token (0..0.01, ``SLO``): every
    candidate's replay, its attainment and its bound are judged at slo_ttft_s + this x the
    request's prompt tokens. 0 = a flat objective."""
    holdout: float = 0.25
    """Fraction of the trace (its end) kept out of tuning; 0 = tune on all of it."""
    seed: int = 0
    engine: str = "auto"

    def validate(self) -> None:
        if not self.policies:
            raise SpecError("--policy", "", f"one or more of {', '.join(TUNABLE)}")
        for p in self.policies:
            space_for(p)
        if not (isinstance(self.budget, int) and self.budget >= 1):
            raise SpecError("--budget", self.budget, "a whole number >= 1")
        if not (0 < self.attainment <= 1):
            raise SpecError("--attainment", self.attainment, "> 0 and <= 1")
        if not (math.isfinite(self.slo_ttft_s) and self.slo_ttft_s > 0):
            raise SpecError("--slo-ttft", self.slo_ttft_s, "a finite number of seconds > 0")
        if not (0.0 <= self.slo_ttft_s_per_prompt_token <= MAX_SLO_PER_PROMPT_TOKEN):
            raise SpecError("--slo-ttft-per-prompt-token", self.slo_ttft_s_per_prompt_token,
                            f"a number >= 0 and <= {MAX_SLO_PER_PROMPT_TOKEN:g}")
        if not (0 <= self.holdout < 1):
            raise SpecError("--holdout", self.holdout, ">= 0 and < 1")
        if self.engine not in ("auto", "request", "fluid"):
            raise SpecError("--engine", self.engine, "auto, request or fluid")


@dataclass(frozen=True)
class Context:
    """Everything a worker needs to replay a candidate (picklable)."""

    settings: TuneSettings
    trace: Trace
    """The whole trace (its name and span are reported)."""
    train: Trace
    test: Trace | None
    profile: ReplicaProfile
    base: dict[PolicyKind, Spec]
    """Each policy's replay default on the training part; candidates change tuned fields."""


@dataclass(frozen=True)
class Candidate:
    """One replayed configuration and what it cost."""

    policy: str
    index: int
    params: Params
    gpu_hours: float = math.nan
    attainment: float = math.nan
    scale_events: int = 0
    ttft_p99_s: float = math.nan
    mean_replicas: float = math.nan
    bound_gpu_hours: float = math.nan
    """The proven lower bound on GPU-hours at this candidate's attainment (same part)."""
    error: str | None = None
    """Why it could not be replayed (its spec was invalid); then it has no figures."""
    fold_attainments: tuple[float, ...] = ()
    """Attainment over each rolling-origin fold of the in-sample part, in time order
    (``fold_count``; NaN for a fold where nothing arrived). Empty: not measured (a
    candidate read from an older shard file), and the whole part's attainment stands in."""

    @property
    def worst_fold(self) -> float:
        """What the candidate is chosen on: the lowest of the whole part's attainment and
        every fold's after the first (``SELECT_ON_FOLDS``; folds where nothing arrived are
        skipped). The whole part's alone when fewer than two folds were measured or
        ``SELECT_ON_FOLDS`` is off. Worked number: whole 99.37 %, folds 98.11 / 100 /
        100 % -> 99.37 % (the first fold is the replay's start); folds 100 / 98.0 / 100 %
        -> 98.0 %."""
        if not SELECT_ON_FOLDS:
            return self.attainment
        later = [a for a in self.fold_attainments[1:] if math.isfinite(a)]
        return min([self.attainment, *later])

    def feasible(self, target: float) -> bool:
        return self.error is None and self.worst_fold >= target


def split_trace(trace: Trace, holdout: float) -> tuple[Trace, Trace | None]:
    """(first ``1 - holdout`` of the trace, the rest re-based to start at 0 s).

    Rate-level traces are cut at a bin edge (the one at or before the exact cut). Worked
    number: 60-s bins over 100 min with holdout 0.25 -> cut at 75 min exactly; over 90 min
    -> 67.5 min, moved back to 67 min."""
    if holdout == 0:
        return trace, None
    cut = trace.duration_s * (1.0 - holdout)
    if trace.arrivals_s is not None:
        k = int(np.searchsorted(trace.arrivals_s, cut, side="left"))

        def part(sl: slice, shift: float, dur: float, tag: str) -> Trace:
            assert trace.arrivals_s is not None
            return replace(
                trace, name=f"{trace.name}[{tag}]", duration_s=dur,
                arrivals_s=np.asarray(trace.arrivals_s[sl] - shift, dtype=np.float64),
                prompt_tokens=None if trace.prompt_tokens is None else trace.prompt_tokens[sl],
                output_tokens=None if trace.output_tokens is None else trace.output_tokens[sl])

        train = part(slice(0, k), 0.0, cut, "train")
        test = part(slice(k, None), cut, trace.duration_s - cut, "holdout")
    else:
        assert trace.rates_rps is not None and trace.resolution_s is not None
        res = trace.resolution_s
        nb = int(cut // res)
        cut = nb * res
        train = replace(trace, name=f"{trace.name}[train]", duration_s=cut,
                        rates_rps=trace.rates_rps[:nb])
        test = replace(trace, name=f"{trace.name}[holdout]", duration_s=trace.duration_s - cut,
                       rates_rps=trace.rates_rps[nb:])
    for label, p in (("training", train), ("held-out", test)):
        if p.duration_s < MIN_PART_S:
            raise SpecError("--holdout", holdout, f"a split leaving >= {MIN_PART_S:g} s on each "
                            f"side (the {label} part of this {trace.duration_s:g}-s trace "
                            f"would last {p.duration_s:g} s)")
    return train, test


def fold_count(train_s: float, holdout: float) -> int:
    """How many rolling-origin folds the in-sample part is cut into: as many as it holds
    windows as long as the held-out part (the window a winner is judged on), each at least
    ``MIN_PART_S``; 1 without a holdout. Worked numbers: holdout 0.25 -> 0.75 / 0.25 = 3
    folds (the demo's 10,800 s in sample: three 3,600-s folds; Azure code 1 h: three 900-s
    folds); holdout 0.1 on a 1-h trace -> 9 windows of 360 s, but 3,240 s // 600 = 5 folds
    of 648 s."""
    if holdout <= 0:
        return 1
    windows = max(1, round((1.0 - holdout) / holdout))
    return max(1, min(windows, int(train_s // MIN_PART_S)))


def fold_attainments(t_s: Any, weight: Any, attainment: Any, span_s: float,
                     folds: int) -> tuple[float, ...]:
    """Attainment of each of ``folds`` equal consecutive windows of [0, span_s), from per-bin
    series (bin start ``t_s``, arrivals ``weight``, attainment): sum(weight x attainment) /
    sum(weight) over the bins that start in the window; NaN where nothing arrived. A bin
    belongs to the window its start falls in (bins are 60 s and fold edges multiples of
    60 s at holdout 0.25 on whole-minute traces, so no bin straddles an edge there).
    Worked number: bins of 10 and 30 requests at 0.9 and 1.0 in one fold -> 39 / 40."""
    t = np.asarray(t_s, dtype=np.float64)
    w = np.nan_to_num(np.asarray(weight, dtype=np.float64), nan=0.0)
    a = np.asarray(attainment, dtype=np.float64)
    use = (w > 0) & np.isfinite(a)
    fold_s = span_s / folds
    k = np.clip((t // fold_s).astype(np.int64), 0, folds - 1)
    tot = np.bincount(k[use], weights=w[use], minlength=folds)
    met = np.bincount(k[use], weights=(w * np.where(use, a, 0.0))[use], minlength=folds)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(tot > 0, met / np.where(tot > 0, tot, 1.0), math.nan)
    return tuple(float(x) for x in out)


def prepare(trace: Trace, profile: ReplicaProfile, settings: TuneSettings) -> Context:
    """Split the trace and build each policy's base spec from its training part only."""
    settings.validate()
    train, test = split_trace(trace, settings.holdout)
    # The slope reaches every candidate through the base specs' ``slo`` (``apply_params``
    # keeps it), so each replay, its attainment and its bound use the length-aware objective.
    options = ReplayOptions(slo_ttft_s=settings.slo_ttft_s, engine=settings.engine,
                            seed=settings.seed,
                            slo_ttft_s_per_prompt_token=settings.slo_ttft_s_per_prompt_token)
    capacity = capacity_for(train, profile, settings.slo_ttft_s,
                            settings.slo_ttft_s_per_prompt_token)
    specs = default_specs(train, profile, capacity, options)
    base = {k: replace(s, slo=replace(s.slo, target_attainment=settings.attainment))
            for k, s in specs.items()
            if k in (*settings.policies, PolicyKind.ORACLE)}
    return Context(settings, trace, train, test, profile, base)


def _replay_result(ctx: Context, spec: Spec, trace: Trace, score_from_s: float = 0.0) -> Any:
    return replay(trace, spec, ctx.profile, engine=ctx.settings.engine, seed=ctx.settings.seed,
                  scrape_interval_s=min(15.0, spec.sync_period_s), score_from_s=score_from_s)


def _replay(ctx: Context, spec: Spec, trace: Trace, score_from_s: float = 0.0) -> Any:
    return _replay_result(ctx, spec, trace, score_from_s).summary


def held_out_summary(ctx: Context, spec: Spec) -> Any:
    """``spec`` scored on the held-out part as a continuation (module docstring): the whole
    trace replayed, the part from the cut (the training part's end) on scored."""
    return _replay(ctx, spec, ctx.trace, score_from_s=float(ctx.train.duration_s))


def evaluate(ctx: Context, policy: PolicyKind, index: int, params: Params) -> Candidate:
    """Replay one candidate on the training part. An invalid spec is a failed candidate
    (with its reason), not an exception: one bad point must not end a long search."""
    try:
        spec = apply_params(ctx.base[PolicyKind(policy)], params)
    except SpecError as exc:
        return Candidate(str(policy), index, dict(params), error=str(exc))
    r = _replay_result(ctx, spec, ctx.train)
    s, tl = r.summary, r.timeline
    bin_s = float(tl.t_s[1] - tl.t_s[0]) if len(tl.t_s) > 1 else float(ctx.train.duration_s)
    folds = fold_attainments(tl.t_s, tl.arrival_rps * bin_s, tl.attainment,
                             float(ctx.train.duration_s),
                             fold_count(float(ctx.train.duration_s), ctx.settings.holdout))
    return Candidate(str(policy), index, dict(params), gpu_hours=float(s.gpu_hours),
                     attainment=float(s.slo_attainment), scale_events=int(s.scale_events),
                     ttft_p99_s=float(s.ttft_p99_s), mean_replicas=float(s.mean_replicas),
                     bound_gpu_hours=float(s.bound_gpu_hours), fold_attainments=folds)


# --- Deterministic candidate lists, shards and the local sweep ------------------------------

def candidate_list(settings: TuneSettings) -> list[tuple[PolicyKind, int, Params]]:
    """Every policy's ``budget`` candidates, policy by policy: the first ``budget`` points of
    a scrambled Sobol sequence seeded by (seed, policy), mapped through ``from_unit``. The
    same settings give the same list on any machine (scipy's Sobol is deterministic for a
    seeded generator)."""
    from scipy.stats import qmc

    out: list[tuple[PolicyKind, int, Params]] = []
    for kind in settings.policies:
        d = len(space_for(kind))
        rng = np.random.default_rng([settings.seed, TUNABLE.index(PolicyKind(kind))])
        sobol = qmc.Sobol(d, scramble=True, seed=rng)
        m = max(0, math.ceil(math.log2(settings.budget)))
        points = sobol.random_base2(m)[: settings.budget]
        out += [(PolicyKind(kind), i, from_unit(kind, p.tolist())) for i, p in enumerate(points)]
    return out


def shard_slice(n: int, index: int, shards: int) -> list[int]:
    """Positions ``index, index + shards, ...`` of a list of ``n``: shard ``index`` of
    ``shards``. Interleaving spreads each policy (and each expensive corner) over shards."""
    if not (isinstance(shards, int) and shards >= 1):
        raise SpecError("--shards", shards, "a whole number >= 1")
    if not (isinstance(index, int) and 0 <= index < shards):
        raise SpecError("--index", index, f">= 0 and < --shards ({shards})")
    return list(range(index, n, shards))


def run_shard(ctx: Context, index: int, shards: int) -> list[Candidate]:
    """Evaluate shard ``index`` of ``shards`` of ``candidate_list(ctx.settings)``."""
    cands = candidate_list(ctx.settings)
    return [evaluate(ctx, *cands[i]) for i in shard_slice(len(cands), index, shards)]


_WORKER_CTX: Context | None = None


def _init_worker(ctx: Context) -> None:
    global _WORKER_CTX  # one context per worker process, set once by the pool
    _WORKER_CTX = ctx


def _worker_shard(index: int, shards: int) -> list[Candidate]:
    assert _WORKER_CTX is not None
    return run_shard(_WORKER_CTX, index, shards)


def _worker_eval(policy: PolicyKind, index: int, params: Params) -> Candidate:
    assert _WORKER_CTX is not None
    return evaluate(_WORKER_CTX, policy, index, params)


def _pool(ctx: Context, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(ctx,))


def sweep(ctx: Context, *, shards: int, workers: int = 1,
          on_shard: Callable[[int], None] | None = None) -> list[Candidate]:
    """All shards of the candidate list, in a process pool of ``workers`` (inline for 1),
    merged in candidate order: the same list ``shards`` separate ``run_shard`` calls give."""
    if not (isinstance(workers, int) and workers >= 1):
        raise SpecError("--workers", workers, "a whole number >= 1")
    parts: list[list[Candidate]] = []
    if workers == 1:
        for i in range(shards):
            parts.append(run_shard(ctx, i, shards))
            if on_shard is not None:
                on_shard(i)
    else:
        with _pool(ctx, workers) as pool:
            futures = [pool.submit(_worker_shard, i, shards) for i in range(shards)]
            for i, f in enumerate(futures):
                parts.append(f.result())
                if on_shard is not None:
                    on_shard(i)
    return merge_candidates(parts, ctx.settings)


def merge_candidates(parts: Iterable[Sequence[Candidate]],
                     settings: TuneSettings) -> list[Candidate]:
    """Shard results back in candidate-list order; every candidate exactly once."""
    order = {(str(k), i): pos for pos, (k, i, _) in enumerate(candidate_list(settings))}
    seen: dict[int, Candidate] = {}
    for part in parts:
        for c in part:
            pos = order.get((c.policy, c.index))
            if pos is None:
                raise AutoscalerError(f"merge: candidate {c.policy}#{c.index} is not in the "
                                      "candidate list of these settings")
            if pos in seen:
                raise AutoscalerError(f"merge: candidate {c.policy}#{c.index} appears twice "
                                      "(overlapping shard files?)")
            seen[pos] = c
    missing = [f"{k}#{i}" for pos, (k, i, _) in enumerate(candidate_list(settings))
               if pos not in seen]
    if missing:
        raise AutoscalerError(f"merge: {len(missing)} candidate(s) missing, e.g. "
                              f"{', '.join(missing[:3])} (a shard did not finish?)")
    return [seen[pos] for pos in sorted(seen)]


# --- The optuna search ----------------------------------------------------------------------

def study_key(ctx: Context) -> str:
    """Names a study by what its figures depend on (not the budget or workers), so a re-run
    with the same inputs continues it and a different one never mixes with it."""
    s = ctx.settings
    ident = {"trace": ctx.trace.name, "duration_s": ctx.trace.duration_s,
             "requests": ctx.trace.request_count, "profile": ctx.profile.name,
             "attainment": s.attainment, "slo_ttft_s": s.slo_ttft_s, "holdout": s.holdout,
             "seed": s.seed, "engine": s.engine}
    if s.slo_ttft_s_per_prompt_token:
        # Only when set: a flat objective keeps the key earlier journals were written under.
        ident["slo_ttft_s_per_prompt_token"] = s.slo_ttft_s_per_prompt_token
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def _to_candidate(policy: PolicyKind, trial: Any) -> Candidate:
    a = trial.user_attrs
    return Candidate(str(policy), int(a.get("index", trial.number)), dict(trial.params),
                     gpu_hours=float(a.get("gpu_hours", math.nan)),
                     attainment=float(a.get("attainment", math.nan)),
                     scale_events=int(a.get("scale_events", 0)),
                     ttft_p99_s=float(a.get("ttft_p99_s", math.nan)),
                     mean_replicas=float(a.get("mean_replicas", math.nan)),
                     bound_gpu_hours=float(a.get("bound_gpu_hours", math.nan)),
                     error=a.get("error"),
                     fold_attainments=tuple(math.nan if x is None else float(x)
                                            for x in a.get("fold_attainments", ())))


def search(ctx: Context, *, storage: Path | None = None, workers: int = 1,
           on_result: Callable[[Candidate], None] | None = None) -> list[Candidate]:
    """TPE search with the attainment constraint, ``budget`` candidates per policy, asked
    and told in batches of ``workers`` (the batch is replayed in a process pool).

    ``storage``: an optuna journal file; a re-run with the same inputs continues each
    policy's study up to the budget (a candidate interrupted mid-replay is marked failed and
    not counted). None keeps the studies in memory."""
    import optuna
    from optuna.trial import TrialState

    if not (isinstance(workers, int) and workers >= 1):
        raise SpecError("--workers", workers, "a whole number >= 1")
    s = ctx.settings
    if storage is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        try:
            storage.parent.mkdir(parents=True, exist_ok=True)
            store: Any = JournalStorage(JournalFileBackend(str(storage)))
        except OSError as exc:
            raise AutoscalerError(f"--storage {storage}: cannot open: {exc}") from exc
    else:
        store = None
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pool = _pool(ctx, workers) if workers > 1 else None
    out: list[Candidate] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for kind in s.policies:
                study = optuna.create_study(
                    study_name=f"tune-{kind}-{study_key(ctx)}", storage=store,
                    direction="minimize", load_if_exists=True)
                for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    study.tell(stale.number, state=TrialState.FAIL)  # interrupted earlier

                def counted(study: Any = study) -> list[Any]:
                    return [ft for ft in study.get_trials(deepcopy=False)
                            if ft.state == TrialState.COMPLETE
                            or (ft.state == TrialState.FAIL and "error" in ft.user_attrs)]

                done = len(counted())
                if not study.get_trials(deepcopy=False):
                    # The first candidate of every policy is its replay default (the same
                    # one of the budget for each), so TPE starts from a known point and a
                    # winner is never worse in sample than the defaults when those meet
                    # the target; its random start-up points follow.
                    study.enqueue_trial(dict(default_params(ctx.base[kind])))
                # Reseeded by progress, so a resumed study does not redraw the random
                # start-up points it already replayed.
                study.sampler = optuna.samplers.TPESampler(
                    seed=s.seed * 100_003 + done, n_startup_trials=max(4, min(10, s.budget // 4)))
                while done < s.budget:
                    batch = [study.ask() for _ in range(min(workers, s.budget - done))]
                    params = [suggest(t, kind) for t in batch]
                    if pool is None:
                        results = [evaluate(ctx, kind, t.number, p)
                                   for t, p in zip(batch, params, strict=True)]
                    else:
                        results = list(pool.map(_worker_eval, [kind] * len(batch),
                                                [t.number for t in batch], params))
                    for t, r in zip(batch, results, strict=True):
                        t.set_user_attr("index", t.number)
                        if r.error is not None:
                            t.set_user_attr("error", r.error)
                            study.tell(t, state=TrialState.FAIL)
                        else:
                            for key in ("gpu_hours", "attainment", "scale_events",
                                        "ttft_p99_s", "mean_replicas", "bound_gpu_hours"):
                                t.set_user_attr(key, getattr(r, key))
                            t.set_user_attr("fold_attainments",
                                            [_num(x) for x in r.fold_attainments])
                            # TPE ranks infeasible trials (shortfall > 0) below every
                            # feasible one, by shortfall; feasible ones by GPU-hours. The
                            # shortfall is the worst fold's, as winners are chosen on it.
                            t.set_constraint("attainment_shortfall", s.attainment - r.worst_fold)
                            study.tell(t, r.gpu_hours)
                        if on_result is not None:
                            on_result(r)
                    done += len(batch)
                out += [_to_candidate(kind, ft) for ft in counted()[: s.budget]]
    finally:
        optuna.logging.set_verbosity(level)
        if pool is not None:
            pool.shutdown()
    return out


# --- Summing up -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Figures:
    gpu_hours: float
    attainment: float
    gpu_vs_hindsight: float
    """GPU-hours / the hindsight policy's on the same part (the part lengths differ, this
    does not). Hindsight is a heuristic with foresight, not a floor: a ratio below 1 is
    possible."""
    scale_events: int
    bound_gpu_hours: float = math.nan
    """The proven lower bound on GPU-hours at this attainment on the same part."""

    @property
    def gpu_vs_bound(self) -> float:
        """GPU-hours / the proven lower bound (>= 1 by construction when both are known)."""
        b = self.bound_gpu_hours
        return self.gpu_hours / b if math.isfinite(b) and b > 0 else math.nan


@dataclass(frozen=True)
class PolicyOutcome:
    policy: str
    best: Candidate | None
    """Cheapest feasible candidate; if none is feasible, the highest attainment (check
    ``feasible``); None if no candidate could be replayed."""
    feasible: bool
    spec: Spec | None
    front: list[Candidate]
    candidates: list[Candidate]
    in_sample: Figures | None
    held_out: Figures | None


@dataclass(frozen=True)
class Outcome:
    ctx: Context
    method: str
    hindsight_in_sample: Figures
    hindsight_held_out: Figures | None
    policies: dict[str, PolicyOutcome]


def best_of(cands: Sequence[Candidate], target: float,
            prior: Params | None = None) -> tuple[Candidate | None, bool]:
    """(the winner, whether it meets ``target``): fewest GPU-hours among feasible candidates
    (``Candidate.feasible``: the whole in-sample part, and with ``SELECT_ON_FOLDS`` every
    later fold, meet ``target``, ``Candidate.worst_fold``; ties: fewer scale events, then
    nearest ``prior``, then lower index); else the highest ``worst_fold`` (ties: fewer
    GPU-hours, then nearest ``prior``, then lower index).

    ``prior`` is the policy's defaults point (``default_params``). Exact ties are common
    where the tuned part cannot tell candidates apart: on Azure conv x5, 12 of predictive's
    24 candidates held 4 replicas through the whole rising first 75 % (2.918 GPU-h each,
    no scale event) and differed only in how they release on the falling rest. The search
    order is no reason to prefer one of them; the defaults are a point every policy has,
    so a tie goes to the candidate that changes them least (``spaces.distance``)."""
    ok = [c for c in cands if c.error is None]

    def near(c: Candidate) -> float:
        if prior is None or set(c.params) != set(prior):
            return 0.0
        return distance(PolicyKind(c.policy), c.params, prior)

    feas = [c for c in ok if c.feasible(target)]
    if feas:
        return min(feas, key=lambda c: (c.gpu_hours, c.scale_events, near(c), c.index)), True
    if ok:
        return min(ok, key=lambda c: (-c.worst_fold, c.gpu_hours, near(c), c.index)), False
    return None, False


def _figures(summary: Any, hindsight_gpu: float) -> Figures:
    return Figures(float(summary.gpu_hours), float(summary.slo_attainment),
                   float(summary.gpu_hours) / hindsight_gpu if hindsight_gpu > 0 else math.nan,
                   int(summary.scale_events), float(summary.bound_gpu_hours))


def finish(ctx: Context, candidates: Sequence[Candidate], method: str) -> Outcome:
    """Best and Pareto front per policy, hindsight on both parts, and each winner replayed
    on the held-out part."""
    s = ctx.settings
    h_train = _replay(ctx, ctx.base[PolicyKind.HINDSIGHT], ctx.train)
    hindsight_in = _figures(h_train, float(h_train.gpu_hours))
    hindsight_out = None
    h_test_gpu = math.nan
    if ctx.test is not None:
        h_test = held_out_summary(ctx, ctx.base[PolicyKind.HINDSIGHT])
        h_test_gpu = float(h_test.gpu_hours)
        hindsight_out = _figures(h_test, h_test_gpu)
    policies: dict[str, PolicyOutcome] = {}
    for kind in s.policies:
        mine = [c for c in candidates if c.policy == str(kind)]
        ok = [c for c in mine if c.error is None]
        front = [ok[i] for i in pareto_front([(c.gpu_hours, c.attainment) for c in ok])]
        best, feasible = best_of(mine, s.attainment, default_params(ctx.base[kind]))
        spec = in_fig = out_fig = None
        if best is not None:
            spec = apply_params(ctx.base[kind], best.params)
            in_fig = Figures(best.gpu_hours, best.attainment,
                             best.gpu_hours / hindsight_in.gpu_hours
                             if hindsight_in.gpu_hours > 0 else math.nan, best.scale_events,
                             best.bound_gpu_hours)
            if ctx.test is not None:
                out_fig = _figures(held_out_summary(ctx, spec), h_test_gpu)
        policies[str(kind)] = PolicyOutcome(str(kind), best, feasible, spec, front, mine,
                                            in_fig, out_fig)
    return Outcome(ctx, method, hindsight_in, hindsight_out, policies)


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def candidate_json(c: Candidate) -> dict[str, Any]:
    d = asdict(c)
    for k in ("gpu_hours", "attainment", "ttft_p99_s", "mean_replicas", "bound_gpu_hours"):
        d[k] = _num(d[k])
    d["fold_attainments"] = [_num(x) for x in c.fold_attainments]
    return d


def candidate_from_json(d: dict[str, Any]) -> Candidate:
    def f(k: str) -> float:
        v = d.get(k)
        return math.nan if v is None else float(v)

    return Candidate(str(d["policy"]), int(d["index"]), dict(d["params"]),
                     gpu_hours=f("gpu_hours"), attainment=f("attainment"),
                     scale_events=int(d.get("scale_events", 0)), ttft_p99_s=f("ttft_p99_s"),
                     mean_replicas=f("mean_replicas"), bound_gpu_hours=f("bound_gpu_hours"),
                     error=d.get("error"),
                     # .get: shard files written before the folds have none (then the whole
                     # part's attainment stands in, ``Candidate.worst_fold``).
                     fold_attainments=tuple(math.nan if x is None else float(x)
                                            for x in d.get("fold_attainments") or ()))


def _fig_json(f: Figures | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {"gpu_hours": f.gpu_hours, "attainment": f.attainment,
            "gpu_vs_hindsight": _num(f.gpu_vs_hindsight),
            "bound_gpu_hours": _num(f.bound_gpu_hours), "gpu_vs_bound": _num(f.gpu_vs_bound),
            "scale_events": f.scale_events}


def settings_json(s: TuneSettings) -> dict[str, Any]:
    return {"policies": [str(p) for p in s.policies], "budget": s.budget,
            "attainment": s.attainment, "slo_ttft_s": s.slo_ttft_s,
            "slo_ttft_s_per_prompt_token": s.slo_ttft_s_per_prompt_token, "holdout": s.holdout,
            "seed": s.seed, "engine": s.engine}


def settings_from_json(d: dict[str, Any]) -> TuneSettings:
    try:
        s = TuneSettings(policies=tuple(PolicyKind(p) for p in d["policies"]),
                         budget=int(d["budget"]), attainment=float(d["attainment"]),
                         slo_ttft_s=float(d["slo_ttft_s"]),
                         # .get: shard files written before the option have no such key.
                         slo_ttft_s_per_prompt_token=float(
                             d.get("slo_ttft_s_per_prompt_token", 0.0)),
                         holdout=float(d["holdout"]),
                         seed=int(d["seed"]), engine=str(d["engine"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise AutoscalerError(f"settings: malformed ({exc})") from exc
    s.validate()
    return s


def outcome_json(out: Outcome) -> dict[str, Any]:
    """The documented JSON shape: settings (budget, seed, ...), trace and split, hindsight,
    and per policy the best candidate and its spec, the Pareto front, every candidate, and
    in-sample against held-out figures."""
    from autoscaler.config import spec_to_dict

    ctx = out.ctx
    policies: dict[str, Any] = {}
    for name, po in out.policies.items():
        degr = None
        if po.in_sample is not None and po.held_out is not None:
            degr = {
                "attainment_drop": po.in_sample.attainment - po.held_out.attainment,
                "gpu_vs_hindsight_ratio": _num(po.held_out.gpu_vs_hindsight
                                               / po.in_sample.gpu_vs_hindsight)
                if po.in_sample.gpu_vs_hindsight > 0 else None,
                "gpu_vs_bound_ratio": _num(po.held_out.gpu_vs_bound / po.in_sample.gpu_vs_bound)
                if po.in_sample.gpu_vs_bound > 0 else None,
                "meets_target_held_out": po.held_out.attainment >= ctx.settings.attainment,
            }
        policies[name] = {
            "feasible": po.feasible,
            "best": None if po.best is None else candidate_json(po.best),
            "spec": None if po.spec is None else spec_to_dict(po.spec),
            "in_sample": _fig_json(po.in_sample),
            "held_out": _fig_json(po.held_out),
            "degradation": degr,
            "pareto": [candidate_json(c) for c in po.front],
            "trials": len(po.candidates),
            "feasible_trials": sum(c.feasible(ctx.settings.attainment) for c in po.candidates),
            "failed_trials": sum(c.error is not None for c in po.candidates),
            "candidates": [candidate_json(c) for c in po.candidates],
        }
    return {
        "settings": settings_json(ctx.settings),
        "budget": ctx.settings.budget,
        "seed": ctx.settings.seed,
        "method": out.method,
        "trace": {"name": ctx.trace.name, "duration_s": float(ctx.trace.duration_s),
                  "requests": round(ctx.trace.request_count)},
        "split": {"holdout": ctx.settings.holdout, "train_s": float(ctx.train.duration_s),
                  "held_out_s": None if ctx.test is None else float(ctx.test.duration_s),
                  "held_out_scoring": None if ctx.test is None else HELD_OUT_SCORING},
        "profile": ctx.profile.name,
        "capacity_rps": ctx.base[PolicyKind.HINDSIGHT].capacity.requests_per_second,
        "hindsight": {"in_sample": _fig_json(out.hindsight_in_sample),
                      "held_out": _fig_json(out.hindsight_held_out)},
        "policies": policies,
    }


def overall_winner(out: Outcome) -> PolicyOutcome | None:
    """The cheapest feasible winner over the tuned policies (in-sample GPU-hours; ties go to
    the policy listed first); None if no policy met the target."""
    feas = [po for po in out.policies.values() if po.feasible and po.best is not None]
    if not feas:
        return None
    return min(feas, key=lambda po: po.best.gpu_hours if po.best is not None else math.inf)
