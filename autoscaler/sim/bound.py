"""A proven lower bound on the GPU-hours any policy needs for a given SLO attainment.

Why: a ratio against a baseline means nothing unless the baseline cannot be beaten. This
floor cannot: no schedule of replicas, however clairvoyant, serves the same requests with
the same attainment for fewer GPU-hours on the same simulated replicas.

Definition (``gpu_hours_lower_bound``). The replayed requests are *items* i with an arrival
time a_i, a count c_i (1 per request; a fractional count per tick for the fluid engine), a
deadline D_i (the TTFT objective, ``ttft_objective(slo, prompt_i)``, plus the engine's
timing slack) and a unit work w_i in replica-seconds that must be done by a ready replica
between a_i and a_i + D_i for the request to meet its objective:

* request engine: w_i = prompt_i x (step_per_prefill_token_s + step_base_s /
  max_num_batched_tokens). A request's first token comes at the end of the step that
  prefills its prompt's last chunk. Every step lasts step_base_s + step_per_prefill_token_s
  x its prefill tokens x + step_per_decode_seq_s x its decodes, and carries at most
  max_num_batched_tokens (B) prefill tokens, so x <= B and

      step time >= step_base_s + step_per_prefill_token_s x x
                >= x x (step_base_s / B + step_per_prefill_token_s):

  each prefill token costs its replica at least that many seconds, whichever step and
  batch it rides in (worked number, llama3-8b-h100: 8 ms / 8,192 + 50 us = 50.98 us per
  token, 1,000 tokens = 0.05098 replica-s; the step base adds 2% to the bare prefill
  cost). So a request that meets its objective received w_i replica-seconds inside [a_i,
  a_i + D_i] (a preempted request's recomputed prefill only adds work). It misses under
  every policy when even an idle replica is too slow: ceil(prompt_i / B) steps of
  step_base_s plus the prefill, ``idle_ttft_s``, above D_i.

  Decode is not counted, and cannot be against a deadline: a request that met its
  objective may be preempted (its KV blocks reclaimed by vLLM's recompute policy) right
  after its first token and wait behind others, so none of its decode steps is bound to
  fall inside any window. Only its prefill is.
* fluid engine: w_i = 1 / mu, mu = ``max_throughput_rps`` of the trace's mean token mix:
  the fluid fleet serves at most R x mu requests per second with R ready replicas, FIFO,
  and counts an arrival as met only when the backlog ahead of it drains within its
  objective (at the fleet of its arrival time, read per 1-s tick: D_i gets two ticks of
  slack, one for the arrival's place inside its tick and one for service read per tick, as
  ``fluid_items`` builds it; more slack only lowers the bound). This is a proof about the
  fluid engine's own accounting.

Let f = min(minReplicas, the initial fleet, the GPU quota): the provisioned fleet never
falls below f (every decision is clamped to >= minReplicas, and a replica costs GPU time
from the moment it is asked for). Split [0, T) into disjoint windows J. An item is
*contained* in J when [a_i, a_i + D_i] lies inside J. Then for every window

    integral over J of provisioned replicas >= max(f x |J|, met contained work in J),

because the met contained items' work is done inside J by ready (or draining) replicas, all
of which are provisioned. Summing over the disjoint windows,

    GPU-seconds / gpus_per_replica >= sum_J max(f |J|, W_J - X_J),

W_J the work of the items contained in J and X_J the work of those among them that missed.
A result with attainment A missed (1 - A) x N requests; the ones whose work alone exceeds
their objective (w_i > D_i) miss under every policy, so at most K = (1 - A) N - (those) of
the rest can be dropped. The bound takes the drops that lower the sum the most: within a
window a drop saves at most min(excess left, its work), the largest works first, and across
windows the K units with the largest per-unit saving (a fractional knapsack, whose optimum
is at least the integer one). A window partition is arbitrary, so the bound is the largest
over several window lengths and offsets; each one is a valid bound, hence so is their max.

Cold starts and whole replicas (``cold_start_s`` = c > 0, the profile's fixed cold start;
its jitter only adds). A replica's GPU time runs from the moment it is asked for
(``ReplicaRecord.requested_at``) to its end, and it serves (request engine: runs steps,
ready or draining; fluid engine: counted in the ready fleet R) only inside [ready_at,
ended_at), where ready_at >= requested_at + c for every replica started by a decision and
ready_at = requested_at = 0 for the initial fleet. Split the scored span into disjoint
*blocks* B = [b, b + c + L) and let J = [b + c, b + c + L) be the block's last L seconds
(a partial block at either end: J = [b + c, its end), empty when the block is no longer
than c). Let N_J be the replicas that do some of the met contained work of J. Each of
them serves only from s_r = max(ready_at, b + c) on inside J, and is provisioned
throughout [s_r - c, ended_at): for a started replica because requested_at <= ready_at - c
<= s_r - c, for an initial one because requested_at = 0 <= b (blocks start at or after the
scored part's start, so s_r - c >= b lies in it, even for a held-out part whose GPU time
counts only from its cut). So its provisioned time inside B is at least |[s_r - c,
min(ended_at, end of B))| = c + |[s_r, min(ended_at, end of B))| >= c + its served time in
J, and summed over them

    integral over B of provisioned replicas >= sum over those replicas (c + served time
    in J) >= c N_J + (W_J - X_J),

with W_J - X_J the met contained work of J (the same argument as above: it is done inside
J by these replicas). A replica serves at most L seconds of J, so N_J >= ceil((W_J - X_J) /
L): replicas are whole. With h(w) = w + c ceil(w / L) (nondecreasing in w) and the floor
over the whole block,

    integral over B of provisioned replicas >= v_B(X_J) = max(f |B|, h(W_J - X_J)).

Worked number (llama3-8b-h100, c = 90 s, L = 15 s, f = 1): a burst whose met prefill in J
needs 18 replica-s (1.2 replicas) has two replicas serving in J, each provisioned for the
90 s before it serves there: at least 2 x 90 + 18 = 198 replica-s over the 105-s block,
against the floor's 105. Misses: dropping the k largest works of J leaves W_J - S_J(k) (S_J
the sum of the k largest, a concave piecewise linear function of k), so the least any
schedule with k_B misses in block B pays is v_B(k_B) = max(f |B|, h(W_J - S_J(k_B))). The
bound is min over sum_B k_B <= K of sum_B v_B(k_B), relaxed: each v_B is replaced by its
lower convex envelope in k (exact: v_B is linear between its work breakpoints, the points
where W_J - S_J(k) crosses a multiple of L (h drops by c there; the value after the drop is
the one kept) and where h crosses the floor), and the relaxed problem is solved exactly by
taking the envelopes' segments in order of their saving per dropped request (a greedy is
optimal for separable convex costs under one budget). Both steps only lower the minimum.
As with the windows above, every block partition gives a valid bound, and the largest over
several block lengths and offsets is kept, together with the window bounds.

It is loose where the work that binds is not the one counted: for the request engine only
the prefill is counted (decode need not finish by any deadline, see above), so on the 8B
profile with 1,000-token prompts the bound is roughly half of what a fleet at the SLO
costs. The cold-start blocks add only where a burst's met prefill needs a second whole
replica within L seconds (or, at minReplicas 0, any replica at all), and at 99 % the misses
are best spent on exactly those bursts: on the embedded demo's held-out hour the prefill
never needs more than one replica in any window, and the bound stays the one-replica floor.
Not counted, and why: decode. A request that met its objective keeps its replica busy
until it completes (the replica steps while it holds a request, and a started request is
never sent elsewhere), but its decode may still run after the scored part ends, and how
much may is bounded per replica at best (by max_num_seqs started requests at once, which
seems to hold in this engine because a preempted started request is re-admitted before any
new one; argued, not tested), not in total: no term was proven.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autoscaler.traces.model import FloatArray

WINDOW_LENGTHS_S: tuple[float, ...] = (15.0, 60.0, 300.0, 3600.0)
"""Window lengths tried (seconds). Short windows follow bursts, long ones lose little to the
items that straddle a window edge; the max over all of them is kept."""
WINDOW_OFFSETS: tuple[float, ...] = (0.0, 0.5)
"""Window start offsets tried, as fractions of the window length."""
COLD_WINDOW_LENGTHS_S: tuple[float, ...] = (5.0, 15.0, 60.0, 300.0)
"""Lengths L of the served part J of a cold-start block (the block is c + L long). Short
ones catch a burst that needs one more whole replica for a few seconds; the max is kept."""
COLD_OFFSETS: tuple[float, ...] = (0.0, 0.5)
"""Block start offsets tried, as fractions of the block length c + L."""
_CEIL_TOL = 1e-9
"""ceil(w / L - this): a w that is a whole number of L only by float noise is not rounded
up (rounding down only lowers the bound)."""
_FLUID_PROMOTE_TOL_S = 1e-6
"""The fluid engine promotes a replica whose ready time is within 1e-9 s of a tick: the
cold start the bound counts is shortened by more than that."""

DEFINITION = (
    "Replicas that do only the work a request needs before its first "
    "token (request engine: its prefill at the profile's prefill cost per token plus the "
    "step base over a full token budget; fluid engine: "
    "1/mu per request at the fleet's full-batch throughput mu), each request's work inside "
    "[arrival, arrival + its TTFT objective], never fewer than min(minReplicas, initial "
    "fleet, GPU quota) replicas, fractional except that every replica serving in a window is "
    "whole and was provisioned for the profile's cold start before it served there, "
    "with the result's misses spent where they save the most. "
    "No policy can use fewer GPU-hours at the same attainment (proof: autoscaler/sim/bound.py)."
)


@dataclass(frozen=True, slots=True)
class Items:
    """What the bound needs from one replay (arrays of equal length)."""

    arrival_s: FloatArray
    count: FloatArray
    """Requests per item (1 per request; arrivals per tick for the fluid engine)."""
    work_s: FloatArray
    """Replica-seconds of work per request before its first token."""
    deadline_s: FloatArray
    """Seconds after arrival by which that work must be done (objective + slack)."""
    impossible: FloatArray
    """Requests per item that miss under any policy (their prefill alone is too long)."""


def gpu_hours_lower_bound(items: Items, *, duration_s: float, floor_replicas: float,
                          gpus_per_replica: int, attainment: float,
                          lengths_s: Sequence[float] = WINDOW_LENGTHS_S,
                          cold_start_s: float = 0.0,
                          cold_lengths_s: Sequence[float] = COLD_WINDOW_LENGTHS_S) -> float:
    """The bound of the module docstring for a result with ``attainment`` (0..1).

    ``cold_start_s``: the profile's fixed cold start (0 leaves out the cold-start blocks)."""
    total = float(items.count.sum())
    misses = max(0.0, (1.0 - min(1.0, max(0.0, attainment))) * total)
    # Float noise in (1 - A) x N may go either way: allowing a few 1e-9 of a request more
    # misses only lowers the bound (at A = 0 every request may miss: the floor alone).
    droppable = max(0.0, misses - float(items.impossible.sum()) + 1e-9 * max(1.0, total))
    possible = np.maximum(items.count - items.impossible, 0.0)
    best = floor_replicas * duration_s
    for length in lengths_s:
        if length >= duration_s and length != lengths_s[0]:
            continue
        for frac in WINDOW_OFFSETS:
            best = max(best, _windowed(items, possible, duration_s, floor_replicas,
                                       length, frac * length, droppable))
    cold = cold_start_s - _FLUID_PROMOTE_TOL_S
    if cold > 0:
        for length in cold_lengths_s:
            if length + cold >= duration_s and length != cold_lengths_s[0]:
                continue
            for frac in COLD_OFFSETS:
                best = max(best, _cold_blocks(items, possible, duration_s, floor_replicas,
                                              length, cold, frac * (length + cold),
                                              droppable, beat=best))
    return best * gpus_per_replica / 3600.0


