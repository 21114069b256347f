"""Keeping a fleet through a silence when surges recur: ski rental with a memory of gaps.

A batch client is silent for minutes to days, then sends tens of requests per second.
Released during the silence (``predictive._provably_idle``), the fleet is back only one
lead time (cold start + sync) after the next surge begins, and the surge's first lead time
queues behind ``minReplicas``: on ServeGen clients that surge every 10-60 minutes this
lost 4-17 points of attainment (client 3 85.09 % -> 67.54 %, client 28 98.04 % ->
82.99 %), while keeping every fleet through every silence cost client 28 alone 20,091
GPU-h in 14 days against the WVA's 968. Neither extreme: keep the fleet through a silence
for as long as keeping is cheaper than the misses a cold start would cost, *given how long
the silences seen so far lasted*.

**The price of a miss.** The SLO prices it: a target attainment A leaves an error budget
b = 1 - A of the requests (1 % at 99 %). A surge that the fleet served with G replica-
seconds for N requests met its promise with b x N misses to spare; a cold start that makes
it miss E requests spends (E - b x N) beyond that budget, i.e. (E - b x N) / (b x N)
budgets. Pricing one whole budget at the whole spend (what the operator pays for the
surge is what it pays for its attainment) gives a cold start's price

    price = max(0, E - b x N) x (G / N) / b   replica-seconds.

A surge whose cold start misses no more than the budget allows is worth no keeping at all
(price 0). E is what the surge sends in its first lead time above what the released
fleet (``minReplicas`` x one replica's capacity at the SLO) carries: the requests that
queue while new replicas start. It is a property of the demand, measured whether or not
the fleet was kept (a kept fleet served them, but a released one would not have).

**The memory.** Each silence that ended is remembered with the price of the surge that
followed it (priced when that surge ended, at the next silence). For the current silence
the keep time is the threshold tau that would have cost least over the remembered
silences, each costing ``kept x gap`` if tau covers it and ``kept x tau`` plus its
surge's price if it does not (``keep_for``): the empirical optimum of ski rental over thresholds
(tau = 0 is "release as before"; any other optimum is one of the remembered gaps). A
silence that lasts longer than tau is released; when it ends, its length is remembered,
so a client whose surges stop recurring stops being kept.

**Bounds.** The memory holds at most ``MEMORY_ENTRIES`` silences, none that ended more
than ``MEMORY_S`` ago: one week, the longest season the forecasters model
(``seasonal_weekly``, the time-of-week ``profile``), the longest period a batch schedule
is assumed to repeat on. O(``MEMORY_ENTRIES``) per decision. The keep is at most the
longest remembered gap, and ``kept x tau`` never exceeds the sum of the remembered prices
(tau is optimal only if the surges it catches pay for it), so a silent workload is
released once its silence outlasts every silence it has shown.

Worked example (defaults: lead time 135 s, b = 1 %): a surge of N = 4,000 requests in
600 s served by G = 12,000 replica-s (3 replica-s a request) sent E = 800 of them in its
first 135 s above one replica's 1.5 req/s; price = (800 - 40) x 3 / 0.01 = 228,000
replica-s. Keeping 33 replicas above ``minReplicas`` costs 33 replica-s a second, so a
silence of up to 228,000 / 33 = 6,909 s (1.9 h) is worth keeping through for that surge
alone: after silences of 1,200 s, 1,200 s and 3,604 s (each followed by such a surge) the
next silence is kept for 3,604 s; after silences of 19,201 s and 63,002 s it is released at
once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MEMORY_S = 7 * 86_400.0
"""Silences that ended longer ago than this (one week) are forgotten."""
MEMORY_ENTRIES = 32
"""At most this many silences are remembered (the newest); bounds the state and the cost
of ``keep_for`` (32 candidates x 32 silences)."""


@dataclass(frozen=True, slots=True)
class Surge:
    """The traffic since the last silence ended, accumulated one decision at a time."""

    start: float
    """Time of the first decision that saw traffic after the silence, seconds."""
    gap_s: float
    """How long the silence before it lasted, seconds."""
    requests: float = 0.0
    """Requests seen (demand rate x sync period, summed)."""
    excess: float = 0.0
    """Requests of its first lead time above what the released fleet carries."""
    replica_s: float = 0.0
    """Replica-seconds the fleet spent on it."""


@dataclass(frozen=True, slots=True)
class SurgeMemory:
    """The silences seen, each with the price of the surge that followed it."""

    quiet_since: float | None = None
    """Start of the current silence (first provably idle reading after traffic); readings
    that prove nothing (stale, partial) neither end nor restart it. None: traffic."""
    surge: Surge | None = None
    """The surge under way since the last silence (None before the first silence)."""
    seen: tuple[tuple[float, float, float], ...] = ()
    """(time the surge ended, silence before it in s, its price in replica-s), oldest first."""


def price(surge: Surge, budget: float) -> float:
    """Replica-seconds a cold start before ``surge`` costs (the module's formula).

    Worked numbers, budget 0.01: N 4,000, E 800, G 12,000 -> 760 x 3 / 0.01 = 228,000;
    E 40 (exactly the budget) -> 0; no requests -> 0."""
    if surge.requests <= 0.0 or budget <= 0.0:
        return 0.0
    over = max(0.0, surge.excess - budget * surge.requests)
    return over * (surge.replica_s / surge.requests) / budget


def observe(mem: SurgeMemory, now: float, *, idle: bool, demand: float | None,
            floor_rps: float, replicas: int, lead_s: float, sync_s: float,
            budget: float) -> SurgeMemory:
    """The memory after one decision.

    ``idle``: the readings prove the fleet idle (``_provably_idle``); ``demand``: the fresh
    demand rate (requests/s) or None when it is not known. A proof of idleness starts a
    silence (and prices the surge that it ends); fresh demand above 0 ends one (and starts
    a surge); anything else (stale, partial, requests in flight with no new ones) changes
    nothing, so doubtful data neither counts as a silence nor cuts one short."""
    if idle:
        if mem.quiet_since is not None:
            return mem
        seen = mem.seen
        if mem.surge is not None:
            seen = (*seen, (now, mem.surge.gap_s, price(mem.surge, budget)))
        return SurgeMemory(quiet_since=now, surge=None, seen=_forget(seen, now))
    if demand is None or not demand > 0.0:
        return mem
    surge = mem.surge
    if mem.quiet_since is not None:
        surge = Surge(start=now, gap_s=max(0.0, now - mem.quiet_since))
    if surge is None:
        return mem
    excess = surge.excess
    if now - surge.start < lead_s:
        excess += max(0.0, demand - floor_rps) * sync_s
    surge = replace(surge, requests=surge.requests + demand * sync_s, excess=excess,
                    replica_s=surge.replica_s + max(0, replicas) * sync_s)
    return SurgeMemory(quiet_since=None, surge=surge, seen=mem.seen)


def _forget(seen: tuple[tuple[float, float, float], ...], now: float
            ) -> tuple[tuple[float, float, float], ...]:
    kept = tuple(e for e in seen if now - e[0] <= MEMORY_S)
    return kept[-MEMORY_ENTRIES:]


def keep_for(mem: SurgeMemory, now: float, kept: int) -> float:
    """Seconds to keep ``kept`` replicas (above what a release leaves) through a silence.

    The threshold tau in {0} and the remembered gaps that minimises
    sum over silences of ``kept x min(gap, tau)`` + (its surge's price if gap > tau);
    ties go to the shorter keep. Worked numbers, kept 33: silences 1,200, 1,200, 3,604 s
    each priced 228,000: tau 0 costs 684,000; tau 1,200 costs 2 x 39,600 + 33 x 1,200 +
    228,000 = 346,800; tau 3,604 costs 79,200 + 118,932 = 198,132: keep 3,604 s."""
    entries = [(g, p) for t, g, p in mem.seen if now - t <= MEMORY_S][-MEMORY_ENTRIES:]
    if kept <= 0 or not entries:
        return 0.0
    best_tau, best = 0.0, math.fsum(p for _, p in entries)
    for tau in sorted({g for g, _ in entries}):
        cost = math.fsum(kept * min(g, tau) if g <= tau else kept * tau + p
                         for g, p in entries)
        if cost < best:
            best_tau, best = tau, cost
    return best_tau
