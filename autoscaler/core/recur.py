"""Keeping a fleet through a silence when surges recur: ski rental with a memory of gaps.

A batch client is silent for minutes to days, then sends tens of requests per second.
Released during the silence (``predictive._provably_idle``), the fleet is back only one
lead time (cold start + sync) after the next surge begins, and the surge's first lead time
queues behind ``minReplicas``: on ServeGen clients that surge every 10-60 minutes this
lost 4-17 points of attainment (client 3 85.09 % -> 67.54 %, client 28 98.04 % ->
82.99 %), while keeping every fleet through every silence cost client 28 alone 20,091
GPU-h in 14 days against the WVA's 968. Neither extreme: keep replicas through a silence
for as long as keeping them is cheaper than the misses they would spare, *given how long
the silences seen so far lasted*.

**The price of a miss.** The SLO prices it: a target attainment A leaves an error budget
b = 1 - A of the requests (1 % at 99 %). A surge that the fleet served with G replica-
seconds for N requests could miss b x N of them and still keep its promise. Pricing one
whole budget at the whole spend (what the operator pays for the surge is what it pays for
its attainment), a surge that misses E requests costs

    V(E) = max(0, E - b x N) x (G / N) / b   replica-seconds,

and a cold start's misses are worth nothing while they stay within the budget. G / N is
what the fleet actually spent per request of that surge, not 1 / one replica's capacity:
meeting the SLO on per-second bursts takes more than the mean rate over capacity (a static
fleet that meets it on client 28 is 34 replicas for a mean of 0.5 req/s at 1.5 req/s a
replica), and pricing at capacity kept so little that client 9 gained 2.4 points where
this gained 8.8 under the empirical plan (``client_replay.py --days 2``). E(k) is
what the surge sends in its first lead time (cold start + sync: until a replica asked at
its start serves) that waits past the SLO on ``minReplicas`` + k replicas, first come,
first served (``excess``): once demand above what they carry leaves a backlog they cannot
clear within the SLO, every request behind it misses, not only the excess. It is a
property of the demand, measured whether or not the fleet was kept. Keeping k replicas
through the silence before that surge spares V(E(0)) - V(E(k)).

**The memory.** A silence is one once it outlasts the idle hold (shorter ones are gaps
inside a surge, kept by the idle hold anyway: Azure code's 45-217 s). When it does, the
surge before it is remembered with the silence that preceded that surge, and the plan
for this silence is chosen (``plan``): keep the k replicas the fleet has above
``minReplicas`` for a time tau that wins under a pessimistic reading of the silences seen.
The keep is counted against what the release rule keeps anyway (two holds: ``observe``),
and the next silence is taken as exchangeable with those seen, one more sample of which
nothing is known, priced at its worst (it outlasts tau). So a keep must pay for the
silences it covers, for those that outlasted it, and for one more failure; with few
silences or a heavy tail of them no tau does, and the plan is "release as before". A keep
never costs more than the misses of a surge it covers are worth (ski rental's
break-even). tau = 0 is "release as before"; any other tau is one of the remembered gaps.
A silence that outlasts tau is released; when it ends, its length is remembered, so a
client whose surges stop recurring stops being kept. (The plan this replaced took the
empirical optimum over the silences seen, and asked for the fleet through all of tau, so
the fleet stayed a hold longer: on ServeGen client 28, whose silences run from 10 min to
17.5 h in no usable order, it kept 24-60 replicas through silences that outlasted every
keep, 80.74 % / 323.5 GPU-h where releasing gave 81.33 % / 195.3.)

**Bounds.** The memory holds at most ``MEMORY_ENTRIES`` silences, none that ended more
than ``MEMORY_S`` ago: one week, the longest season the forecasters model
(``seasonal_weekly``, the time-of-week ``profile``), the longest period a batch schedule
is assumed to repeat on. The plan is computed once per silence (O(entries^2 x
candidates)); every other decision is O(1). The kept fleet never exceeds the fleet at the
silence's start; tau is at most the longest remembered gap, and k x (tau - what the
hold keeps anyway) never exceeds the mean worth of the misses of the surges the keep
covers, so a silent workload is released once its silence outlasts every silence it has
shown, and a keep that a silence outlasts loses at most one cold start's worth.

Worked example (defaults: lead time 135 s, b = 1 %): a surge of N = 4,000 requests in
600 s served by G = 12,000 replica-s (3 replica-s a request) whose first 135 s would, on
one replica, miss E(0) = 800 and, with 33 more kept, none: V(800) = (800 - 40) x 3 / 0.01
= 228,000 replica-s, V(0) = 0. Keeping 33 replicas costs 33 replica-s a second, so a
silence of up to 228,000 / 33 = 6,909 s (1.9 h) costs less than that surge's misses, and
one of up to 228,000 / 66 = 3,454 s also pays for one more silence that outlasts it. After
silences of 1,200 s, 1,200 s and 3,604 s, each followed by such a surge (and a hold of
0), the next silence is kept for 3,604 s; after silences of 3,000 s, 20,000 s, 3,000 s
and 20,000 s, released (half outlast any keep); after 19,201 s and 63,002 s, released.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MEMORY_S = 7 * 86_400.0
"""Silences that ended longer ago than this (one week) are forgotten."""
MEMORY_ENTRIES = 32
"""At most this many silences are remembered (the newest)."""
HOLD_FROM_SILENCE_START = False
"""Whether a silence's release hold runs alongside the proof that the fleet is idle
(``predictive._provably_idle``) rather than after it. On: from a silence's first decision
the absent TTFT is the idle fleet's, not missing data; while the silence is shorter than
one hold the count it found is kept and recorded (a gap between bursts still holds the
next burst's fleet one more hold), and once it has lasted one hold those records no longer
hold: released one hold after the silence began, not two (with hold 120 s and sync 15 s at
t0 + 120 s, not t0 + 225 s). Off (the default): measured on the merged main of
2026-12-02 (f913b47), on the decision goals every row was unchanged (Azure code 1 h 99.63 %
/ 5.19 GPU-h: none of its 16 gaps of 49-217 s is proved idle for a hold), but on the
ServeGen clients alone (``client_replay.py --days 2``, predictive) the second hold was
worth more than it cost: client 28 81.33 % / 224.7 GPU-h -> 80.49 % / 272.1 (released
at one hold, its next surge found 2 replicas where the second hold had kept 49, drained
its backlog on 73, and the hold doubled to 1,920 s on the flaps), client 1 97.57 % / 179.2
-> 96.58 % / 169.0 (94.94 % / 178.4 with a plan counted from the one hold), 6 77.3 ->
75.6, 20 78.8 -> 76.9 GPU-h at equal attainment; 0, 3, 4, 9, 10, 15, 16, 23, 25, 26 within
0.3 GPU-h. What the second hold spared is a keep without a price; ``plan`` prices keeps
only beyond the hold a silence gets with no plan (``released_s``)."""

SILENCE_SETTLES_RELEASE = False
"""Whether a release made inside a proven silence that the next surge asks back is left
out of predictive's flap count (``predictive._next_hold``, ``silence_before``): the
silence ending is not the plan flapping, and keeping through silences is this module's
priced question. Off (the default): measured on 2026-12-02 (``client_replay.py --days 2``,
predictive, main b5957ef) it cost on both axes: client 28 80.84 % / 227.9 GPU-h ->
79.77 % / 266.7, client 1 97.57 % / 179.2 -> 96.91 % / 204.9, client 6 90.75 % / 77.3 ->
88.04 % / 78.0; 3, 9, 25 within 0.6 GPU-h at equal attainment, 20 74.61 % / 78.9 -> 74.73 %
/ 78.3. The doubled hold is an unpriced keep that tracks the *recent* silences (it doubles
on each quick ask-back and halves after a quiet 16 base holds): client 28's silences of
570-1,170 s come in a cluster between 55,000 s and 62,000 s, where a 960-s hold kept 49
replicas through them with no miss and let go within two holds of the 3,570-s and
62,970-s silences after; the priced keeps that replaced it were each one remembered gap
long (44 replicas for 3,570 s, outlasted by the 62,970-s silence)."""


SILENCE_SPREAD = False
"""Whether a silence's keep is read from the recency-weighted spread of the silences seen
(``spread_plan``: keep until a share ``QUANTILE`` of them would have ended, bounded by ski
rental) rather than priced against one more silence that outlasts it (``plan``). Meant with
``SILENCE_SETTLES_RELEASE``: the memory, not predictive's doubled hold, keeps fleets
through silences. Off (the default): measured on 2026-12-03 (``client_replay.py --days 2``,
predictive, main 2a7499b; before: 1 97.93 % / 232.4 GPU-h, 6 90.75 % / 77.3, 9 85.65 % /
59.4, 20 74.61 % / 80.3, 28 80.84 % / 227.1; 3 67.54 % / 52.6 and 25 70.20 % / 50.3
unchanged by every variant): with ``SILENCE_SETTLES_RELEASE`` 1 97.55 % / 203.7, 6 88.04 %
/ 77.9, 9 87.90 % / 59.5, 20 74.73 % / 83.8, 28 79.77 % / 266.2; alone 1 97.96 % / 254.4,
6 unchanged, 9 87.90 % / 59.5, 20 74.73 % / 83.8, 28 80.70 % / 270.3; with
``DRAIN_COUNTS`` 1 97.98 % / 210.1, 9 87.90 % / 59.5, 20 74.73 % / 88.8, 28 80.70 % /
270.3; with ``UNSEEN`` at a median 1 97.59 % / 194.5, 9 81.97 % / 58.2, 28 80.70 % /
270.3. Client 28 loses everywhere: with 2-5 silences seen a 90 % quantile is the longest
one (3,570 s), and 59 replicas kept for it were outlasted by a 62,970-s silence, where
``plan`` pays for one more silence that outlasts the keep and releases. Client 3's misses
are the surge after the silence the replay starts in (censored, 130,755 s): no memory
helps there."""
DRAIN_COUNTS = False
"""Whether a surge's misses also count the drain of the backlog its first lead time left
(``excess`` over ``Surge.drain``: a second lead time, on the fleet the surge asked for),
so a keep is priced with what the cold start cost until the queue cleared. Off (the
default): measured on 2026-12-03 with ``plan`` (``client_replay.py --days 2``, predictive,
main 2a7499b) it won on 1 (97.93 % / 232.4 GPU-h -> 97.98 % / 211.4) and 9 (85.65 % /
59.4 -> 87.90 % / 59.5), 6 and 20 unchanged, but lost on 28 on both axes (80.84 % / 227.1
-> 80.70 % / 270.3): the surge after its 3,570-s silence, priced with its drain, bought a
keep of 59 replicas for 3,570 s that the next silence (62,970 s) outlasted. Over all 30
clients only these three moved; pooled 99.58 % / 5,079.2 GPU-h -> 99.58 % / 5,101.6,
20.9 -> 21.0 starts per day."""
QUANTILE = 0.9
"""``spread_plan`` keeps through silences until this share of the recent ones ended."""
UNSEEN = False
"""``spread_plan`` reads the silences with one more, the next, weighted as the newest and
known only to last longer than any seen (censored at infinity): a short history says
little, and an unreached quantile releases. Off: see ``SILENCE_SPREAD``'s figures."""
HALF_LIFE = 4.0
"""``survival``: a silence weighs half as much as the one 4 silences newer."""


@dataclass(frozen=True, slots=True)
class Surge:
    """Traffic between two silences, accumulated one decision at a time."""

    start: float
    """Time of the first decision that saw traffic after the silence, seconds."""
    gap_s: float
    """How long the silence before it lasted, seconds."""
    requests: float = 0.0
    """Requests seen (demand rate x sync period, summed)."""
    replica_s: float = 0.0
    """Replica-seconds the fleet spent on it."""
    lead: tuple[tuple[float, float], ...] = ()
    """(demand req/s, one replica's capacity req/s) of each decision in its first lead time."""
    drain: tuple[tuple[float, float, int], ...] = ()
    """(demand req/s, one replica's capacity req/s, replicas) of each decision in the lead
    time after the first (``DRAIN_COUNTS``): the fleet the surge asked for serving."""
    censored: bool = False
    """The silence before it began before the first traffic this controller saw: its
    length is a lower bound (the controller started inside it), not a short silence."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to keep through the current silence."""

    replicas: int = 0
    """Replicas kept above ``minReplicas``."""
    keep_s: float = 0.0
    """For this long from the silence's start, seconds."""


@dataclass(frozen=True, slots=True)
class SurgeMemory:
    """The silences seen, each with the surge that followed it."""

    quiet_since: float | None = None
    """Start of the current silence (first provably idle reading after traffic); readings
    that prove nothing (stale, partial) neither end nor restart it. None: traffic."""
    surge: Surge | None = None
    """The surge under way or just ended (None before the first silence)."""
    seen: tuple[Surge, ...] = ()
    """Remembered surges, each with the silence before it, oldest first (forgotten
    ``MEMORY_S`` after their ``start``)."""
    plan: Plan = Plan()
    """The keep chosen when the current silence outlasted the idle hold."""
    traffic_seen: bool = False
    """Whether any decision has read demand above 0: a silence that began before it is
    censored (``Surge.censored``)."""


def value(surge: Surge, excess: float, budget: float) -> float:
    """V(E): replica-seconds that ``excess`` missed requests of ``surge`` are worth.

    Worked numbers, budget 0.01: N 4,000, G 12,000: E 800 -> 760 x 3 / 0.01 = 228,000;
    E 40 (exactly the budget) -> 0; a surge with no requests -> 0. A target of 100 %
    leaves no budget: any miss is worth more than any keep (infinite)."""
    if surge.requests <= 0.0:
        return 0.0
    if budget <= 0.0:
        return math.inf if excess > 0.0 else 0.0
    return max(0.0, excess - budget * surge.requests) * (surge.replica_s
                                                         / surge.requests) / budget


def excess(surge: Surge, replicas: int, sync_s: float, slo_s: float = 0.0) -> float:
    """E: requests of the surge's first lead time that wait past the SLO at ``replicas``.

    The queue is first come, first served: once the backlog that demand above what
    ``replicas`` carry has left is more than they clear within ``slo_s``, *every* request
    that arrives behind it waits past the SLO, not only the excess. (Counting the excess
    alone, ServeGen client 9's surge after its 3,570-s silence, 64-86 req/s on one
    replica of 17 req/s, read E(0) = 6,114 of its 43,607 requests, where 16,429 missed
    before the fleet caught up; first come, first served reads 8,152. The misses of the
    backlog's drain after the lead time are still not counted.) Measured on 2026-12-02
    (``client_replay.py --days 2``, predictive): client 9 81.97 % / 59.6 GPU-h -> 85.65 %
    / 59.4, client 1 97.57 % / 179.2 -> 97.93 % / 232.4 (keeps of 4-5 replicas where 1
    was kept), client 20 78.9 -> 80.3 GPU-h at equal attainment, 28 227.9 -> 227.1;
    0, 2, 3, 6, 16, 19, 23, 25 and every decision-goal row unchanged.

    Worked numbers, sync 15 s, SLO 2 s: demand 20 then 40 req/s at 10 req/s a replica,
    1 replica: backlog 150 then 600, each above the 20 one replica clears in 2 s, so
    (20 + 40) x 15 = 900; 3 replicas: no backlog, then 150 above the 60 they clear in
    2 s: 40 x 15 = 600; 4 replicas: 0."""
    backlog, missed = 0.0, []
    for dem, cap in surge.lead:
        carried = replicas * cap
        backlog = max(0.0, backlog + (dem - carried) * sync_s)
        if backlog > carried * slo_s:
            missed.append(dem * sync_s)
    # The backlog's drain (``DRAIN_COUNTS``): after the first lead time the fleet the
    # surge asked for serves (at least ``replicas``), and what still waits behind the
    # backlog the cold start left is the cold start's cost too.
    for dem, cap, fleet in surge.drain:
        if backlog <= 0.0:
            break
        carried = max(replicas, fleet) * cap
        backlog = max(0.0, backlog + (dem - carried) * sync_s)
        if backlog > carried * slo_s:
            missed.append(dem * sync_s)
    return math.fsum(missed)


def observe(mem: SurgeMemory, now: float, *, idle: bool, demand: float | None,
            capacity_rps: float, replicas: int, min_replicas: int, hold_s: float,
            lead_s: float, sync_s: float, budget: float,
            released_s: float | None = None, slo_s: float = 0.0) -> SurgeMemory:
    """The memory after one decision.

    ``idle``: the readings prove the fleet idle (``_provably_idle``); ``demand``: the fresh
    demand rate (requests/s) or None when it is not known. A proof of idleness starts a
    silence; one that lasts ``hold_s`` remembers the surge before it and plans the keep;
    fresh demand above 0 ends the silence (a shorter one continues the surge). Anything
    else (stale, partial, requests in flight with none new) changes nothing, so doubtful
    data neither counts as a silence nor cuts one short. ``released_s``: how long a
    silence keeps the fleet without a plan (default two holds, below), what a plan is
    counted against."""
    if idle:
        if mem.quiet_since is None:
            return replace(mem, quiet_since=now, plan=Plan())
        if mem.surge is None or now - mem.quiet_since < hold_s:
            return mem
        seen = tuple(s for s in (*mem.seen, mem.surge)
                     if now - s.start <= MEMORY_S)[-MEMORY_ENTRIES:]
        # Without a plan a silence keeps the fleet for two holds: until it outlasts one,
        # the absent TTFT is missing data and the policy holds the current count, and each
        # of those recommendations holds one more hold (predictive's ski rental). Client 28:
        # quiet from 57,645 s at a 480-s hold, 24 replicas held to 58,590 s.
        kept = 2 * hold_s if released_s is None else released_s
        chosen = (spread_plan(seen, replicas - min_replicas, min_replicas, sync_s, budget,
                              kept, slo_s) if SILENCE_SPREAD
                  else plan(seen, replicas - min_replicas, min_replicas, sync_s, budget,
                            kept, slo_s))
        return replace(mem, surge=None, seen=seen, plan=chosen)
    if demand is None or not demand > 0.0:
        return mem
    surge = mem.surge
    if mem.quiet_since is not None and surge is None:
        surge = Surge(start=now, gap_s=max(0.0, now - mem.quiet_since),
                      censored=not mem.traffic_seen)
    if surge is None:
        return replace(mem, quiet_since=None, traffic_seen=True)
    lead, drain = surge.lead, surge.drain
    if now - surge.start < lead_s and math.isfinite(capacity_rps) and capacity_rps > 0.0:
        lead = (*lead, (demand, capacity_rps))
    elif (DRAIN_COUNTS and now - surge.start < 2.0 * lead_s and math.isfinite(capacity_rps)
          and capacity_rps > 0.0):
        drain = (*drain, (demand, capacity_rps, max(0, replicas)))
    surge = replace(surge, requests=surge.requests + demand * sync_s, lead=lead, drain=drain,
                    replica_s=surge.replica_s + max(0, replicas) * sync_s)
    return SurgeMemory(quiet_since=None, surge=surge, seen=mem.seen, plan=Plan(),
                       traffic_seen=True)


def silence_before(mem: SurgeMemory) -> tuple[float, float] | None:
    """(start, end) of the silence that the surge under way ended, seconds; None before
    the first silence. A silence is one once it outlasts the idle hold (``observe``); a
    shorter gap continues the surge, so a release made in such a gap stays outside every
    span this returns. Worked number: quiet from 1,000 s, traffic seen again at 2,500 s:
    the surge starts at 2,500 s with a gap of 1,500 s, and the span is (1,000, 2,500)."""
    surge = mem.surge
    if surge is None or not surge.gap_s > 0.0:
        return None
    return (surge.start - surge.gap_s, surge.start)


def survival(seen: tuple[Surge, ...], half_life: float = HALF_LIFE, unseen: bool = False
             ) -> tuple[tuple[float, float], ...]:
    """The recency-weighted Kaplan-Meier survival of the silences seen: (length, share of
    silences longer than it) at each silence that ended, shortest first.

    The i-th newest silence weighs 2^(-i / ``half_life``) (the newest 1), so a cluster of
    silences moves the distribution within a few of them. A censored silence (``censored``:
    the controller started inside it) is at risk up to its length and ends nowhere: it
    says the silence lasted *at least* that long. Worked numbers, half-life 1, gaps 100,
    200, 400 s, oldest first, weights 0.25, 0.5, 1 (total 1.75): S(100) = 1 - 0.25 / 1.75
    = 0.857, S(200) = 0.857 x (1 - 0.5 / 1.5) = 0.571, S(400) = 0. With the 100 s
    censored: S(200) = 1 - 0.5 / 1.5 = 0.667, S(400) = 0."""
    n = len(seen)
    weighted = sorted(((s.gap_s, 2.0 ** (-(n - 1 - i) / half_life), s.censored)
                       for i, s in enumerate(seen)), key=lambda e: (e[0], e[2]))
    if unseen:
        weighted.append((math.inf, 1.0, True))
    at_risk = math.fsum(w for _, w, _ in weighted)
    alive, out = 1.0, []
    j = 0
    while j < len(weighted):
        t = weighted[j][0]
        ended = left = 0.0
        while j < len(weighted) and weighted[j][0] == t:
            if weighted[j][2]:
                left += weighted[j][1]
            else:
                ended += weighted[j][1]
            j += 1
        if ended > 0.0 and at_risk > 0.0:
            alive *= max(0.0, 1.0 - ended / at_risk)
            out.append((t, alive))
        at_risk -= ended + left
    return tuple(out)


def spread_plan(seen: tuple[Surge, ...], above_min: int, min_replicas: int, sync_s: float,
                budget: float, hold_s: float = 0.0, slo_s: float = 0.0) -> Plan:
    """Keep k = ``above_min`` replicas through the next silence until it has outlasted
    what the recent silences say (``SILENCE_SPREAD``), or release as before (``Plan()``).

    tau is the shortest length by which a share ``QUANTILE`` of the recency-weighted
    silences ended (``survival``; when censored silences leave that share unreached, the
    longest that ended). A keep past the hold must spare something (the surges it covers
    missed beyond the budget on ``minReplicas`` and fewer with k more) and, ski rental,
    never cost more than the mean of what it spares: k x (tau - hold) <= mean S over the
    covered surges; the longest event time within tau that meets both is kept.
    Worked numbers (the module's surge, S = 228,000, k 33, hold 0, quantile 0.9,
    half-life 4): gaps 1,200, 1,200, 3,604 s: weights 0.59, 0.71, 0.84 (S(1,200) = 0.39,
    S(3,604) = 0): tau 3,604, 33 x 3,604 = 118,932 <= 228,000: keep 33 for 3,604 s.
    Gaps 20,000 then 600 s: S(600) = 0.46, S(20,000) = 0; 660,000 > 228,000: keep for
    600 s (19,800)."""
    if above_min <= 0 or not seen:
        return Plan()
    k = above_min
    surv = survival(seen, HALF_LIFE, UNSEEN)
    if not surv:
        return Plan()
    tau_q = next((t for t, alive in surv if 1.0 - alive >= QUANTILE - 1e-12),
                 -math.inf if UNSEEN else surv[-1][0])
    spared = {}
    for i, s in enumerate(seen):
        v_0 = value(s, excess(s, min_replicas, sync_s, slo_s), budget)
        v_k = value(s, excess(s, min_replicas + k, sync_s, slo_s), budget)
        spared[i] = 0.0 if v_0 == v_k else v_0 - v_k
    for tau, _ in reversed(surv):
        if tau > tau_q or tau <= hold_s:
            continue
        covered = [spared[i] for i, s in enumerate(seen)
                   if not s.censored and hold_s < s.gap_s <= tau]
        if not covered or not any(v > 0.0 for v in covered):
            continue
        if k * (tau - hold_s) <= math.fsum(covered) / len(covered):
            return Plan(k, tau)
    return Plan()


def plan(seen: tuple[Surge, ...], above_min: int, min_replicas: int, sync_s: float,
         budget: float, hold_s: float = 0.0, slo_s: float = 0.0) -> Plan:
    """Keep k = ``above_min`` replicas (the fleet at the silence's start, above
    ``minReplicas``) through the next silence for the tau that spares most under a
    pessimistic reading of the silences seen, or release as before (``Plan()``).

    **Against what the release rule does anyway.** ``hold_s`` is how long a silence keeps
    the fleet with no plan (``observe``: two release holds and the behaviour's scale-down
    stabilisation), so any silence up to it is kept through either way: a keep is worth only
    what it adds beyond the hold: through a silence of ``gap`` <= tau it costs
    k x (gap - hold) more and spares S = V(E(0)) - V(E(k)) of the surge after it; through
    one that outlasts tau it costs k x (tau - hold) and spares nothing. A silence no longer
    than the hold counts for nothing either way. (Client 28, 2 days: the keeps of 24-60
    replicas the empirical plan chose covered silences the doubled hold covered anyway, or
    were outlasted, and were asked through all of tau, so held a hold longer: 81.33 % /
    195.3 GPU-h with no plan, 80.74 % / 323.5 with it.)

    **The unseen silence.** If the silences are exchangeable (no usable order), the next
    one is as likely to rank anywhere among the n + 1: it is the (n + 1)-th sample, and the
    n seen say nothing of it. It is priced at its worst, a silence that outlasts tau (the
    keep can cost no more), so a keep must win over the n seen *and* pay for one more
    failure: gain(tau) = sum over seen of [S_i - k (gap_i - hold) if hold < gap_i <= tau;
    -k (tau - hold) if gap_i > tau] - k (tau - hold) > 0. The wider the spread (the more
    silences outlast a tau), the less any tau gains, down to ``Plan()``: the behaviour
    before this module. One silence alone justifies a keep only if the surge after it
    spared twice what the keep costs. More of the same evidence never shortens a keep
    (each silence seen twice: gain2 = 2 gain1 + k (tau - hold)); a silence longer than
    every one seen, after a surge a keep spares nothing of, never lengthens it.

    **Ski rental's bound.** However the evidence reads, a keep never costs more than the
    misses it spares are worth at the spec's budget: k x (tau - hold) <= the mean S of
    the surges it covers, so a keep that a silence outlasts loses at most one cold start's
    worth of misses, the deterministic ski-rental bound (at most twice the cost of the
    better choice in hindsight). Ties go to the shorter keep. With no budget (100 %
    target) a miss is worth more than any keep: the tau covering the most surges whose
    misses a keep spares wins.

    k is the whole fleet, not a part sized from the first lead time's demand: that demand
    is a 60-s mean, and the fleet the surge settled on carries its per-second bursts and
    the backlog they left (client 28: keeping the 20 replicas the first lead time's mean
    asked for, of the 75 the surge ended on, spared no attainment at all, 82.99 % either
    way).

    Worked numbers (the module's example), k 33, hold 0, three surges after silences of
    1,200, 1,200 and 3,604 s, each S = 228,000: gain(1,200) = 2 x (228,000 - 39,600)
    - 39,600 (the 3,604 s outlasts it) - 39,600 (the unseen) = 297,600; gain(3,604) =
    3 x 228,000 - 33 x 6,004 - 118,932 = 366,936, and 118,932 <= 228,000: keep 33 for
    3,604 s. One silence of 6,000 s: 228,000 - 198,000 - 198,000 < 0: release (the old
    plan kept)."""
    if above_min <= 0 or not seen:
        return Plan()
    k = above_min
    spared = []
    for s in seen:
        v_0 = value(s, excess(s, min_replicas, sync_s, slo_s), budget)
        v_k = value(s, excess(s, min_replicas + k, sync_s, slo_s), budget)
        spared.append(0.0 if v_0 == v_k else v_0 - v_k)  # inf - inf: a keep spares nothing
    best, best_gain = Plan(), (0, 0.0)
    for tau in sorted({s.gap_s for s in seen if s.gap_s > hold_s}):
        over = k * (tau - hold_s)
        covered = [(v, s.gap_s) for v, s in zip(spared, seen, strict=True)
                   if hold_s < s.gap_s <= tau]
        if over > math.fsum(v for v, _ in covered) / len(covered):
            continue  # ski rental: never keep for longer than a cold start's misses are worth
        infinite = sum(math.isinf(v) for v, _ in covered)
        outlasting = sum(s.gap_s > tau for s in seen)
        finite = math.fsum(v - k * (g - hold_s) for v, g in covered if not math.isinf(v))
        gain = (infinite, finite - over * (outlasting + 1))
        if gain > best_gain:
            best, best_gain = Plan(k, tau), gain
    return best