def _edges(duration_s: float, length: float, offset: float) -> FloatArray:
    """0, offset, offset + length, ..., duration (no empty first window)."""
    inner = np.arange(offset if offset > 0 else length, duration_s, length)
    return np.concatenate(([0.0], inner[inner > 0], [duration_s]))


def _cold_blocks(items: Items, possible: FloatArray, duration_s: float, floor: float,
                 length: float, cold: float, offset: float, droppable: float,
                 beat: float = -math.inf) -> float:
    """Replica-seconds bound of one block partition (module docstring, cold starts):
    blocks of c + L seconds, the served part J their last L (less for a partial block).
    When even no misses at all (sum_B v_B(0), an upper end of this value) cannot exceed
    ``beat``, that is returned without the envelopes: the caller keeps the larger."""
    edges = _edges(duration_s, length + cold, offset)
    widths = np.diff(edges)
    j_start = edges[:-1] + cold
    j_len = edges[1:] - j_start
    j = np.clip(np.searchsorted(edges, items.arrival_s, side="right") - 1, 0,
                len(widths) - 1)
    inside = ((items.arrival_s >= j_start[j]) & (j_len[j] > 0) & (possible > 0)
              & (items.arrival_s + items.deadline_s <= edges[j + 1] + 1e-9))
    floor_s = floor * widths
    total = float(floor_s.sum())
    jc, cnt, w = j[inside], possible[inside], items.work_s[inside]
    if len(jc) == 0:
        return total
    work = np.bincount(jc, weights=cnt * w, minlength=len(widths))
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(work > 0, np.ceil(work / np.where(j_len > 0, j_len, 1.0)
                                          - _CEIL_TOL), 0.0)
    upper = float(np.maximum(floor_s, work + cold * need).sum())
    if upper <= beat:
        return upper
    order = np.lexsort((-w, jc))
    jc, cnt, w = jc[order], cnt[order], w[order]
    cuts = np.flatnonzero(np.diff(jc)) + 1
    rates: list[FloatArray] = []
    spans: list[FloatArray] = []
    for blk, c_b, w_b in zip(np.split(jc, cuts), np.split(cnt, cuts), np.split(w, cuts),
                             strict=True):
        b = int(blk[0])
        k, v = _block_curve(c_b, w_b, float(floor_s[b]), float(j_len[b]), cold, droppable)
        total += float(v[0]) - float(floor_s[b])
        if len(k) > 1:
            dk, dv = np.diff(k), np.diff(v)
            rates.append(-dv / dk)
            spans.append(dk)
    if not rates or droppable <= 0:
        return total
    rate, span = np.concatenate(rates), np.concatenate(spans)
    g = np.argsort(-rate, kind="stable")
    rate, span = rate[g], span[g]
    cum = np.cumsum(span)
    n = int(np.searchsorted(cum, droppable, side="left"))
    saved = float((rate[:n] * span[:n]).sum())
    if n < len(rate):
        saved += (droppable - (float(cum[n - 1]) if n > 0 else 0.0)) * float(rate[n])
    return max(float(floor_s.sum()), total - saved)


