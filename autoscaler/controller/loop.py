"""The control loop: every InferenceAutoscaler, on its own period, through the same pure
``decide`` the replay runs.

One ``cycle(now)`` costs a constant number of calls however many autoscalers there are:
one LIST of the custom resources, one LIST per apps/v1 workload kind in use (served from the
API server's watch cache), one Prometheus round per distinct metrics source (one query per
signal for all targets), then writes only where something changed: a scale update when the
decision differs from the current count, a status patch when the status differs, an Event on
every scale and once per outage.

Safety rules, all enforced here at the edge and tested against a real API server:

* No usable metrics => the core returns ``valid=False`` and the count is held. After
  ``fallback.failureThreshold`` such cycles the count is raised to ``fallback.replicas`` if
  below it; it is never lowered.
* Metrics sources are queried concurrently and waited for at most
  ``Limits.source_deadline_s``: a hung Prometheus makes its autoscalers' metrics *missing*
  for the cycle (they hold) instead of stalling the loop. A failing source is backed off
  (doubling from ``source_backoff_s``), so 50 broken PromQL overrides do not cost the
  healthy autoscalers their cycle time. The cycle itself stops reconciling at
  ``cycle_deadline_s``; the rest stay due and go first next cycle.
* A scale write is a compare-and-set on ``spec.replicas`` (a JSON patch that tests the
  count the decision was made from; no resourceVersion), so the Deployment controller's own
  status updates never fail it. If the count did change under us, the scale is read afresh
  and, only because the count changed, decided again from the state before this cycle's
  decision (one decision is never applied twice to the core's state); at most
  ``SCALE_WRITE_ATTEMPTS`` writes per cycle. A write that still fails is visible: the
  ``AbleToScale`` condition (False, ``FailedUpdateScale``, the API server's words), a
  Warning Event ``FailedRescale`` per new reason, ``autoscaler_errors{kind="scale_write"}``
  and a log line. The core's scale events (behaviour rate limits) record what was
  written, not what was asked.
* Before writing a workload's scale, the loop looks for an HPA or a KEDA ScaledObject
  targeting it: if there is one, nothing is written (``ScalingActive=False``,
  ``ConflictingAutoscaler``).
* A workload whose count keeps being changed by another writer (3 changes we did not make
  within 10 minutes: a second controller fighting us) is left alone for 10 minutes, with
  ``ScalingActive=False``/``ConflictingWriter`` and an Event, instead of a tug-of-war.
* No write once ``may_write()`` says no: the leader's lease watchdog (``election.py``).
* GPUs run out: while the workload has fewer ready than desired replicas, its pods are
  listed; if some are Pending as unschedulable (``Insufficient nvidia.com/gpu``), a scale-up
  is held at the current count (more pods would only queue; in Metrics mode that is the
  count served to the HPA), ``CapacityAvailable=False``
  and one Warning Event per change. A scale-down goes through. A steady fleet (all ready)
  costs no pod LIST; a failed LIST keeps the last known verdict (Unknown condition), so it
  neither lifts a cap nor lowers anything. A fleet still starting is listed again at most
  once a minute while no scale-up is asked and its counts hold (``POD_RECHECK_S``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from autoscaler.controller import status as st
from autoscaler.controller.kube import (
    APPS_PLURALS,
    Competitor,
    Conflict,
    Forbidden,
    Kube,
    KubeError,
    NotFound,
    RawAutoscaler,
    ScaleInfo,
)
from autoscaler.controller.resource import KIND, Autoscaler, Mode, parse_autoscaler
from autoscaler.controller.schedulable import Assessment, assess, cap_scale_up
from autoscaler.controller.settings import Limits
from autoscaler.core.behavior import store_scale_event
from autoscaler.core.decide import decide
from autoscaler.core.safety import Fallback, guard
from autoscaler.core.spec import PolicyKind
from autoscaler.core.types import Decision, Signal, Snapshot, State
from autoscaler.core.warmup import warm_up
from autoscaler.errors import SpecError, TransientError
from autoscaler.metrics.backfill import HistoryRequest, backfill_many
from autoscaler.metrics.collect import (
    Collector,
    CollectorConfig,
    CycleResult,
    Observation,
    TargetKey,
)
from autoscaler.metrics.presets import get_preset
from autoscaler.metrics.source import MetricsSource, QueryError

log = logging.getLogger("autoscaler.controller")
decision_log = logging.getLogger("autoscaler.decisions")
"""The decision log: one record per decision, its figures as ``extra`` fields (top-level
keys of the JSON log line). INFO when the desired count or the reason changed, DEBUG
otherwise: 1,000 steady autoscalers at a 15-s sync would be 67 lines a second at INFO."""

STATUS_REFRESH_S = 300.0
"""An unchanged status (same counts, reason and condition states) is rewritten at most this
often (s), to refresh its forecast figures and messages (the controller's /metrics has them
live). 1,000 steady autoscalers: 3.3 PATCHes/s instead of 67 at a write per cycle."""
RELIST_S = 15.0
"""Re-list the custom resources at least this often (s), even when none is due: a new or
edited autoscaler is picked up within this time."""
POD_RECHECK_S = 60.0
"""While a workload has fewer ready replicas than it asks for, its pods are listed again at
most this often (s) when the decision asks for no more replicas than it has and its counts
(replicas, ready) are those of the last LIST: the pods' verdict caps only a scale-up, so
then it can change the ``CapacityAvailable`` condition and its Event, never a count. A
scale-up always lists afresh. The same minute as ``Limits.competitor_ttl_s``, the other
cluster fact the loop reuses. 1,000 workloads whose pods are still starting, at a 15-s
sync: 17 pod LISTs a second instead of 67 (half the controller's CPU in
``benchmarks/controller_load.py``, whose pods never become ready)."""
SCALE_WRITE_ATTEMPTS = 3
"""Scale writes per autoscaler per cycle: the first, and up to two more after the count
changed under us (each after a fresh read and a new decision). More would chase a writer
that changes the count every few milliseconds; the next cycle tries again anyway, and one
that keeps doing it is left alone (``CONFLICT_CHANGES``)."""
CONFLICT_WINDOW_S = 600.0
CONFLICT_CHANGES = 3
CONFLICT_BACKOFF_S = 600.0
SOURCE_FORGET_S = 900.0
"""A metrics source no autoscaler has read for this long (s) is forgotten, back-off and
all: longer than the 320-s back-off cap and any sync period in use."""
BACKFILL_POLICIES = frozenset({PolicyKind.PREDICTIVE, PolicyKind.KPA})
API_VERSION = "inference.autoscaler.dev/v1alpha1"
rfc3339 = st.rfc3339


@dataclass
class Memory:
    """What the loop remembers of one autoscaler between cycles (lost on fail-over; the
    core's part is rebuilt from Prometheus history by ``warm_up``)."""

    uid: str
    state: State = field(default_factory=State)
    next_due: float = 0.0
    failures: int = 0
    last_written: int | None = None
    last_seen: int | None = None
    external_changes: deque[float] = field(default_factory=deque)
    backoff_until: float = 0.0
    last_scale_time: float | None = None
    last_status: dict[str, Any] | None = None
    last_status_write: float = -math.inf
    conditions: dict[str, dict[str, str]] = field(default_factory=dict)
    trouble: str | None = None
    blocked_by: str | None = None
    invalid_generation: int | None = None
    last_logged: tuple[int, str] | None = None
    """(desired, reason) of the last decision logged at INFO."""
    warmed: bool = False
    capacity: Assessment | None = None
    """The last pod assessment (None: every replica was ready, nothing to assess); kept
    through a failed pod LIST so the cap neither lifts nor tightens on missing data."""
    capacity_event: str | None = None
    """Reason of the unschedulable state last reported with an Event (None: none)."""
    pods_listed: tuple[float, int, int, tuple[str, str, str]] | None = None
    """The last successful pod LIST: (when, replicas, ready, its CapacityAvailable
    condition), reused for ``POD_RECHECK_S`` while nothing asks for more (None: none)."""
    write_trouble: str | None = None
    """Reason of the failed scale write last reported with an Event (None: the last write
    went through, or none failed)."""


@dataclass
class SourceState:
    """One metrics source (a distinct query configuration) across cycles."""

    failures: int = 0
    retry_at: float = -math.inf
    """Controller time before which the source is not queried (back-off)."""
    last_error: str = ""
    inflight: Future[CycleResult] | None = None
    """A round still running (past its deadline, or unwaited): not sent again until it
    ends."""
    last_used: float = 0.0
    """Controller time a due autoscaler last read this source."""
    submitted_at: float = 0.0
    """Controller time the round in flight was sent (its back-off counts from there)."""
    probe: str | None = None
    """The query Prometheus rejected last: a retry sends it alone first, so a source that
    is still broken costs one query, not a round."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One autoscaler's result of a cycle (for metrics, the external metrics API, tests)."""

    namespace: str
    name: str
    mode: Mode
    current: int
    desired: int
    reason: str
    valid: bool
    wrote_scale: bool
    decision: Decision | None
    at: float


class ControllerHooks:
    """Where the loop reports (the controller's own Prometheus metrics; no-ops here)."""

    def decision(self, outcome: Outcome) -> None: ...

    def error(self, kind: str) -> None: ...

    def query_seconds(self, seconds: float) -> None: ...


GroupKey = tuple[object, ...]


class Write(StrEnum):
    """What became of one decision's scale write."""

    NONE = "none"
    """Nothing to write (the count is already the decision, or not Scale mode)."""
    WRITTEN = "written"
    BLOCKED = "blocked"
    """A competing autoscaler or writer, or the lease watchdog: not written on purpose."""
    CONFLICT = "conflict"
    """The count kept changing under us for ``SCALE_WRITE_ATTEMPTS`` writes."""
    FAILED = "failed"
    """The API server refused it (RBAC, validation) or did not answer."""


@dataclass(frozen=True, slots=True)
class Decided:
    """One decision as the loop acts on it."""

    decision: Decision
    state: State
    desired: int
    reason: str
    message: str
    capacity: st.Condition
    failures: int


class Controller:
    def __init__(self, kube: Kube, source: MetricsSource | None, *,
                 namespace: str | None = None, hooks: ControllerHooks | None = None,
                 backfill_s: float | None = None, limits: Limits | None = None,
                 may_write: Callable[[], bool] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.source = source
        self.namespace = namespace
        self.hooks = hooks or ControllerHooks()
        self.backfill_s = backfill_s
        """History to backfill for a newly seen autoscaler (None: the policy's own
        ``predictive.historySeconds``)."""
        self.limits = limits or Limits()
        self.may_write = may_write or (lambda: True)
        """Checked right before every scale write: the lease watchdog's verdict."""
        self.monotonic = monotonic
        self.memory: dict[tuple[str, str], Memory] = {}
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        """The newest outcome per autoscaler: what the external metrics API serves."""
        self.relist_s = RELIST_S
        self.sources: dict[GroupKey, SourceState] = {}
        self._competitors: dict[str, tuple[float, list[Competitor]]] = {}
        self._last_list: float | None = None
        self._parse_cache: dict[tuple[str, str], tuple[tuple[Any, Any, Any], Autoscaler]] = {}
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="metrics")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one cycle ---------------------------------------------------------------------

    def cycle(self, now: float) -> list[Outcome]:
        """Reconcile every autoscaler that is due. Transient API failures end the cycle
        early (nothing is written on half-read state); the next cycle starts over."""
        deadline = self.monotonic() + self.limits.cycle_deadline_s
        due_times = [m.next_due for m in self.memory.values() if m.invalid_generation is None]
        if (self._last_list is not None and now - self._last_list < self.relist_s
                and due_times and min(due_times) > now):
            return []  # nothing due and the list is fresh: no API call at all this tick
        try:
            items = self.kube.list_autoscalers(self.namespace)
        except (TransientError, KubeError) as exc:
            self.hooks.error("api")
            log.warning("cannot list autoscalers: %s", exc)
            return []
        self._last_list = now
        autoscalers = []
        seen: set[tuple[str, str]] = set()
        for obj in items:
            meta = obj.get("metadata", {})
            key = (meta.get("namespace", ""), meta.get("name", ""))
            seen.add(key)
            try:
                autoscalers.append(self._parsed(obj))
            except SpecError as exc:
                self._invalid(obj, exc, now)
        for gone in set(self.memory) - seen:
            del self.memory[gone]
            self.outcomes.pop(gone, None)
        for gone in set(self._parse_cache) - seen:
            del self._parse_cache[gone]
        # Longest overdue first: what a cycle deadline cut off last time goes first now.
        due = sorted((a for a in autoscalers if self._mem(a).next_due <= now),
                     key=lambda a: self._mem(a).next_due)
        if not due:
            return []
        workloads = self._workloads(due)
        observations = self._observe(due, now, deadline)
        out = []
        for i, a in enumerate(due):
            if self.monotonic() > deadline:
                log.warning("cycle deadline (%g s) reached: %d autoscalers wait for the next "
                            "cycle", self.limits.cycle_deadline_s, len(due) - i)
                self.hooks.error("cycle_deadline")
                break
            mem = self._mem(a)
            mem.next_due = now + a.spec.sync_period_s
            try:
                outcome = self._reconcile(a, mem, workloads, observations, now)
            except (TransientError, KubeError) as exc:
                self.hooks.error("api" if isinstance(exc, TransientError) else "kube")
                log.warning("%s/%s: %s", a.namespace, a.name, exc)
                continue
            if outcome is not None:
                self.outcomes[a.key] = outcome
                self.hooks.decision(outcome)
                out.append(outcome)
        return out

    def _parsed(self, obj: RawAutoscaler) -> Autoscaler:
        """``parse_autoscaler``, memoised on (uid, generation, resourceVersion): the spec is
        validated once per edit, not once per cycle (0.13 ms each, 1,000 per cycle)."""
        meta = obj.get("metadata", {})
        key = (meta.get("uid"), meta.get("generation"), meta.get("resourceVersion"))
        hit = self._parse_cache.get((meta.get("namespace", ""), meta.get("name", "")))
        if hit is not None and hit[0] == key:
            return hit[1]
        a = parse_autoscaler(obj)
        self._parse_cache[a.key] = (key, a)
        return a

    def _mem(self, a: Autoscaler) -> Memory:
        mem = self.memory.get(a.key)
        if mem is None or mem.uid != a.uid:  # new, or deleted and re-created
            mem = self.memory[a.key] = Memory(uid=a.uid)
        return mem

    def _workloads(self, due: Iterable[Autoscaler]) -> dict[tuple[str, str, str], ScaleInfo]:
        kinds = {a.target.kind for a in due
                 if a.target.api_version == "apps/v1" and a.target.kind in APPS_PLURALS}
        out: dict[tuple[str, str, str], ScaleInfo] = {}
        for kind in sorted(kinds):
            try:
                for (ns, name), info in self.kube.list_workloads(kind, self.namespace).items():
                    out[(kind, ns, name)] = info
            except (TransientError, KubeError) as exc:
                self.hooks.error("api")
                log.warning("cannot list %s: %s", kind, exc)
        return out

    # -- metrics -----------------------------------------------------------------------

    def _collector_config(self, a: Autoscaler) -> CollectorConfig:
        src = a.source
        preset = get_preset(src.preset)
        if src.queries:
            queries = dict(preset.queries)
            queries.update({Signal(k): v for k, v in src.queries})
            preset = replace(preset, name=f"{preset.name}+custom", queries=queries)
        return CollectorConfig(preset=preset, selector=src.selector,
                               namespace_label=src.namespace_label,
                               workload_label=src.workload_label, window=src.window,
                               max_age_s=a.spec.max_metric_age_s, recorded=src.recorded)

    def _observe(self, due: list[Autoscaler], now: float, cycle_deadline: float
                 ) -> dict[tuple[str, str], Observation | str]:
        """Observation per autoscaler, or why there is none (a sentence that is the same
        every cycle the trouble lasts). One collect per distinct metrics source config
        (usually one for the whole cluster), all of them concurrently, each waited for at
        most ``source_deadline_s`` and never past the cycle's deadline."""
        out: dict[tuple[str, str], Observation | str] = {}
        if self.source is None:
            return {a.key: "no Prometheus configured" for a in due}
        # Autoscalers with the same metrics source share one round of queries.
        groups: dict[GroupKey, tuple[CollectorConfig, list[Autoscaler]]] = {}
        for a in due:
            # Everything but the workload's own label value: 1,000 autoscalers reading the
            # same preset share one round of queries.
            gkey: GroupKey = (replace(a.source, workload=""), a.spec.max_metric_age_s)
            try:
                if gkey not in groups:
                    groups[gkey] = (self._collector_config(a), [])
                groups[gkey][1].append(a)
            except (SpecError, ValueError) as exc:
                out[a.key] = f"metrics source: {exc}"
        started: dict[GroupKey, Future[CycleResult]] = {}
        late = f"metrics source did not answer within {self.limits.source_deadline_s:g} s"
        for key, (cfg, members) in groups.items():
            state = self.sources.setdefault(key, SourceState())
            if state.inflight is not None:
                if not state.inflight.done():
                    # Still the same trouble as last cycle, in the same words (one Event).
                    for a in members:
                        out[a.key] = state.last_error or late
                    continue
                self._settle(key, state, state.inflight, now)
            if now < state.retry_at:
                for a in members:  # the same sentence as the failure itself: one Event
                    out[a.key] = state.last_error
                continue
            targets = [TargetKey(a.namespace, a.source.workload) for a in members]
            fut = self._pool.submit(self._round, cfg, targets, now, state.probe)
            state.inflight, state.submitted_at = fut, now
            if state.failures:
                # On probation: not waited for. Its result is booked next cycle, so 50
                # broken sources do not make the healthy ones wait for their retries.
                for a in members:
                    out[a.key] = state.last_error
                continue
            started[key] = fut
        for gkey, state in list(self.sources.items()):
            # Forget a source nobody has used for SOURCE_FORGET_S: not merely one whose
            # autoscalers are not due this tick (that would reset its back-off).
            if gkey in groups:
                state.last_used = now
            elif state.inflight is None and now - state.last_used > SOURCE_FORGET_S:
                del self.sources[gkey]
        if started:
            wait(started.values(), timeout=max(0.0, min(
                self.limits.source_deadline_s, cycle_deadline - self.monotonic())))
        for key, fut in started.items():
            cfg, members = groups[key]
            state = self.sources[key]
            if not fut.done():
                self.hooks.error("prometheus_deadline")
                for a in members:
                    out[a.key] = late
                continue
            result = self._settle(key, state, fut, now)
            if isinstance(result, str):
                for a in members:
                    out[a.key] = result
                continue
            self.hooks.query_seconds(result.wall_s)
            for a in members:
                obs = result.observations.get(TargetKey(a.namespace, a.source.workload))
                out[a.key] = obs if obs is not None else "no observation"
            self._warm([a for a in members if a.spec.policy in BACKFILL_POLICIES
                        and not self._mem(a).warmed], cfg, now)
        return out

    def _round(self, cfg: CollectorConfig, targets: list[TargetKey], now: float,
               probe: str | None) -> CycleResult:
        """One source's round of queries (in a worker thread)."""
        assert self.source is not None
        if probe is not None:
            self.source.query(probe, now)  # raises QueryError again while still broken
        return Collector(self.source, cfg).collect(now, targets, only=True)

    def _settle(self, key: GroupKey, state: SourceState, fut: Future[CycleResult],
                now: float) -> CycleResult | str:
        """Book a finished round: success resets the source's back-off; a rejected query
        (spec error) or a round where Prometheus itself failed extends it."""
        state.inflight = None
        now = state.submitted_at
        try:
            result = fut.result()
        except QueryError as exc:
            self.hooks.error("spec")
            state.probe = exc.query
            return self._failed(state, now, f"bad query: {exc}", spec=True)
        except SpecError as exc:
            self.hooks.error("spec")
            return self._failed(state, now, f"bad query: {exc}", spec=True)
        except TransientError as exc:  # the collector marks these; belt and braces
            self.hooks.error("prometheus")
            return self._failed(state, now, str(exc), spec=False)
        if result.errors:
            self.hooks.error("prometheus")
        if "liveness" in result.errors:
            # Prometheus failed the whole round (down or hung): nothing was read.
            self.hooks.query_seconds(result.wall_s)
            return self._failed(state, now, f"Prometheus failed: {result.errors['liveness']}",
                                spec=False)
        state.failures, state.retry_at, state.last_error, state.probe = 0, -math.inf, "", None
        return result

    def _failed(self, state: SourceState, now: float, error: str, *, spec: bool) -> str:
        lim = self.limits
        state.failures += 1
        cap = lim.source_backoff_max_spec_s if spec else lim.source_backoff_max_transient_s
        # 5, 10, 20, 40 s ... to the cap: 50 broken sources cost 50 rounds at the first
        # failure, then one round each per cap (320 s) instead of one per cycle.
        delay = min(cap, lim.source_backoff_s * 2.0 ** (state.failures - 1))
        state.retry_at = now + delay
        state.last_error = error
        return error

    def _warm(self, new: list[Autoscaler], cfg: CollectorConfig, now: float) -> None:
        """Backfill every newly seen autoscaler of one metrics source in one round."""
        for a in new:
            self._mem(a).warmed = True
        if not new or self.source is None or Signal.REQUEST_RATE not in cfg.preset.queries:
            return
        asks = [HistoryRequest(
            TargetKey(a.namespace, a.source.workload),
            self.backfill_s if self.backfill_s is not None else a.spec.predictive.history_s,
            a.spec.sync_period_s) for a in new]
        try:
            histories = backfill_many(self.source, cfg, asks, now)
        except (TransientError, SpecError) as exc:
            log.warning("history backfill of %d autoscalers failed: %s", len(new), exc)
            return
        for a, ask in zip(new, asks, strict=True):
            history = histories.get(ask.target, [])
            if history:
                self._mem(a).state = warm_up(a.spec, history,
                                             replicas=max(1, a.spec.min_replicas))
                log.info("%s/%s: warmed with %d past samples", a.namespace, a.name,
                         len(history))

    # -- one autoscaler ----------------------------------------------------------------

    def _scale_info(self, a: Autoscaler,
                    workloads: Mapping[tuple[str, str, str], ScaleInfo]) -> ScaleInfo:
        if a.target.api_version == "apps/v1" and a.target.kind in APPS_PLURALS:
            info = workloads.get((a.target.kind, a.namespace, a.target.name))
            if info is not None:
                return info
            raise NotFound(f"{a.target.kind} {a.namespace}/{a.target.name} not found", 404)
        return self.kube.get_scale(a.namespace, a.target)

    def _reconcile(self, a: Autoscaler, mem: Memory,
                   workloads: Mapping[tuple[str, str, str], ScaleInfo],
                   observations: Mapping[tuple[str, str], Observation | str],
                   now: float) -> Outcome | None:
        try:
            info = self._scale_info(a, workloads)
        except (NotFound, Forbidden) as exc:
            self._trouble(a, mem, "FailedGetScale", str(exc))
            self._status(a, mem, now, current=None, desired=None, reason="FailedGetScale",
                         message=str(exc),
                         conditions=st.failed_conditions("FailedGetScale", str(exc)))
            return None
        self._note_external_change(a, mem, info.replicas, now)
        obs = observations.get(a.key)
        verdict = st.metrics_verdict(obs, info.ready)
        prior, prior_failures = mem.state, mem.failures
        blocked = self._blocked(a, mem, now)
        d = self._decide(a, mem, info, obs, prior, prior_failures, now)
        write, why = Write.NONE, ""
        for attempt in range(SCALE_WRITE_ATTEMPTS):
            if a.mode is not Mode.SCALE or d.desired == info.replicas:
                break
            if blocked is not None:
                write = Write.BLOCKED
                break
            write, why = self._write_scale(a, mem, info, d, now)
            if write is not Write.CONFLICT:
                break
            # The count changed since we read it. Read it afresh (not from the watch cache)
            # and decide again from the state before this cycle's decision, so the one
            # cycle's sample and scale event are applied once, whichever decision is
            # written; give up after SCALE_WRITE_ATTEMPTS writes.
            try:
                fresh = self.kube.get_scale(a.namespace, a.target)
            except (TransientError, KubeError) as exc:
                write, why = Write.FAILED, f"cannot read the scale again: {exc}"
                break
            if fresh.replicas != info.replicas:
                self._note_external_change(a, mem, fresh.replicas, now)
                info = replace(info, replicas=fresh.replicas,
                               resource_version=fresh.resource_version)
                d = self._decide(a, mem, info, obs, prior, prior_failures, now)
                blocked = self._blocked(a, mem, now)
            if attempt == SCALE_WRITE_ATTEMPTS - 1 and d.desired != info.replicas:
                why = (f"refused {SCALE_WRITE_ATTEMPTS} times, the count now "
                       f"{info.replicas}: {why}")
            else:
                write = Write.NONE
        if a.mode is not Mode.SCALE and d.desired != info.replicas:
            log.info("%s/%s: %s mode: would scale %d -> %d (%s)", a.namespace, a.name,
                     a.mode.value, info.replicas, d.desired, d.reason)
        desired, reason, message, decision = d.desired, d.reason, d.message, d.decision
        mem.failures = d.failures
        mem.state = d.state
        if a.mode is Mode.SCALE:
            # The core stored a scale event for the count it asked for; keep one for the
            # count written, as the HPA stores its event only after a successful update: a
            # failed, blocked or capped write must not use up a rate-limit period.
            applied = desired if write is Write.WRITTEN else info.replicas
            mem.state = store_scale_event(
                replace(d.state, scale_up_events=prior.scale_up_events,
                        scale_down_events=prior.scale_down_events),
                a.spec.behavior, info.replicas, applied, now)
        able = self._write_outcome(a, mem, info, desired, write, why)
        self._metrics_events(a, mem, verdict)
        self._log_decision(a, mem, info, desired, reason, decision)
        self._status(a, mem, now, current=info.replicas, desired=desired, reason=reason,
                     message=message, decision=decision, conditions=st.conditions(
                         mode=a.mode.value, valid=decision.valid, reason=reason,
                         message=message, decision_reason=decision.reason, metrics=verdict,
                         blocked=blocked, capacity=d.capacity, able=able))
        return Outcome(a.namespace, a.name, a.mode, info.replicas, desired, reason,
                       decision.valid, write is Write.WRITTEN, decision, now)

    def _decide(self, a: Autoscaler, mem: Memory, info: ScaleInfo,
                obs: Observation | str | None, prior: State, prior_failures: int,
                now: float) -> Decided:
        """Decide from ``prior`` (the state before this cycle): pure up to the pod check,
        so deciding again after a conflict applies the cycle once, not twice."""
        if isinstance(obs, Observation):
            snapshot = obs.snapshot(info.replicas, info.ready)
        else:
            snapshot = Snapshot(current_replicas=info.replicas, ready_replicas=info.ready)
        decision, state = decide(snapshot, prior, a.spec, now)
        desired, reason, message, failures = self._after_decide(a, prior_failures, decision,
                                                                 info)
        desired, reason, message, capacity = self._capacity(a, mem, info, desired, reason,
                                                            message, now)
        return Decided(decision, state, desired, reason, message, capacity, failures)

    def _write_outcome(self, a: Autoscaler, mem: Memory, info: ScaleInfo, desired: int,
                       write: Write, why: str) -> st.Condition | None:
        """The ``AbleToScale`` condition (Scale mode), with an Event, a metric and a log
        line for a failed write: an Event once per reason, the rest every time."""
        if a.mode is not Mode.SCALE:
            return None
        if write in (Write.CONFLICT, Write.FAILED):
            reason = "FailedUpdateScale"
            message = f"scale {info.replicas} -> {desired} not written: {why}"
            self.hooks.error("scale_write")
            log.warning("%s/%s: %s", a.namespace, a.name, message)
            key = f"{write.value}: {why.split(':', 1)[0]}"
            if key != mem.write_trouble:
                self._event(a, "Warning", "FailedRescale", message)
                mem.write_trouble = key
            return ("False", reason, message)
        if write is not Write.BLOCKED:
            mem.write_trouble = None
        # One reason for "written" and "nothing to write": a change of reason is a status
        # PATCH, and a scale then a steady cycle would cost two per scale.
        return ("True", "ReadyForNewScale", "no scale write has failed since the last one "
                "that went through")

    def _log_decision(self, a: Autoscaler, mem: Memory, info: ScaleInfo, desired: int,
                      reason: str, decision: Decision) -> None:
        changed = mem.last_logged != (desired, reason)
        level = logging.INFO if changed else logging.DEBUG
        if not decision_log.isEnabledFor(level):
            return
        mem.last_logged = (desired, reason)
        fields: dict[str, Any] = {
            "namespace": a.namespace, "autoscaler": a.name, "current": info.replicas,
            "ready": info.ready, "desired": desired, "reason": reason,
            "valid": decision.valid}
        for key, value in (("forecast_rps", decision.forecast_rps),
                           ("demand_rps", decision.demand_rps)):
            if value is not None and math.isfinite(value):
                fields[key] = round(value, 4)
        fields.update(st.learned_capacity_fields(decision))
        decision_log.log(level, "%s/%s: %d -> %d (%s): %s", a.namespace, a.name,
                         info.replicas, desired, reason, decision.message, extra=fields)

    def _after_decide(self, a: Autoscaler, failures: int, decision: Decision,
                      info: ScaleInfo) -> tuple[int, str, str, int]:
        """The decision as the loop acts on it: (desired, reason, message, failures)."""
        # Never below the current count on missing data; the fallback may only raise it
        # (the core's rule, the one the replay runs too).
        guarded = guard(decision, current=info.replicas, failures=failures,
                        fallback=a.spec.fallback or (
                            None if a.fallback is None
                            else Fallback(a.fallback.replicas, a.fallback.failure_threshold)),
                        max_replicas=a.spec.max_replicas)
        return guarded.replicas, guarded.reason.value, guarded.message, guarded.failures

    def _capacity(self, a: Autoscaler, mem: Memory, info: ScaleInfo, desired: int,
                  reason: str, message: str, now: float
                  ) -> tuple[int, str, str, st.Condition]:
        """Hold a scale-up while the workload's pods cannot be scheduled; (desired, reason,
        message, the CapacityAvailable condition). Pods are listed only when fewer replicas
        are ready than asked for: an unschedulable pod is never ready, so with every replica
        ready there is nothing to find (1,000 steady autoscalers: no extra call). Without a
        scale-up, a LIST of the same counts under ``POD_RECHECK_S`` old is reused."""
        listed = mem.pods_listed
        if info.ready >= info.replicas:
            mem.capacity, mem.pods_listed = None, None
            condition = st.capacity(None, listed=False, pods_ready=info.ready)
        elif not info.selector:
            mem.capacity, mem.pods_listed = None, None
            condition = ("Unknown", "NoPodSelector",
                         "the target's scale has no status.selector: its pods cannot be found")
        elif (listed is not None and desired <= info.replicas
              and listed[1:3] == (info.replicas, info.ready)
              and 0 <= now - listed[0] < POD_RECHECK_S):
            # No scale-up to cap, the same counts as a LIST of under a minute ago: its
            # verdict stands (``POD_RECHECK_S``), ``mem.capacity`` with it.
            condition = listed[3]
        else:
            mem.pods_listed = None
            try:
                pods = self.kube.list_pods(a.namespace, info.selector)
            except (TransientError, KubeError) as exc:
                # Hold what we knew: a cap in force stays (scale-down still passes), none
                # is invented; and never a scale-down because of this.
                self.hooks.error("pods")
                log.warning("%s/%s: cannot list pods: %s", a.namespace, a.name, exc)
                condition = st.capacity(None, listed=True, error=str(exc))
            else:
                mem.capacity = assess(pods)
                condition = st.capacity(mem.capacity, listed=True)
                mem.pods_listed = (now, info.replicas, info.ready, condition)
        known = mem.capacity
        # Scale mode writes the held count; Metrics mode serves it, so the HPA reading our
        # desired-replicas metric does not ask for pods that would only queue (8 Pending
        # on 6 GPUs: served 8, not 12). Shadow reports the decision as made.
        if known is not None and a.mode is not Mode.SHADOW:
            capped = cap_scale_up(desired, info.replicas, known)
            if capped != desired:
                desired, reason, message = capped, known.reason, (
                    f"scale-up to {desired} held at {capped}: {known.message}")
        # One Event when pods become unschedulable (or why changes), none per cycle; an
        # Unknown condition (failed LIST) is no transition.
        if condition[0] != "Unknown":
            event = known.event() if known is not None else None
            key = event[1] if event is not None else None
            if key != mem.capacity_event:
                if event is not None:
                    self._event(a, *event)
                mem.capacity_event = key
        return desired, reason, message, condition

    def _write_scale(self, a: Autoscaler, mem: Memory, info: ScaleInfo, d: Decided,
                     now: float) -> tuple[Write, str]:
        """One compare-and-set of the scale from ``info.replicas`` to ``d.desired``:
        (what became of it, why it failed)."""
        if not self.may_write():
            log.warning("%s/%s: not leading any more: scale %d -> %d not written",
                        a.namespace, a.name, info.replicas, d.desired)
            return Write.BLOCKED, "not leading"
        try:
            self.kube.set_scale(a.namespace, a.target, d.desired, expected=info.replicas)
        except Conflict as exc:
            log.info("%s/%s: scale changed under us: %s", a.namespace, a.name, exc)
            self.hooks.error("conflict")
            return Write.CONFLICT, str(exc)
        except TransientError as exc:
            # The write may have landed (a lost answer): the count it set is ours, not
            # another writer's, if the next cycle finds it.
            mem.last_written = d.desired
            return Write.FAILED, str(exc)
        except KubeError as exc:
            return Write.FAILED, str(exc)
        mem.last_written = d.desired
        mem.last_seen = d.desired
        mem.last_scale_time = now
        self._event(a, "Normal", "SuccessfulRescale",
                    f"New size: {d.desired}; reason: {d.reason}: {d.message}")
        return Write.WRITTEN, ""

    # -- competing writers ---------------------------------------------------------------

    def _blocked(self, a: Autoscaler, mem: Memory, now: float) -> st.Condition | None:
        """Why we must not write this workload's scale, or None. Only Scale mode writes;
        in Metrics mode an HPA reading our metric is the intended writer."""
        if a.mode is not Mode.SCALE:
            return None
        found = self._competitor(a, now)
        if found is not None:
            reason, what = found
            if what != mem.blocked_by:
                self._event(a, "Warning", reason, f"{what}: not writing the scale")
            mem.blocked_by = what
            return ("False", reason, f"{what}: not writing the scale")
        mem.blocked_by = None
        if now < mem.backoff_until:
            return ("False", "ConflictingWriter",
                    "another writer keeps changing the scale; not writing until "
                    f"{rfc3339(mem.backoff_until)}")
        return None

    def _competitor(self, a: Autoscaler, now: float) -> tuple[str, str] | None:
        """(reason, sentence) naming the HPA or ScaledObject that scales the same workload,
        or saying why none could be looked for (then we do not write either); or None."""
        cached = self._competitors.get(a.namespace)
        if cached is None or now - cached[0] >= self.limits.competitor_ttl_s:
            try:
                listed = self.kube.list_competitors(a.namespace)
            except (TransientError, KubeError) as exc:
                # Not cached: a slow API server costs this cycle's writes, not a minute's.
                self.hooks.error("api")
                return ("CompetitorCheckFailed",
                        f"cannot check for a competing HPA or ScaledObject ({exc})")
            cached = self._competitors[a.namespace] = (now, listed)
        for c in cached[1]:
            if c.target_kind == a.target.kind and c.target_name == a.target.name:
                return ("ConflictingAutoscaler", f"{c.kind} {a.namespace}/{c.name} also "
                        f"scales {a.target.kind} {a.target.name}")
        return None

    def _note_external_change(self, a: Autoscaler, mem: Memory, replicas: int,
                              now: float) -> None:
        if mem.last_seen is not None and replicas != mem.last_seen and \
                replicas != mem.last_written:
            mem.external_changes.append(now)
            while mem.external_changes and now - mem.external_changes[0] > CONFLICT_WINDOW_S:
                mem.external_changes.popleft()
            if len(mem.external_changes) >= CONFLICT_CHANGES and a.mode is Mode.SCALE:
                mem.backoff_until = now + CONFLICT_BACKOFF_S
                mem.external_changes.clear()
                self._event(a, "Warning", "ConflictingWriter",
                            f"{CONFLICT_CHANGES} scale changes by another writer within "
                            f"{CONFLICT_WINDOW_S:.0f} s (an HPA or a second controller?): "
                            f"not writing for {CONFLICT_BACKOFF_S:.0f} s")
        mem.last_seen = replicas

    # -- reporting ---------------------------------------------------------------------

    def _metrics_events(self, a: Autoscaler, mem: Memory, verdict: st.MetricsVerdict) -> None:
        """One Warning per outage: when metrics become unusable, never per cycle. Within
        one outage the trouble may move on (a frozen exporter first leaves the rate window
        uncovered, then stale); the status condition follows it, the Event does not, so a
        reader sees one Warning per outage as Kubernetes would aggregate it."""
        trouble = None if verdict.usable else "MetricsUnavailable"
        if trouble != mem.trouble:
            if trouble is not None:
                self._event(a, "Warning", "MetricsUnavailable",
                            st.metrics_event_message(verdict))
            mem.trouble = trouble

    def _event(self, a: Autoscaler, event_type: str, reason: str, message: str) -> None:
        try:
            self.kube.create_event(a.namespace, {
                "apiVersion": API_VERSION, "kind": KIND, "name": a.name,
                "namespace": a.namespace, "uid": a.uid}, event_type, reason, message)
        except (TransientError, KubeError) as exc:
            self.hooks.error("event")
            log.warning("%s/%s: event %s not recorded: %s", a.namespace, a.name, reason, exc)

    def _trouble(self, a: Autoscaler, mem: Memory, reason: str, message: str) -> None:
        if mem.trouble != reason:
            mem.trouble = reason
            self._event(a, "Warning", reason, message)

    def _invalid(self, obj: RawAutoscaler, exc: SpecError, now: float) -> None:
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        mem = self.memory.get(key)
        if mem is None or mem.uid != meta.get("uid", ""):
            mem = self.memory[key] = Memory(uid=str(meta.get("uid", "")))
        generation = int(meta.get("generation") or 0)
        if mem.invalid_generation == generation:
            return
        mem.invalid_generation = generation
        self.hooks.error("spec")
        msg = str(exc)
        log.warning("%s/%s: invalid spec: %s", *key, msg)
        try:
            self.kube.create_event(key[0], {"apiVersion": API_VERSION, "kind": KIND,
                                            "name": key[1], "namespace": key[0],
                                            "uid": str(meta.get("uid", ""))},
                                   "Warning", "InvalidSpec", msg)
            self.kube.patch_status(key[0], key[1], {
                "observedGeneration": generation, "reason": "InvalidSpec", "message": msg,
                "conditions": [st.condition("Ready", "False", "InvalidSpec", msg, now)]})
        except (TransientError, KubeError) as err:
            mem.invalid_generation = None  # try again next cycle
            log.warning("%s/%s: cannot report invalid spec: %s", *key, err)

    def _status(self, a: Autoscaler, mem: Memory, now: float, *, current: int | None,
                desired: int | None, reason: str, message: str,
                conditions: Mapping[str, st.Condition],
                decision: Decision | None = None) -> None:
        conds = st.merge_conditions(mem.conditions, conditions, now)
        mem.conditions = {c["type"]: c for c in conds}
        status_doc = st.status_document(
            generation=a.generation, current=current, desired=desired, reason=reason,
            message=message, conditions=conds, last_scale_time=mem.last_scale_time,
            decision=decision)
        material = st.material(status_doc)
        if material == mem.last_status and now - mem.last_status_write < STATUS_REFRESH_S:
            # Nothing an operator acts on changed (counts, reason, condition states): the
            # forecast figures and messages are refreshed every STATUS_REFRESH_S (5
            # minutes), not every cycle, so 1,000 steady autoscalers do not mean 67 status
            # PATCHes a second.
            return
        try:
            self.kube.patch_status(a.namespace, a.name,
                                   {**status_doc, "lastDecisionTime": rfc3339(now)})
            mem.last_status = material
            mem.last_status_write = now
        except (TransientError, KubeError) as exc:
            self.hooks.error("status")
            log.warning("%s/%s: status not written: %s", a.namespace, a.name, exc)


def run_forever(controller: Controller, *, tick_s: float, should_stop: Callable[[], bool],
                is_leader: Callable[[float], bool],
                clock: Callable[[], float] = time.time,
                sleep: Callable[[float], None] = time.sleep,
                on_cycle: Callable[[float, float], None] | None = None,
                progress: Callable[[], None] | None = None) -> None:
    """Tick until asked to stop; act only while leading. A cycle in progress always
    finishes (SIGTERM sets ``should_stop``; the caller then releases the lease).
    ``progress`` is called after every iteration, leading or not (``/healthz``)."""
    while not should_stop():
        start = clock()
        if is_leader(start):
            t0 = time.perf_counter()
            controller.cycle(start)
            if on_cycle is not None:
                on_cycle(start, time.perf_counter() - t0)
        if progress is not None:
            progress()
        remaining = tick_s - (clock() - start)
        if remaining > 0:
            sleep(remaining)
