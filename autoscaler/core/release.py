"""What a release may plan on: capacity the fleet was sized on or has carried, not a probe.

The capacity learner (``autoscaler.core.capacity``) raises its estimate by probing while
the SLO holds, up to 1.5x the per-replica load seen meeting it. The plan then needs fewer
replicas, and a *release* is what puts the probed load on the replicas that stay: it is the
probe's test. A failed test is expensive: an overload, the estimate cut while it lasts
(replicas asked for are a cold start away), and a burst of starts for replicas that are
released again as the estimate recovers. On a fleet whose latency shows nothing until it
saturates, every probe tested this way ends in one.

So replicas are released on the lower of the estimate and what has been shown:

* the estimate at the last scale-up (the fleet was sized on it, and nothing since has
  asked for more), lowered where the estimate fell since; and
* the capacity at which the release's planned per-replica load is one the fleet has
  carried in the SLO since that scale-up.

Demand that falls still releases at once (the count planned at the anchor falls); an
estimate that rises releases only down to loads already carried, and is tested at the
next scale-up instead, where the fleet grows anyway. Missing readings carry nothing, and
the plan's other rules (missing data scales up only) are untouched.

Every unit is planned, including a token unit the learner has no evidence on yet
(``release_estimate``): the plan skips such a unit (it is the requests/s estimate at the
averaged mix, and its noise would start replicas), but a release that skips it puts a load
in that unit on the replicas that stay that the fleet has never carried. Skipped, seed 3 of
the heavy-to-light prompt scenario (``tests/test_capacity.py``) missed 99 % after the
shift (98.11 %): released 2 -> 1 on the requests/s unit's work model (one replica taken for
28.5 req/s of the light prompts, 15.8 in truth), one replica took the light prompts'
decode tokens, a unit never shown at that load.

On by default (``RELEASE_ON_SHOWN_CAPACITY``). Measured against it off (main as of
af228ce, ``benchmarks/decision_goals.py``): ServeGen m-small (14 d) 11.0 -> 9.0 starts per
day (1.09x -> 0.89x the HPA's), 99.60 -> 99.67 %, 1,938 -> 1,971 GPU-h (+1.7 %); NASA x20
4.0 -> 3.9 per day, 796 -> 853 GPU-h (+7.2 %, its probes by release succeed); Azure conv x5
3.57 -> 3.89 GPU-h, code x5 7.49 -> 7.62, code x5 length-aware 7.39 -> 7.49 (each still met);
the 0.5x prior converges within 100 min (was 90; bar 110) and ends at 0.97x the truth (was
1.42x); the other rows unchanged. Heavy-to-light seeds 3-7 all 100.00 % after the shift,
for 12.84 / 12.61 / 14.57 / 14.50 / 14.92 GPU-h against 12.21 / 12.89 / 11.43 / 11.24 /
13.51 off: a decode load is shown one count at a time (the fleet carries a higher load per
replica only after a release), so a fleet sized on long prompts comes down over a cycle
per replica after the mix shifts.

The remembered loads move with the token mix (``at_mix``, on by default: ``RELEASE_AT_MIX``):
a carried load, and the anchor of a unit without evidence, are re-expressed at the recent
mix through the work model, as the learner does with its own remembered loads. Kept in
tokens they made a ratchet: a generated-token anchor set while the prompts were long, and
decode loads shown one replica count at a time, brought a fleet sized on long prompts down
about one replica per hour's cycle after they shortened (heavy-to-light seeds 5-7: 2.67 /
2.77 / 2.65 replicas over the last hour, where the peak needs 2). Measured in
``at_mix``'s docstring and the report of 2026-12-02.

What was shown is held against the plan's mean (``release_replicas``, on by default:
``RELEASE_SHOWN_AT_MEAN``), and the forecast's margin against the estimate: a carried load
is a mean the replicas served, and held against the plan with its margin a release needed
the fleet to have carried the mean plus the margin per replica, more than the replicas it
keeps were ever asked to show. A fleet sized at a scale-up carries about mean / quantile of
its capacity per replica, so it came down only once the quantile fell below the mean it had
carried. Measured against main as of b5957ef (``decision_goals.py``, 288 CPU s): NASA x20
841 -> 798 GPU-h (796 before the rule), 99.96 -> 99.94 %, 4.3 -> 4.6 starts per day (0.54x
the HPA's); ServeGen m-small 9.7 -> 10.4 starts per day (0.96x -> 1.03x the HPA's), 1,972
-> 1,933 GPU-h, 99.64 -> 99.62 %; the embedded demo 10.49 -> 10.42 GPU-h at 97.86 %; the
other rows unchanged; heavy-to-light seeds 3-7 all 100.00 % after the shift, GPU-h 12.66 /
12.64 / 13.35 / 13.36 / 13.63 (were 12.66 / 12.64 / 13.48 / 13.39 / 13.63).

A second rule, on by default (``RELEASE_ON_SLACK``, ``slack_floor``): a release needs
the fleet's own reading (TTFT p99 and queue) to show slack at the count it releases to, so
a plan made on 60-s means does not release into sub-minute bursts the TTFT tail already
shows. The predictive policy applies it once the learner has measured something (before,
a release is the learner's only test of its prior: a too-high prior is cut by the
overload it meets, and holding on that prior's readings only delays the test).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from autoscaler.core.capacity import LearnedCapacity, replicas_needed, unit_shares

RELEASE_ON_SHOWN_CAPACITY = True
"""Whether the predictive policy releases on ``release_estimate`` (True, the default) or on
its estimate alone (False; see the module's docstring for the figures of both)."""


@dataclass(frozen=True, slots=True)
class ReleaseMemory:
    """What a release may plan on: the estimate the fleet was last sized up on, and the
    per-replica loads it has carried in the SLO since. Per unit, in ``capacity.UNITS``
    order; empty until the first step."""

    anchor: tuple[float, ...] = ()
    """The capacity estimate at the last scale-up (or first sight), lowered where the
    estimate fell since (an overload taught less); never raised between scale-ups."""
    carried: tuple[float, ...] = ()
    """Highest per-replica load (each unit's demand / ready replicas) read with a TTFT
    that met the objective since the anchor was set (NaN: none)."""
    mix: tuple[float, float] = (math.nan, math.nan)
    """The token mix (prompt, generated tokens per request) that ``anchor`` and ``carried``
    are expressed at (``at_mix``); NaN until a mix is known."""


RELEASE_AT_MIX = True
"""Whether the remembered loads move with the token mix (``at_mix``; True, the default)."""


def at_mix(memory: ReleaseMemory, mix: tuple[float, float],
           measured: tuple[bool, ...] = ()) -> ReleaseMemory:
    """``memory`` re-expressed at the token ``mix`` through the work model, as the capacity
    learner re-expresses its own remembered loads (``capacity._bounds_at_mix``): the
    carried loads of every unit, and the anchor of a unit without evidence.

    Why: a carried load is a per-replica load in token units at the mix of the step that
    read it, and a replica's *work* (prompt tokens + ``capacity.DECODE_TOKEN_WORK`` x
    generated tokens) is what the learner takes as independent of the mix; a load kept in
    tokens says nothing about another mix. So is the anchor of a unit without evidence: its
    estimate is the requests/s estimate re-derived at the mix at every step
    (``capacity._fill_priors``), so the snapshot of it moves with the mix as the estimate
    does. The anchor of a unit with evidence is a snapshot of an estimate the learner keeps
    in its own tokens (it never rescales a learned estimate), and stays as it was: moved,
    Azure code x5 went 7.62 -> 8.21 GPU-h (a generated-token anchor of 207.9 tok/s
    re-expressed down to 128 as the outputs shortened from ~40 to ~26 tokens held 10
    replicas where 7 carried the plan).

    Kept in tokens, a fleet sized on long prompts came down about one replica per hour's
    cycle once they shortened (heavy-to-light seed 5, ``tests/test_predictive_release_mix
    .py``: at 8,115 s the generated-token anchor was 949.9 tok/s per replica, set at 2,709
    + 172 tokens while that unit had no evidence, and the fleet had carried 820.0 at 4
    replicas; the release planned 3,443 tok/s on min(1,619.4, max(949.9, 820.0 / 0.7225 =
    1,135)) and kept 5). Worked number, at the decode cost 2.4: the generated-token share
    of the work is 2.4 x 172 / (2,709 + 2.4 x 172) = 412.8 / 3,121.8 = 0.1322 there and
    412.8 / (690 + 412.8) = 0.3743 at 690 + 172 tokens, so the anchor is 949.9 x 0.3743 /
    0.1322 = 2,689 tok/s, above the estimate: the estimate plans, ceil(3,443 / (1,619.4 x
    0.7225)) = 3. The requests/s unit already counts work (share 1) and is unchanged. A
    memory or a mix that is not known stays as it is."""
    if not all(math.isfinite(m) for m in mix):
        return memory
    if not all(math.isfinite(m) for m in memory.mix):
        return replace(memory, mix=mix)
    if memory.mix == mix:
        # Already at this mix (the policy moves the memory once per step and hands the
        # moved one to ``release_estimate`` and ``remember``): every ratio is 1.
        return memory
    then, to = unit_shares(memory.mix), unit_shares(mix)

    def moved(values: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(v * b / a if a > 0 and b > 0 else v  # False for NaN shares: kept
                     for v, a, b in zip(values, then, to, strict=False))

    anchor = memory.anchor
    if len(measured) == len(anchor):
        anchor = tuple(a if m else n for a, n, m in zip(anchor, moved(anchor), measured,
                                                        strict=True))
    return ReleaseMemory(anchor=anchor, carried=moved(memory.carried), mix=mix)


def release_capacity(capacity: tuple[float, ...], memory: ReleaseMemory,
                     utilization: float) -> tuple[float, ...]:
    """Per unit, the capacity a release plans on: the estimate, but no more than the
    anchor or than the capacity at which the release's planned per-replica load is one
    the fleet carried in the SLO since (carried / ``utilization``), whichever is higher.

    Why: the learner raises its estimate by probing while the SLO holds, and a release is
    what puts the probed load on the replicas. Released into, an untested estimate is a
    probe whose failure is an overload, an estimate cut while it lasts and a burst of
    starts (ServeGen m-small, 14 d: at 44.1 h a release 10 -> 9 on an estimate probed from
    118 to 162 req/s per replica while demand rose 885 -> 1,005 req/s; 45 minutes later
    the overload cut it to 118 and six replicas started within 3 minutes). Demand that
    fell, or a load already carried, releases as before.

    Worked number: estimate 18,000 prompt tok/s per replica, anchor 13,500, carried
    11,000, release utilisation 0.85 x 0.85 = 0.7225: min(18,000, max(13,500,
    11,000 / 0.7225 = 15,225)) = 15,225. A unit without a finite anchor keeps its
    estimate (nothing to compare it with)."""
    anchor = memory.anchor
    if len(anchor) != len(capacity):
        return capacity
    carried = memory.carried if len(memory.carried) == len(capacity) else \
        (math.nan,) * len(capacity)
    out: list[float] = []
    for c, a, k in zip(capacity, anchor, carried, strict=True):
        if not (math.isfinite(a) and math.isfinite(c)):
            out.append(c)
            continue
        tested = k / utilization if math.isfinite(k) and utilization > 0 else math.nan
        out.append(min(c, max(a, tested)) if math.isfinite(tested) else min(c, a))
    return tuple(out)


def release_estimate(est: LearnedCapacity, memory: ReleaseMemory,
                     utilization: float) -> LearnedCapacity:
    """The estimate a release plans on: each unit at ``release_capacity``, and every unit
    planned, including a token unit the learner has no evidence on yet.

    Why every unit: the plan skips a token unit without evidence (``capacity.
    replicas_needed``), because that unit is only the requests/s estimate re-derived at
    the averaged mix, and at the scale-up utilisation a noisy second ratio would start
    replicas the requests/s unit does not ask for. A release is the other way round: a
    skipped unit is one whose load the release may put on the replicas that stay without
    the fleet ever having carried it. The requests/s estimate converts a request into
    work with a fixed decode cost (``capacity.DECODE_TOKEN_WORK``), so on a mix that is
    decode-heavier than the one it was learned on it overstates what a replica carries:
    seed 3 of the heavy-to-light prompt scenario (``tests/test_capacity.py``) released
    2 -> 1 at 14.3 req/s of 600-token prompts on an estimate of 28.5 req/s per replica
    (8.3 requests of the 2,400-token mix at the work model's cost; the simulated replica
    carries 15.8) and overloaded at the next peak (98.11 % after the shift, bar 99 %).
    Its generated-token unit then read (decision log at 8,955 s): estimate 2,541.5 tok/s
    per replica (re-derived, no evidence), anchor 1,249.6, carried 1,637.0; planned here
    at min(2,541.5, max(1,249.6, 1,637.0 / 0.7225 = 2,265.7)) = 2,265.7, one replica at
    14.3 x 169 = 2,417 generated tok/s needs ceil(2,417 / (2,265.7 x 0.7225)) =
    ceil(2,417 / 1,637) = 2: no replica is released onto a decode load never carried.

    A unit without a finite estimate stays skipped (nothing to plan on). Worked number
    (that step): estimate (21,672.3, 2,541.5, 8.3) with evidence (False, False, True),
    anchor (19,970.3, 1,249.6, 7.3), carried (13,337.9, 1,637.0, 5.1), utilisation
    0.7225: capacities (min(21,672.3, max(19,970.3, 18,460.8)) = 19,970.3, 2,265.7,
    min(8.3, max(7.3, 7.06)) = 7.3), all planned."""
    if RELEASE_AT_MIX:
        memory = at_mix(memory, est.recent_mix, est.measured)
    caps = release_capacity(est.capacity, memory, utilization)
    m = tuple(math.isfinite(c) for c in caps)
    return replace(est, capacity=caps,
                   measured=(m[0], m[1], m[2]) if len(m) == 3 else est.measured)


RELEASE_SHOWN_AT_MEAN = True
"""Whether the capacity the fleet has shown is held against the release plan's mean (True,
the default; ``release_replicas``) or against the whole plan, forecast margin included."""


def release_replicas(est: LearnedCapacity, memory: ReleaseMemory,
                     planned: tuple[float | None, ...], mean: tuple[float | None, ...],
                     utilization: float) -> int:
    """The fewest replicas a release may go to: the plan (``planned``, forecast and
    capacity margins included) on the estimate, and the plan's mean (``mean``, the point
    forecast's peak over the lead time, no margin) on the capacity the fleet has shown
    (``release_estimate``), whichever needs more; both per unit, at ``utilization``.

    Why the mean: the shown capacity is a load the fleet has *carried* (carried /
    ``utilization``), a reading of the mean demand the replicas served, and the margin is
    what the plan adds for the forecast's error above that mean. Held against the plan with
    its margin, a release to n replicas needs the fleet to have carried, per replica, the
    mean *plus* the margin: more than the n + 1 replicas it keeps are ever asked to show
    (they are held on the same margin without having carried it). The fleet is sized at
    the scale-up on ``quantile / (C x 0.85)`` replicas, so what it carries per replica is
    about ``mean / quantile`` of that: held against the quantile, a fleet comes down only
    once the quantile has fallen below the mean it carried, a ratchet of the margin's
    ratio on every release (NASA x20, 14 d: 796 GPU-h before the rule, 841 with it).
    The margin still plans on the estimate (the first term), so the forecast's error is
    covered as it was before the rule. A unit without evidence has no estimate the plan
    uses (``capacity.replicas_needed`` skips it), so its margin would be planned nowhere:
    it keeps its whole plan on the shown capacity. Held at its mean too, Azure code x5
    went 6.67 -> 7.50 GPU-h (its generated-token unit, without evidence, released on an
    anchor of 181.1 tok/s per replica at a mean of 505.6 tok/s where the plan was 672.7:
    ceil(505.6 / (181.1 x 0.7225)) = 4 against ceil(672.7 / 130.9) = 6, into bursts that
    asked the replicas back and doubled the release hold).

    Worked number: one unit, estimate 20 req/s per replica, anchor 12, carried 10 (shown:
    min(20, max(12, 10 / 0.7225 = 13.84)) = 13.84), plan 35 req/s with its margin and
    mean 24, at 0.7225: the estimate needs ceil(35 / (20 x 0.7225)) = ceil(2.42) = 3, the
    shown capacity ceil(24 / (13.84 x 0.7225)) = ceil(2.4) = 3: 3, where the whole plan on
    the shown capacity kept ceil(35 / 10) = 4. A unit without a mean (None, NaN) is
    planned on the whole plan."""
    if not RELEASE_SHOWN_AT_MEAN:
        n, _ = replicas_needed(release_estimate(est, memory, utilization), planned,
                               utilization)
        return n
    on_est, _ = replicas_needed(est, planned, utilization)
    # A unit without evidence has no estimate to plan the margin on (``replicas_needed``
    # skips it): its whole plan goes on the shown capacity, as before.
    point = tuple(p if not e or m is None or not math.isfinite(m) else
                  min(m, p) if p is not None and math.isfinite(p) else m
                  for p, m, e in zip(planned, mean, est.measured, strict=True))
    on_shown, _ = replicas_needed(release_estimate(est, memory, utilization), point,
                                  utilization)
    return max(on_est, on_shown)


def remember(memory: ReleaseMemory, capacity: tuple[float, ...],
             carried_now: tuple[float, ...] | None, scaled_up: bool,
             overloaded: bool = False,
             mix: tuple[float, float] = (math.nan, math.nan),
             measured: tuple[bool, ...] = ()) -> ReleaseMemory:
    """The memory after this step. First sight and a scale-up set the anchor to the
    estimate (the fleet was just sized on it); otherwise the anchor follows the estimate
    down only. ``carried_now`` (per-replica loads read meeting the objective; None when
    the reading did not) raises what was carried; an ``overloaded`` reading (certainly
    above the objective) forgets it first: loads carried before an overload are no
    evidence of what the fleet carries now. Worked number: anchor (13,500, 2,400, 200),
    estimate (12,000, 2,600, 210), carried (9,000, NaN, 150), carried now (9,500, 1,800,
    140), no scale-up: anchor (12,000, 2,400, 200), carried (9,500, 1,800, 150)."""
    if RELEASE_AT_MIX:
        memory = at_mix(memory, mix, measured)
    blank = (math.nan,) * len(capacity)
    carried = memory.carried if len(memory.carried) == len(capacity) and not overloaded \
        else blank
    if scaled_up or len(memory.anchor) != len(capacity):
        anchor = capacity
    else:
        anchor = tuple(min(c, a) if math.isfinite(a) and math.isfinite(c) else
                       (a if math.isfinite(a) else c)
                       for c, a in zip(capacity, memory.anchor, strict=True))
    if carried_now is not None and len(carried_now) == len(capacity):
        carried = tuple(n if math.isfinite(n) and not k >= n else k  # NaN-safe max
                        for k, n in zip(carried, carried_now, strict=True))
    return ReleaseMemory(anchor=anchor, carried=carried, mix=memory.mix)


TTFT_FLOOR_S = 1800.0
"""How long the lowest TTFT p99 read stays the floor (``ttft_floor``): the capacity
learner's ``MIX_MEMORY_S``, the time constant over which the token mix (and with it the
prefill of the tail's prompts) is taken as the same."""

RELEASE_ON_SLACK = True
"""Whether a release needs the fleet's own reading to show slack at the count it releases
to (``slack_floor``). On by default: see ``slack_floor`` for why and the figures."""

SLACK_LOAD = 0.5
"""Below this fraction of each unit's learned capacity per replica, a release needs no
slack reading (``slack_floor``). It is the capacity learner's ``PROBE_MIN_LOAD``: below
half the estimate a reading says nothing about the estimate (the learner neither probes
nor learns a knee from it), so a TTFT near the SLO there is the requests' own prefill or
a burst far above the mean, not a fleet near its knee; and it is what lets a fleet whose
TTFT always reads "loaded" (long prompts at a flat objective) release when its load falls."""


def slack_floor(*, current: int, ready: int, target: int, loose: int,
                ttft_s: float | None, queue: float | None, objective_s: float,
                loaded_fraction: float, utilisation: float, floor_s: float = 0.0) -> int:
    """The fewest replicas, at least ``target``, that a release may go to on this reading.

    A 60-s mean hides sub-minute bursts; the fleet's TTFT tail and queue show them first.
    A reading at ``ready`` replicas is *slack for n replicas* when, with the load spread
    over n, its wait would still read below the capacity learner's "loaded" line
    (``loaded_fraction`` x the objective, ``capacity.LOADED_TTFT_FRACTION``), taken over
    the room the p99's floor leaves (the objective minus ``floor_s``, see below):

    * wait x (N / n) x (1 - rho) / (1 - rho_n) < loaded_fraction x (objective - floor),
      wait = TTFT p99 - floor (no wait: slack whatever the floor), where
      N = ``ready``, rho = ``utilisation`` (the load per ready replica over its learned
      capacity) and rho_n = rho x N / n (no slack at all when rho_n >= 1). Why: by
      Kingman's approximation a queue's wait is rho / (1 - rho) x (ca^2 + cs^2) / 2 x the
      service time; the variability term is the traffic's burstiness and the engine's
      service spread, the same at N and at n replicas, so only rho / (1 - rho) changes,
      and its ratio is the factor above. It is at least N / n (a burst of rate b for T
      seconds leaves its last request waiting (b / (n mu) - 1) T, at least N / n times
      (b / (N mu) - 1) T), and grows without bound as rho_n nears 1. Conservative: the
      learned capacity is the load *at the SLO*, below the throughput, so rho reads high.
      Only the wait grows: the part of the p99 no higher than ``floor_s`` (the lowest p99
      read lately, ``ttft_floor``: the tail's own prefill) is not scaled, and a floor at
      or above the learner's line (long prompts at a flat objective: "loaded" at any
      load) still leaves the room above it to judge the wait in. Scaled whole,
      the embedded demo's long-prompt tail (p99 0.6-0.8 s with p50 0.08 s and no queue,
      on 4 replicas at 11 req/s of 6.8) read as a wait and kept a fourth replica for
      hours (12.95 GPU-h against 10.57);
    * the queue is known and below n (the learner's loaded line: one request waiting per
      replica).

    Released to n only when the reading is slack for n, or when the plan puts no more
    than ``SLACK_LOAD`` of each replica's estimate on n (``loose``: the count the plan
    needs at that utilisation), where a loaded reading does not speak of the knee. The
    caller records the result as a recommendation, so a reading that was not slack holds
    the replicas for one release hold, as any recommendation does. Missing TTFT never
    releases here (the caller's missing-data rule, with its idle-fleet proof, decides).

    Worked number (ServeGen client 10, 2 days): 2 ready, the plan 48.5 req/s under the
    release band of one replica (78.2 x 0.7225 = 56.5), 52.2 req/s served with TTFT p99
    0.49 s and 14.8 queued. ``loose`` is ceil(48.5 / (0.5 x 78.2)) = 2, so 1 replica needs
    a slack reading: rho = 52.2 / (2 x 78.2) = 0.334, rho_1 = 0.668, and over a floor of
    0.02 s the wait grows to 0.47 x 2 x 0.666 / 0.332 = 1.89 s, not below 0.5 x (2 - 0.02)
    = 0.99 s (nor is the queue of 14.8 below 1): the floor is 2, and that step holds them
    for the release hold (scaled by N / n alone, 0.98 s, it released, and at 98,430 s a
    reading of 0.46 s on 2 released into a surge to 100 req/s: 95.56 %).
    Released on the mean (plan) alone, per-second peaks over 200 req/s met one replica
    and the second was ready again only 165 s later (4,339 requests late)."""
    if target >= current:
        return target
    if ttft_s is None or not math.isfinite(ttft_s):
        return current
    rho = utilisation
    for n in range(max(target, 0), current):
        if n >= loose:
            return n
        if n <= 0 or ready <= 0 or not (math.isfinite(rho) and rho >= 0.0):
            continue
        rho_n = rho * ready / n
        if rho_n >= 1.0:
            continue
        base = min(ttft_s, floor_s) if math.isfinite(floor_s) and floor_s > 0.0 else 0.0
        wait = (ttft_s - base) * (ready / n) * (1.0 - rho) / (1.0 - rho_n)
        room = loaded_fraction * max(0.0, objective_s - base)
        if ((wait <= 0.0 or wait < room) and queue is not None and math.isfinite(queue)
                and queue < n):
            return n
    return current


def ttft_floor(prev: tuple[float, float] | None, now: float, ttft_s: float | None
               ) -> tuple[float, float] | None:
    """(time, value) of the lowest TTFT p99 read within the last ``TTFT_FLOOR_S``, renewed
    by the current reading once it is older: the part of the p99 that is the tail's own
    prefill, not waiting (``slack_floor``). Worked number: lowest 0.55 s at 1,000 s;
    reading 0.7 s at 2,000 s keeps (1,000, 0.55); at 2,900 s (older than 1,800 s) the
    reading 0.65 s becomes the floor. A missing or non-finite reading changes nothing."""
    if ttft_s is None or not math.isfinite(ttft_s) or ttft_s < 0.0:
        return prev
    if prev is None or ttft_s <= prev[1] or now - prev[0] > TTFT_FLOOR_S:
        return (now, ttft_s)
    return prev