def _block_curve(counts: FloatArray, works: FloatArray, floor_s: float, length: float,
                 cold: float, droppable: float) -> tuple[FloatArray, FloatArray]:
    """The lower convex envelope of v(k) = max(floor_s, h(W - S(k))) on [0, min(requests,
    droppable)], h(w) = w + cold x ceil(w / length), S(k) the work of the k largest
    (``works`` sorted largest first, ``counts`` requests of each): its vertices (k, v)."""
    kc = np.concatenate(([0.0], np.cumsum(counts)))
    sc = np.concatenate(([0.0], np.cumsum(counts * works)))
    whole = float(sc[-1])
    k_max = min(float(kc[-1]), max(0.0, droppable))

    def value(k: FloatArray) -> FloatArray:
        rest = np.maximum(whole - np.interp(k, kc, sc), 0.0)
        h = rest + cold * np.ceil(rest / length - _CEIL_TOL)
        return np.asarray(np.maximum(floor_s, h), dtype=np.float64)

    if k_max <= 0:
        return np.zeros(1), value(np.zeros(1))
    m = np.arange(1.0, math.ceil(whole / length) + 1.0)
    # Where the rest of the work is a whole number of L (h drops by c), and where h
    # crosses the floor on the piece ((m - 1) L, m L] of h.
    at = [whole - m * length]
    cross = floor_s - cold * m
    at.append(whole - cross[(cross > (m - 1.0) * length) & (cross <= m * length)])
    s_pts = np.concatenate(at)
    s_pts = s_pts[(s_pts >= 0.0) & (s_pts <= whole)]
    ks = np.concatenate((kc, np.interp(s_pts, sc, kc), [k_max]))
    ks = np.unique(ks[ks <= k_max])
    vs = value(ks)
    # Without a drop of h inside [0, k_max] (rest = m L for m >= 1, or everything dropped)
    # v is convex there (the max of the floor and W - S(k) + m c, S concave), so the points
    # are already its envelope; only a block whose drops reach a whole replica needs a hull.
    s_jump = whole - m * length
    s_jump = s_jump[(s_jump >= 0.0) & (s_jump < whole)]
    reach = float(np.interp(k_max, kc, sc))
    if reach < whole and not np.any(s_jump <= reach):
        return ks, vs
    return _lower_hull(ks, vs)


def _lower_hull(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Vertices of the lower convex hull of points sorted by x (Andrew's monotone chain)."""
    hx: list[float] = []
    hy: list[float] = []
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        while len(hx) >= 2 and ((hx[-1] - hx[-2]) * (yi - hy[-2])
                                - (hy[-1] - hy[-2]) * (xi - hx[-2])) <= 0:
            hx.pop()
            hy.pop()
        hx.append(xi)
        hy.append(yi)
    return np.asarray(hx), np.asarray(hy)


def _windowed(items: Items, possible: FloatArray, duration_s: float, floor: float,
              length: float, offset: float, droppable: float) -> float:
    """Replica-seconds bound for one window partition: edges offset, offset + length, ..."""
    edges = np.arange(offset, duration_s, length) if offset > 0 else np.arange(
        0.0, duration_s, length)
    edges = np.concatenate(([0.0], edges[edges > 0], [duration_s])) if offset > 0 else \
        np.concatenate((edges, [duration_s]))
    widths = np.diff(edges)
    j = np.searchsorted(edges, items.arrival_s, side="right") - 1
    j = np.clip(j, 0, len(widths) - 1)
    contained = (items.arrival_s + items.deadline_s <= edges[j + 1] + 1e-9) & (possible > 0)
    jc = j[contained]
    cnt = possible[contained]
    w = items.work_s[contained]
    work = np.bincount(jc, weights=cnt * w, minlength=len(widths))
    floor_s = floor * widths
    base = float(np.maximum(floor_s, work).sum())
    excess = np.maximum(work - floor_s, 0.0)
    if droppable <= 0 or not np.any(excess > 0):
        return base
    # Within each window the largest works first; the saving of each item is capped by
    # the excess its window has left.
    order = np.lexsort((-w, jc))
    jo, wo, co = jc[order], w[order], cnt[order]
    item_work = wo * co
    cum = np.cumsum(item_work)
    start_of = np.concatenate(([0], np.flatnonzero(np.diff(jo)) + 1))
    first = np.repeat(start_of, np.diff(np.concatenate((start_of, [len(jo)]))))
    before = cum - item_work - (cum[first] - item_work[first])
    usable = np.clip(excess[jo] - before, 0.0, item_work)
    keep = usable > 0
    uw, us = wo[keep], usable[keep]
    units = us / np.maximum(uw, 1e-300)
    # Across windows: the units with the largest saving each, until the drops run out.
    g = np.argsort(-uw, kind="stable")
    cu = np.cumsum(units[g])
    k = int(np.searchsorted(cu, droppable, side="left"))
    saved = float(us[g][:k].sum())
    if k < len(g):
        taken = droppable - (float(cu[k - 1]) if k > 0 else 0.0)
        saved += max(0.0, taken) * float(uw[g][k])
    return max(float(floor_s.sum()), base - saved)


def request_items(arrival_s: FloatArray, prompt_tokens: FloatArray, objective_s: FloatArray,
                  prefill_tokens_per_s: float, *, step_base_s: float = 0.0,
                  max_num_batched_tokens: float = math.inf) -> Items:
    """Items of the request engine: one per request, its prefill as the work (each token
    at least ``1 / prefill_tokens_per_s + step_base_s / max_num_batched_tokens`` replica-s,
    see the module docstring; the defaults give the bare prefill cost)."""
    p = np.asarray(prompt_tokens, dtype=np.float64)
    per_token = 1.0 / prefill_tokens_per_s + step_base_s / max_num_batched_tokens
    work = p * per_token
    steps = np.ceil(p / max_num_batched_tokens) if math.isfinite(max_num_batched_tokens) \
        else np.zeros_like(p)
    idle_ttft_s = steps * step_base_s + p / prefill_tokens_per_s
    n = len(work)
    obj = np.asarray(objective_s, dtype=np.float64)
    return Items(arrival_s=np.asarray(arrival_s, dtype=np.float64), count=np.ones(n),
                 work_s=work, deadline_s=obj,
                 impossible=(idle_ttft_s > obj).astype(np.float64))


def fluid_items(arrivals_per_tick: FloatArray, tick_s: float, mu_rps: float | FloatArray,
                prefill_s: float | FloatArray, objective_s: float | FloatArray) -> Items:
    """Items of the fluid engine: one per tick, 1/mu per request, two ticks of slack (the
    arrival's place inside its tick, and service read per tick). ``mu_rps``, ``prefill_s``
    and ``objective_s`` may be per tick (token means that change over time)."""
    a = np.asarray(arrivals_per_tick, dtype=np.float64)
    n = len(a)
    mu = np.broadcast_to(np.asarray(mu_rps, dtype=np.float64), (n,))
    pre = np.broadcast_to(np.asarray(prefill_s, dtype=np.float64), (n,))
    obj = np.broadcast_to(np.asarray(objective_s, dtype=np.float64), (n,))
    return Items(arrival_s=np.arange(n, dtype=np.float64) * tick_s, count=a,
                 work_s=1.0 / mu, deadline_s=obj + 2.0 * tick_s,
                 impossible=np.where(pre > obj, a, 0.0))


def floor_of(min_replicas: int, initial_replicas: int, gpu_quota: int | None) -> float:
    """The provisioned fleet's floor (see the module docstring)."""
    q = math.inf if gpu_quota is None else gpu_quota
    return float(min(min_replicas, initial_replicas, q))
