"""Capacity learned from the fleet itself: what one replica carries at the SLO, per unit of work.

Pure and O(1) per step: the estimate lives in an immutable ``LearnedCapacity`` carried in the
policy state, and each step folds in one observation of the fleet.

Units of work (``UNITS``): prompt tokens/s (prefill, what binds TTFT), generated tokens/s
(decode steps of the batch), and requests/s (the spec's prior, and the fallback when a
preset has no token counters). One replica's capacity at the SLO is estimated per unit; the
policy needs max over units of demand_u / capacity_u replicas.

The requests/s unit counts work, not requests, once the fleet has taught it something and
the token counters are read: a request's work is its prompt tokens plus ``DECODE_TOKEN_WORK``
x its generated tokens (``work_per_request``), and the unit becomes "requests of the mix it
was first learned at" (``LearnedCapacity.work_ref``). A reading or a demand at mix m then
counts R x w(m) / work_ref of them (``work_factor``). Without this, a count learned on long
prompts binds wrongly when they shorten: Azure conv (1 h), learned at 10.9 req/s of ~1,430 +
~140 tokens, planned 9.6 req/s of ~790 + ~140 at 37 minutes against 0.85 x 10.9 = 9.3 and
asked for a second replica; counted as work that is 9.6 x (790 + 140) / (1,430 + 140) = 5.7
requests of the learned mix, well within one replica (measured at a decode cost of 1;
at ``DECODE_TOKEN_WORK`` 2.4 it is 9.6 x 1,126 / 1,766 = 6.1). Until then the unit is the prior, a
plain count: the spec's requests/s were measured at a mix nobody told us.

What one step can teach, from series the controller already reads (served rates per ready
replica x_u, the TTFT percentile matching the attainment target, the queue, KV-cache use):

* **Overloaded** (TTFT certainly above the SLO, or KV cache above ``KV_SATURATED``): the
  replicas were pushing x_u and missing the SLO, so capacity at the SLO is *below* x_u in
  the unit that binds. The binding units are the ones whose load ratio x_u / C_u is within
  ``BLAME_RATIO`` of the highest (the unit that predicted the most load is blamed; a unit
  far from its estimate is not). Each blamed C_u moves fast (weight ``DOWN_WEIGHT``)
  towards ``OVERLOAD_BACKOFF`` x x_u, never up.
* **Ambiguous** (TTFT read above the SLO inside the histogram bucket that contains the SLO,
  ``histogram.verdict``): the SLO may or may not have been missed. Nothing is cut or
  carried, but probes stop at that load (``LearnedCapacity.doubt``).
* **Loaded** (TTFT between ``LOADED_TTFT_FRACTION`` of the SLO and the SLO, or a queue):
  the fleet runs near its SLO capacity, so x_u is a direct measurement for the binding
  units: C_u moves towards x_u / ``LOADED_TTFT_FRACTION``-free, plain EWMA (``WEIGHT``).
* **Slack** (TTFT well below the SLO, no queue, KV below ``KV_SLACK``): capacity is at least
  x_u (the estimate never stays below what a comfortable replica carries) and, if the
  replicas are actually loaded to at least ``PROBE_MIN_LOAD`` of the estimate, the binding
  estimates are probed up by ``PROBE_RATE_PER_MIN`` per minute. Probing is what lets a
  too-low prior (0.5x) recover: with a too-low estimate the policy over-provisions, every
  replica idles, and nothing else would ever show the real capacity.

This is additive-increase / multiplicative-decrease in spirit (TCP's congestion window):
probe up slowly while the SLO holds, back off fast when it breaks. The steady state is
where the fleet's TTFT sits between half the SLO and the SLO at the planned load.

Only a *settled* fleet teaches: every replica asked for is ready (starting replicas make
the served rate per ready replica meaningless) and the last change is older than one rate
window (the 60-s ``rate()`` still mixes in the old fleet). Worked number: 4 ready replicas
serving 6,000 prompt tokens/s with TTFT p99 at 2.6 s against a 2 s SLO give x = 1,500
tokens/s per replica; with the prompt unit blamed and C = 2,000 the estimate moves to
2,000 + 0.3 x (0.9 x 1,500 - 2,000) = 1,805 tokens/s.

Loads remembered across steps (the envelope, a breach, a doubt) are counted at the mix of
the minute they were seen; each step re-expresses them at the recent mix through the work
model (``_bounds_at_mix``): an overload on short prompts is the same work on long ones, not
the same prompt tokens/s.

The decode-to-prefill work ratio (``DECODE_TOKEN_WORK``, the prior) can be learned from
the fleet (``LEARN_DECODE_WORK``, off): each confirmed overload is a knee reading, where a
replica carried its work capacity W in the minute's mix, p + k g = W; six exponentially
forgotten sums of the readings give a least-squares k, its delta-method variance, and a
posterior with the prior (``decode_fit``). Readings at one mix never move it.

Uncertainty: an EWMA of the squared relative residual (y - C) / C of the measurements
(loaded and overloaded steps), reported as a relative standard deviation; before any
measurement it is ``PRIOR_RELATIVE_SD`` (the prior is a guess).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from autoscaler.core.histogram import Verdict, verdict

UNITS: tuple[str, ...] = ("prompt_tokens_per_s", "generation_tokens_per_s", "requests_per_s")
"""The units of work, in the order of ``LearnedCapacity.capacity``."""

DECODE_TOKEN_WORK = 2.4
"""Work of one generated token in prompt-token units: the requests/s unit's work per
request, and how a remembered load is re-expressed at another mix (``_bounds_at_mix``,
``release.at_mix``). The engine's physics, not a trace: a step's time grows by 0.12 ms per
decoding sequence and by 0.05 ms per prompt token for Llama-3-8B on one H100
(``sim/profiles/llama3-8b-h100.yaml``: a prompt token is 2 x 8e9 FLOPs at ~35 % of the
GPU's bf16 rate; a decoding sequence also reads its KV cache and attends over it), so a
generated token costs 0.12 / 0.05 = 2.4 prompt tokens. vLLM's scheduler charges both one
token of the step's budget, but the step's time is not its token count. It depends on the
engine (the 70B profile on 4 H100s: 0.15 / 0.125 = 1.2). Those are marginal costs; at a full
batch of 256 a step's base is shared too, and the simulator's capacity at the SLO follows
p + k g = W with k = (0.12 + 8 / 256) / 0.05 = 3.03 (8B) and (0.15 + 20 / 256) / 0.125 =
1.83 (70B) over mixes from (800, 100) to (400, 400) tokens (``capacity_at_slo``, exact to
1e-15). This constant is the prior of the ratio learned from the fleet's own knee
readings (``decode_fit``, ``LEARN_DECODE_WORK``; ``LearnedCapacity.decode_ratio``).

Why it matters (measured on the merged main, 2026-12-02): at 1 the work model undercounts
a generated token, and a generated-token load remembered at 2,709 + 172 tokens per request
moves to 690 + 172 by (2,709 + 172) / (690 + 172) = 3.34x where the cost of 2.4 gives
3,121.8 / 1,102.8 = 2.83x; releasing on the larger figure (``release.at_mix``) missed the
heavy-to-light scenario on seeds 3 and 5 (97.82 % and 98.18 % after the shift, bar 99 %;
100.00 % at 2.4). With the loads kept in tokens, 2.4 instead of 1 moves the embedded demo
97.61 % / 10.49 GPU-h -> 97.86 % / 10.42 and no other decision-goal row."""
WEIGHT = 0.1
"""EWMA weight of a direct (loaded) measurement: about 10 steps (2.5 min at a 15-s sync)."""
DOWN_WEIGHT = 0.3
"""EWMA weight of an overload measurement: backing off is three times faster than learning
up, because an under-estimate costs GPU-hours while an over-estimate costs the SLO."""
OVERLOAD_BACKOFF = 0.9
"""An overloaded replica pushing x has a capacity at the SLO below x; aim at 0.9 x."""
PROBE_RATE_PER_MIN = 0.05
"""Relative increase of a binding estimate per minute of slack: 0.5x to 1x takes
ln 2 / ln 1.05 = 14.2 minutes of slack at the planned load."""
PROBE_MIN_LOAD = 0.5
"""Probe only if replicas carry at least this fraction of the estimate (otherwise the slack
says nothing about the estimate: min replicas or a quiet hour keeps them idle)."""
PROBE_CEILING = 1.5
"""A probe never takes an estimate above this multiple of the highest load seen meeting the
SLO (the envelope): each probe tests at most 30 % more than what is known to work. It must
exceed 1 / targetUtilization (1 / 0.85 = 1.18), or a fleet planned at 85 % of its estimate
could never test a higher load and a too-low prior would stay too low."""
LOADED_TTFT_FRACTION = 0.5
"""TTFT at or above this fraction of the SLO (and not above the SLO) counts as loaded. The
reading's value decides, wherever the histogram's bucket bounds fall: at a 2-s SLO the
fraction is 1.0 s, a vLLM bucket bound, but a length-aware SLO moves it inside a bucket.
A reading above the SLO that its bucket cannot confirm (``histogram.Verdict.AMBIGUOUS``) is
never slack: it stops probes (``LearnedCapacity.doubt``)."""
KV_SATURATED = 0.95
"""KV-cache use at or above this fraction counts as overloaded (preemptions start)."""
KV_SLACK = 0.7
"""Slack needs KV-cache use below this fraction (WVA's scale-down threshold)."""
BLAME_RATIO = 0.9
"""Units whose load ratio is within this factor of the highest one count as binding."""
PRIOR_RELATIVE_SD = 0.5
"""Reported relative uncertainty before any measurement: the prior is a guess."""
BOUND_FACTOR = 8.0
"""The estimate stays within [prior / 8, prior x 8]: a sanity bound, never a tuning knob."""
MIX_MEMORY_S = 1800.0
"""Time constant of the averaged token mix that scales the prior into token units."""
MIX_PLAN_S = 60.0
"""Time constant of the recent token mix at which requests are planned as work
(``LearnedCapacity.recent_mix``): one rate window, the span each reading already averages
over. It is kept in the state rather than read from the step's own ratio, so that a
decision on lower bounds (a partial request count beside full token counters, which
``decide`` runs with learning frozen) cannot inflate the work of a request: on NASA x20
the step's own ratio started 19 replicas on lower bounds (12.1 starts per day, from 9.7)."""
SETTLE_S = 60.0
"""After a change in replicas, wait one rate window before learning from the fleet."""
BREACH_MEMORY_S = 4 * 3600.0
"""How long the lowest per-replica load seen overloaded caps probing (``LearnedCapacity.breach``)
unless a load past breach / ``OVERLOAD_BACKOFF`` meets the SLO first: four hours, the span the
predictive policy keeps its lead-time errors for. Without it the AIMD cycle (back off on a slip,
probe back up at 5 % a minute past the load that slipped, slip again) repeats every ~10 minutes: on
ServeGen (14 d) that cycle, on the generated-token unit, started 293 of 320 replicas, and on the
3-hour sine of ``tests/test_capacity.py`` it holds the estimate at ~12 req/s (truth 11.45) instead
of letting probes take it to ~16.7 and back."""
OVERLOAD_CONFIRM = 2
"""An overload teaches only from its second consecutive settled reading on. A TTFT p99
read over one rate window is the 99th percentile of a few hundred requests: at 7.5 req/s
a 60-s window holds 450, so one burst of a few seconds makes its 5th-worst request late
while the fleet meets a 99 % target over the hour (Azure conv, 1 replica: one p99 reading
of 2.04 s against 2 s cut the estimate from 10.5 to 9.1 req/s and kept a second replica
for 23 minutes; a 1-replica fleet met the SLO for the whole hour at 0.72 s p99)."""


LEARN_DECODE_WORK = False
"""Whether ``update`` folds confirmed overloads into the decode-to-prefill work ratio
(``decode_fit``, ``LearnedCapacity.decode_ratio``); off, the ratio is the prior
``DECODE_TOKEN_WORK``. Off because it does not pay yet (measured 2026-12-02, shared 2-core
machine): on, every decision-goal row is unchanged to the digit (demo seeds 0-3, Azure conv,
conv x5, code, code x5, both length-aware rows, NASA x20, ServeGen, the 0.5x / 2x priors;
288 CPU s); on the 70B profile's 8-hour mix cycle (``tests/test_decode.py``) seed 1 learns
1.83 +-0.03 (the simulator's 1.83) at 4.4 h and spends 336.18 GPU-h against 333.67 at the
same 98.78 % attainment, and seed 2's 18 overloads never leave one mix (no move). The GPU
busy fraction, the other series that could identify it, reads 0.94-1.00 on every settled
reading of a continuously batching replica (8B and 70B heavy-to-light scenario) and says
nothing; an engine step-rate counter would (``base x steps/s + a p + b g = busy``)."""
DECODE_FROM_LOADED = False
"""Whether loaded readings (TTFT within [0.5, 1] x SLO, or a queue) count as knee readings
beside confirmed overloads. Off: a loaded replica is anywhere between half its knee and its
knee, and the spread along one mix's ray reads as a slope. Measured on the 70B profile (8-h
mix cycle of ``tests/test_decode.py``, seed 1): with them 47 readings pinned the ratio at the
bound 0.60 (truth 1.83); overloads alone, 18 readings, gave 1.83 +-0.03."""
DECODE_PRIOR_SD = 0.5
"""Relative standard deviation of the prior ratio: 2.4 (8B on one H100) and 1.2 (70B on
four) are both within 1 sd of each other's prior, so two profiles' physics are one guess."""
DECODE_BOUND = 4.0
"""The learned ratio stays within [prior / 4, prior x 4]: a sanity bound (a generated token
costing 0.6-9.6 prompt tokens covers every engine profile we know), not a tuning knob."""
DECODE_MEMORY_S = 24 * 3600.0
"""Time constant of the knee readings' sums: the ratio is the engine's physics, which only a
redeploy changes; a day follows a redeploy and keeps the mixes of a daily cycle."""
DECODE_MIN_READINGS = 10.0
"""Knee readings (weighted) before the regression may move the ratio: with 3 parameters'
worth of mix spread, fewer than ~10 give a residual variance of 7 or fewer degrees of freedom."""
DECODE_MIN_SPREAD = 0.01
"""Least 1 - r^2 of the two per-replica token loads over the knee readings: below it the
readings lie on one ray (one mix) and say nothing about the ratio, however many there are.
0.01 is a mix angle spread of about 0.1 rad (~6 degrees) about the mean."""


@dataclass(frozen=True, slots=True)
class FleetObservation:
    """One step's view of the fleet, as the policy reads it. None = not available."""

    ready_replicas: int
    current_replicas: int
    served: tuple[float | None, ...]
    """Served rates in the order of ``UNITS`` (fleet totals)."""
    ttft_s: float | None
    """The TTFT percentile that matches the attainment target (p99 above 95 %)."""
    queue: float | None
    kv_usage: float | None
    """KV-cache use, mean fraction 0..1."""
    ttft_bucket_low_s: float | None = None
    """Lower bound of the histogram bucket ``ttft_s`` was interpolated in (the true
    percentile lies above it); None when unknown (a quantile Prometheus computed)."""


@dataclass(frozen=True, slots=True)
class LearnedCapacity:
    """The estimate per unit, with its evidence. Immutable; ``update`` returns a new one."""

    capacity: tuple[float, ...]
    """Per replica at the SLO, in the order of ``UNITS`` (NaN: not known yet)."""
    prior: tuple[float, ...]
    """Where each estimate started (for the sanity bound)."""
    envelope: tuple[float, ...] = ()
    """Highest per-replica load seen while the SLO held, per unit (empty until then); an
    overload lowers it to what was then carried x ``OVERLOAD_BACKOFF``."""
    rel_var: float = PRIOR_RELATIVE_SD ** 2
    """EWMA of the squared relative residual of measurements."""
    measurements: int = 0
    """Loaded and overloaded steps folded in."""
    probes: int = 0
    """Slack steps that raised an estimate."""
    last_time: float | None = None
    settled_since: float | None = None
    """Time since which the fleet has had every replica ready at the same count."""
    settled_count: int = -1
    over_streak: int = 0
    """Consecutive settled readings that were overloaded or ambiguous (``OVERLOAD_CONFIRM``)."""
    breach: tuple[float, ...] = ()
    """Per unit, the lowest per-replica load seen overloaded within ``BREACH_MEMORY_S``
    (NaN: none); a probe never takes an estimate above it. Forgotten when a load past
    breach / ``OVERLOAD_BACKOFF`` meets the SLO."""
    breach_time: float = -math.inf
    """When ``breach`` was last lowered."""
    doubt: tuple[float, ...] = ()
    """Per unit, the lowest per-replica load seen with an *ambiguous* TTFT reading (above
    the SLO, inside the bucket that contains it: ``histogram.Verdict.AMBIGUOUS``) within
    ``BREACH_MEMORY_S`` of the last one (NaN: none); a probe never takes an estimate above
    it. Forgotten when a load past doubt / ``OVERLOAD_BACKOFF`` meets the SLO."""
    doubt_time: float = -math.inf
    """When the last ambiguous reading was folded in."""
    mix: tuple[float, float] = (math.nan, math.nan)
    """Slowly averaged prompt and generated tokens per request (``MIX_MEMORY_S``)."""
    recent_mix: tuple[float, float] = (math.nan, math.nan)
    """Prompt and generated tokens per request over about the last rate window
    (``MIX_PLAN_S``): the mix requests are planned and learned at."""
    measured: tuple[bool, bool, bool] = (False, False, True)
    """Whether each unit's estimate rests on the fleet's own evidence. A token unit that
    has none yet is the requests/s estimate times the averaged mix, re-derived each step:
    a prior set from one minute's mix would otherwise bind wrongly when the mix drifts."""
    work_ref: float = math.nan
    """Work per request (``work_per_request``) of the mix at which the fleet first taught
    the requests/s estimate (an overload blamed it, a replica carried more, or a probe
    raised it); from then on the estimate counts requests of that mix. NaN: it is still
    the prior, a plain count."""
    bounds_mix: tuple[float, float] = (math.nan, math.nan)
    """The prompt and generated tokens per request (``recent_mix``) at which ``envelope``,
    ``breach`` and ``doubt`` are expressed (``_bounds_at_mix``); NaN: not yet known."""
    work_ref_mix: tuple[float, float] = (math.nan, math.nan)
    """The prompt and generated tokens per request ``work_ref`` was taken at: with a learned
    decode ratio the reference's work is re-counted at the current ratio (``work_factor``)."""
    decode_sums: tuple[float, ...] = ()
    """Exponentially forgotten sums of the knee readings (``DECODE_MEMORY_S``), per replica:
    (n, p, g, pp, pg, gg, t) for loads p prompt tokens/s and g generated tokens/s and the
    time t of the last reading; empty until the first reading (``decode_fit``)."""
    decode_work: float = math.nan
    """Learned work of one generated token in prompt-token units (``decode_fit``); NaN: the
    prior ``DECODE_TOKEN_WORK`` (read at use, so the module constant stays the one knob)."""
    decode_sd: float = math.nan
    """Standard deviation of ``decode_work`` (absolute); NaN: the prior's,
    ``DECODE_PRIOR_SD`` x ``DECODE_TOKEN_WORK``."""

    @property
    def decode_ratio(self) -> float:
        """The work of a generated token this estimate counts in (learned, or the prior)."""
        return self.decode_work if math.isfinite(self.decode_work) else DECODE_TOKEN_WORK

    @property
    def decode_ratio_sd(self) -> float:
        """Standard deviation of ``decode_ratio``."""
        return (self.decode_sd if math.isfinite(self.decode_sd)
                else DECODE_PRIOR_SD * DECODE_TOKEN_WORK)

    @property
    def relative_sd(self) -> float:
        """Relative standard deviation of the estimate (0.1 = +-10 %)."""
        return math.sqrt(max(0.0, self.rel_var))

    def binding(self, load: tuple[float, ...], only_measured: bool = False) -> tuple[int, ...]:
        """Indexes of the units whose load ratio is within ``BLAME_RATIO`` of the highest
        (among the units with evidence, with ``only_measured``)."""
        ratios = [load[i] / c if (math.isfinite(c) and c > 0 and math.isfinite(load[i])
                                  and (self.measured[i] or not only_measured)) else -1.0
                  for i, c in enumerate(self.capacity)]
        top = max(ratios)
        if top <= 0:
            return ()
        return tuple(i for i, r in enumerate(ratios) if r >= BLAME_RATIO * top)


def start(prior_rps: float, tokens_per_request: tuple[float | None, float | None]
          ) -> LearnedCapacity:
    """Seed from the spec's requests/s prior and the token mix seen so far: a replica that
    carries 4 req/s of 1,000-token prompts carries 4,000 prompt tokens/s."""
    p, g = tokens_per_request
    prior = (prior_rps * p if p is not None and p > 0 else math.nan,
             prior_rps * g if g is not None and g > 0 else math.nan,
             prior_rps)
    return LearnedCapacity(capacity=prior, prior=prior)


def work_per_request(tokens_per_request: tuple[float | None, float | None],
                     decode_ratio: float | None = None) -> float:
    """Prompt-token equivalents of one request at this mix (NaN unless both token counts are
    known and positive), a generated token counted as ``decode_ratio`` prompt tokens
    (``LearnedCapacity.decode_ratio``; None: ``DECODE_TOKEN_WORK``). Worked number: 790
    prompt and 140 generated tokens are 790 + 2.4 x 140 = 1,126."""
    p, g = tokens_per_request
    if p is None or g is None or not (p > 0 and g > 0) or not math.isfinite(p + g):
        return math.nan
    return p + (DECODE_TOKEN_WORK if decode_ratio is None else decode_ratio) * g


def work_factor(est: LearnedCapacity,
                tokens_per_request: tuple[float | None, float | None]) -> float:
    """Requests of the learned mix (``LearnedCapacity.work_ref``) that one request at
    ``tokens_per_request`` is worth; 1.0 while the estimate is a plain count or the mix is
    unknown. Worked number: learned at 1,430 + 2.4 x 140 = 1,766, now 790 + 2.4 x 140 =
    1,126: 1,126 / 1,766 = 0.64."""
    k = est.decode_ratio
    now = work_per_request(tokens_per_request, k)
    ref = est.work_ref
    if math.isfinite(ref) and not math.isfinite(est.decode_work):
        pass  # the prior ratio: the reference as it was counted
    elif all(math.isfinite(m) for m in est.work_ref_mix):
        # A learned ratio counts the reference's mix at that ratio too: the estimate is in
        # requests of that mix, whatever a generated token turns out to cost.
        ref = work_per_request(est.work_ref_mix, k)
    if not (math.isfinite(now) and math.isfinite(ref)):
        return 1.0
    return now / ref


def _bounded(value: float, prior: float) -> float:
    if not math.isfinite(prior) or prior <= 0:
        return value
    return min(prior * BOUND_FACTOR, max(prior / BOUND_FACTOR, value))


def _fill_priors(est: LearnedCapacity, prior_rps: float,
                 tokens_per_request: tuple[float | None, float | None], dt: float
                 ) -> LearnedCapacity:
    """Average the mix, and re-derive every token unit that has no evidence of its own
    from the requests/s estimate at that averaged mix: a replica that carries 4 req/s of
    1,000-token prompts carries 4,000 prompt tokens/s."""
    w = min(1.0, dt / MIX_MEMORY_S) if dt > 0 else 0.0
    w_plan = min(1.0, dt / MIX_PLAN_S) if dt > 0 else 0.0
    mix, recent = list(est.mix), list(est.recent_mix)
    for i, tpr in enumerate(tokens_per_request):
        if tpr is not None and tpr > 0 and math.isfinite(tpr):
            mix[i] = tpr if not math.isfinite(mix[i]) else mix[i] + w * (tpr - mix[i])
            recent[i] = (tpr if not math.isfinite(recent[i])
                         else recent[i] + w_plan * (tpr - recent[i]))
    cap, prior = list(est.capacity), list(est.prior)
    # The requests/s estimate as requests of the averaged mix (it counts requests of the
    # learned mix, ``work_factor``).
    c_avg = cap[2] / work_factor(est, (mix[0], mix[1]))
    for i in range(2):
        if not est.measured[i] and math.isfinite(mix[i]):
            cap[i] = c_avg * mix[i]
            prior[i] = prior_rps * mix[i]
    return replace(est, capacity=tuple(cap), prior=tuple(prior), mix=(mix[0], mix[1]),
                   recent_mix=(recent[0], recent[1]))


def _measured(est: LearnedCapacity, units: tuple[int, ...] | range) -> tuple[bool, bool, bool]:
    m = list(est.measured)
    for i in units:
        m[i] = True
    return (m[0], m[1], m[2])


def _work_ref(est: LearnedCapacity, taught: tuple[int, ...]) -> float:
    """``work_ref`` after a step that taught ``taught``: set once, at the first step that
    teaches the requests/s unit, to the recent mix then (whose requests were counted 1:1)."""
    if math.isfinite(est.work_ref) or 2 not in taught:
        return est.work_ref
    return work_per_request(est.recent_mix, est.decode_ratio)


def _work_ref_mix(est: LearnedCapacity, taught: tuple[int, ...]) -> tuple[float, float]:
    """The mix ``_work_ref`` was (or is now) taken at."""
    if math.isfinite(est.work_ref) or 2 not in taught:
        return est.work_ref_mix
    return est.recent_mix


def unit_shares(mix: tuple[float, float], decode_ratio: float | None = None
                ) -> tuple[float, float, float]:
    """Each unit per unit of work (``work_per_request``) at ``mix``: prompt tokens and
    generated tokens per prompt-token equivalent, and 1 for the requests/s unit, whose
    loads already count requests of the learned mix (``work_factor``). NaN for the token
    units while the mix is unknown. Worked number: 680 prompt and 170 generated tokens are
    680 + 2.4 x 170 = 1,088 of work, so 0.625 prompt tokens and 0.156 generated tokens per
    unit of work. ``decode_ratio``: as in ``work_per_request``."""
    w = work_per_request(mix, decode_ratio)
    if not math.isfinite(w):
        return (math.nan, math.nan, 1.0)
    return (mix[0] / w, mix[1] / w, 1.0)


def _bounds_at_mix(est: LearnedCapacity) -> LearnedCapacity:
    """``envelope``, ``breach`` and ``doubt`` re-expressed at the recent mix.

    Each is a per-replica load the fleet was seen carrying (or failing to carry) at the
    mix of its own minute; in a token unit it says nothing directly about another mix. A
    replica's work (prompt tokens + ``DECODE_TOKEN_WORK`` x generated tokens, the count the
    requests/s unit already plans in) is what the learner takes as independent of the mix,
    so a load remembered in tokens moves with the unit's share of the work. Kept as it was
    recorded, a breach at one mix capped probes at another for ``BREACH_MEMORY_S``: in the
    mix-shift scenario of ``tests/test_capacity.py``, a genuine overload at 680-token
    prompts (one replica, 11,288 prompt tokens/s, share 680 / 850 = 0.80) held the prompt
    estimate at 11,288 after the prompts grew to 2,720 tokens (share 2,720 / 2,890 = 0.94),
    4.2 req/s against a truth of 5.5. Re-expressed it is 11,288 x 0.94 / 0.80 = 13,280
    prompt tokens/s, the same work. The estimates themselves are not rescaled: each unit
    is learned separately because the work model is only a model, and its EWMA follows
    the fleet's own readings at the new mix; only the remembered bounds, which outlive many
    mixes, are carried across on the model."""
    now_mix = est.recent_mix
    if not all(math.isfinite(m) for m in now_mix):
        return est  # the mix is unknown: the bounds stay at the mix they were expressed at
    k = est.decode_ratio
    then, to = unit_shares(est.bounds_mix, k), unit_shares(now_mix, k)

    def at_mix(values: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(v * b / a if a > 0 and b > 0 else v  # False for NaN shares: kept
                     for v, a, b in zip(values, then, to, strict=False))

    return replace(est, envelope=at_mix(est.envelope), breach=at_mix(est.breach),
                   doubt=at_mix(est.doubt), bounds_mix=now_mix)


def decode_fit(sums: tuple[float, ...], prior: float) -> tuple[float, float] | None:
    """(ratio, sd) of the decode-to-prefill work ratio from the knee readings' sums
    (``LearnedCapacity.decode_sums``), combined with the prior; None while they say nothing.

    At the knee a replica carries its work capacity W in any mix: p + k g = W for its
    per-replica prompt tokens/s p and generated tokens/s g. Written 1 = alpha p + beta g
    (alpha = 1 / W, beta = k / W), it is a least-squares fit through the origin of the
    response 1 on (p, g), from the 2 x 2 normal equations of the sums: k = beta / alpha,
    its variance by the delta method from the fit's covariance, sigma^2 (S)^-1 with the
    residual variance sigma^2 on n - 2 degrees of freedom. The fit is combined with the
    prior (``DECODE_PRIOR_SD`` x prior) by inverse variances and bounded
    (``DECODE_BOUND``). No evidence, no move: fewer than ``DECODE_MIN_READINGS`` readings,
    one mix (1 - r^2 of p and g below ``DECODE_MIN_SPREAD``), or a fit with a negative
    cost return None. Worked number: knee readings at (10,000, 800) and (4,000, 3,300)
    tokens/s per replica, both W = 11,920 at k = 2.4, give 1 = alpha p + beta g exactly
    with alpha = 1 / 11,920 and beta = 2.4 / 11,920: k = 2.4, sd 0 (no residual), so the
    posterior is 2.4 whatever the prior."""
    if len(sums) != 6 or not math.isfinite(prior) or prior <= 0:
        return None
    n, sp, sg, spp, spg, sgg = sums
    if not n >= DECODE_MIN_READINGS or not (spp > 0 and sgg > 0):
        return None
    det = spp * sgg - spg * spg
    if not det >= DECODE_MIN_SPREAD * spp * sgg:
        return None  # one ray: the mix has not moved
    alpha = (sgg * sp - spg * sg) / det
    beta = (spp * sg - spg * sp) / det
    if not (alpha > 0 and beta > 0):
        return None  # a non-positive cost is no engine's: the readings are not at a knee
    k = beta / alpha
    rss = max(0.0, n - 2.0 * (alpha * sp + beta * sg)
              + alpha * alpha * spp + 2.0 * alpha * beta * spg + beta * beta * sgg)
    s2 = rss / max(1.0, n - 2.0)
    v_aa, v_bb, v_ab = s2 * sgg / det, s2 * spp / det, -s2 * spg / det
    var_k = max(0.0, (v_bb + k * k * v_aa - 2.0 * k * v_ab) / (alpha * alpha))
    var_0 = (DECODE_PRIOR_SD * prior) ** 2
    if var_k <= 0.0:
        post, var = k, 0.0
    else:
        post = (prior / var_0 + k / var_k) / (1.0 / var_0 + 1.0 / var_k)
        var = 1.0 / (1.0 / var_0 + 1.0 / var_k)
    post = min(prior * DECODE_BOUND, max(prior / DECODE_BOUND, post))
    return post, math.sqrt(var)


def _fold_decode(est: LearnedCapacity, load: tuple[float, ...], now: float) -> LearnedCapacity:
    """Fold one knee reading (per-replica loads in ``UNITS`` order) into ``decode_sums`` and
    re-fit ``decode_work`` (``decode_fit``). O(1): six sums, forgotten with
    ``DECODE_MEMORY_S`` since the last reading."""
    p, g = load[0], load[1]
    if not LEARN_DECODE_WORK or not (math.isfinite(p) and math.isfinite(g)
                                     and p > 0 and g > 0):
        return est
    if len(est.decode_sums) == 7:
        *old, t0 = est.decode_sums
        f = math.exp(-max(0.0, now - t0) / DECODE_MEMORY_S)
    else:
        old, f = [0.0] * 6, 0.0
    new = (1.0, p, g, p * p, p * g, g * g)
    sums = tuple(f * a + b for a, b in zip(old, new, strict=True))
    fit = decode_fit(sums, DECODE_TOKEN_WORK)
    k, sd = fit if fit is not None else (math.nan, math.nan)
    return replace(est, decode_sums=(*sums, now), decode_work=k, decode_sd=sd)


def update(est: LearnedCapacity, obs: FleetObservation, *, slo_ttft_s: float, now: float,
           prior_rps: float, tokens_per_request: tuple[float | None, float | None]
           ) -> LearnedCapacity:
    """Fold one step's observation into the estimate. O(1)."""
    dt = 0.0 if est.last_time is None else max(0.0, now - est.last_time)
    est = _fill_priors(est, prior_rps, tokens_per_request, dt)
    est = _bounds_at_mix(est)
    # Served work per *ready* replica: starting replicas serve nothing, so the ready count
    # is what divides; it must have been the same for a whole rate window.
    settled = obs.ready_replicas >= 1
    if not settled or obs.ready_replicas != est.settled_count:
        since = now if settled else None
        return replace(est, last_time=now, settled_since=since, over_streak=0,
                       settled_count=obs.ready_replicas if settled else -1)
    est = replace(est, last_time=now)
    if est.settled_since is None or now - est.settled_since < SETTLE_S or obs.ttft_s is None:
        return est
    r = obs.ready_replicas
    load = tuple(v / r if v is not None and math.isfinite(v) and v >= 0 else math.nan
                 for v in obs.served)
    # Requests served count as requests of the learned mix at the recent mix (their work,
    # ``work_factor``), the mix they are planned at: with the step's own ratio instead, one
    # window's deviation from the recent mix is learned into the unit (Azure code, with a
    # 300-s recent mix: blamed at 2,099 tokens per request while planning at ~2,200, it
    # asked for 6 replicas where 5 served: 6.05 GPU-h, against 5.30 with the recent mix).
    load = (*load[:2], load[2] * work_factor(est, est.recent_mix))
    binding = est.binding(load)
    if not binding:
        return est
    kv = obs.kv_usage
    queue = obs.queue or 0.0
    cap = list(est.capacity)
    env = list(est.envelope) if est.envelope else [math.nan] * len(cap)
    reading = verdict(obs.ttft_s, obs.ttft_bucket_low_s, slo_ttft_s)
    over = reading is Verdict.BREACH or (kv is not None and kv >= KV_SATURATED)
    doubtful = reading is Verdict.AMBIGUOUS and not over
    # A doubtful reading is confirmed like an overload, and counts towards confirming one:
    # one ambiguous reading in the first window of a prompt-mix shift (tests/
    # test_capacity.py, 600 -> 2,400 tokens) capped probes at 9,232 prompt tokens/s per
    # replica for 4 hours against a truth of ~13,250.
    streak = est.over_streak + 1 if over or doubtful else 0
    est = replace(est, over_streak=streak)
    if (over or doubtful) and streak < OVERLOAD_CONFIRM:
        return est  # one reading: a blip, not yet evidence about the estimate
    doubt = list(est.doubt) if (est.doubt and now - est.doubt_time <= BREACH_MEMORY_S) \
        else [math.nan] * len(cap)
    if doubtful:
        # Above the SLO, but inside the bucket that contains it: the true percentile may
        # be on either side (vLLM's (1.0, 2.5] s around a 2-s SLO). Not a breach: the
        # estimate is not cut, the breach memory is left as it is. Not a success either:
        # nothing is carried, nothing forgotten. But it is the load where the SLO became
        # doubtful, and probes stop there (``doubt``): taken as nothing at all, they let
        # probes climb past that load until a certain breach (above 2.5 s) cut the
        # estimate back (on NASA x20, 14 d, 63 such readings were the learner's only
        # overloads).
        for i in binding:
            doubt[i] = load[i] if not doubt[i] <= load[i] else doubt[i]  # NaN-safe min
        return replace(est, doubt=tuple(doubt), doubt_time=now)
    breach = list(est.breach) if (est.breach and now - est.breach_time <= BREACH_MEMORY_S) \
        else [math.nan] * len(cap)
    if over:
        # A confirmed overload is a knee reading: the replicas carried at least their
        # capacity at the SLO, in this mix (``decode_fit``).
        est = _fold_decode(est, load, now)
        sq = 0.0
        for i in binding:
            breach[i] = load[i] if not breach[i] <= load[i] else breach[i]  # NaN-safe min
            y = OVERLOAD_BACKOFF * load[i]
            env[i] = y if not math.isfinite(env[i]) else min(env[i], y)
            if y >= cap[i]:
                continue  # an overload never raises an estimate
            sq = max(sq, ((y - cap[i]) / cap[i]) ** 2)
            cap[i] = _bounded(cap[i] + DOWN_WEIGHT * (y - cap[i]), est.prior[i])
        return replace(est, capacity=tuple(cap), envelope=tuple(env),
                       measurements=est.measurements + 1, measured=_measured(est, binding),
                       work_ref=_work_ref(est, binding),
                       work_ref_mix=_work_ref_mix(est, binding),
                       rel_var=(1 - WEIGHT) * est.rel_var + WEIGHT * sq,
                       breach=tuple(breach), breach_time=now)
    # The SLO held: every unit carried at least this much per replica.
    carried: list[int] = []
    for i in range(len(cap)):
        if math.isfinite(load[i]):
            env[i] = load[i] if not math.isfinite(env[i]) else max(env[i], load[i])
            if math.isfinite(cap[i]) and load[i] > cap[i]:
                cap[i] = _bounded(load[i], est.prior[i])  # a replica carried this in the SLO
                carried.append(i)
            if load[i] >= breach[i] / OVERLOAD_BACKOFF:
                # A clearly higher load met the SLO: the breach is stale. "Clearly": the
                # overload itself aims at 0.9 x what it carried, so only a load beyond
                # breach / 0.9 contradicts it. At or just above the breach the reading is
                # the overload's own tail: a saturated fleet's rate() still shows its peak
                # throughput while the TTFT window has already dropped back under the SLO
                # (on ServeGen, 14 d, all 26 breaches were forgotten at 1.00-1.11x the load
                # that broke the SLO, 12 of them within 1.5 %, and probing went past it
                # again; starts per day 16.9 -> 15.7 with this rule).
                breach[i] = math.nan
            if load[i] >= doubt[i] / OVERLOAD_BACKOFF:
                # The same for a doubt: a load clearly past the doubtful one met the SLO.
                doubt[i] = math.nan
    est = replace(est, measured=_measured(est, tuple(carried)), breach=tuple(breach),
                  work_ref=_work_ref(est, tuple(carried)),
                  work_ref_mix=_work_ref_mix(est, tuple(carried)), doubt=tuple(doubt))
    loaded = obs.ttft_s >= LOADED_TTFT_FRACTION * slo_ttft_s or queue >= r
    if loaded:
        # Near the knee: stop probing. The residual of the binding units is a measurement,
        # and the mix it was carried at one for the decode ratio (``decode_fit``).
        if DECODE_FROM_LOADED:
            est = _fold_decode(est, load, now)
        sq = max(((load[i] - cap[i]) / cap[i]) ** 2 for i in binding)
        # Near the knee but within the SLO: evidence of a lower bound only (handled above),
        # so a unit still derived from the prior stays derived.
        return replace(est, capacity=tuple(cap), envelope=tuple(env),
                       measurements=est.measurements + 1,
                       rel_var=(1 - WEIGHT) * est.rel_var + WEIGHT * min(sq, 1.0))
    # Slack: the untested part of the estimate, (C - envelope) / C, is its uncertainty.
    gap = max(max(0.0, (cap[i] - env[i]) / cap[i]) for i in binding)
    rel_var = (1 - WEIGHT) * est.rel_var + WEIGHT * min(gap * gap, 1.0)
    probed: list[int] = []
    if kv is None or kv < KV_SLACK:
        # Only units with evidence are probed: an unmeasured token unit follows the
        # requests/s estimate at the averaged mix, and a probe would mark it as known.
        for i in est.binding(load, only_measured=True):
            ceiling = env[i] * PROBE_CEILING
            if breach[i] < ceiling:  # False for NaN: no breach remembered
                # Worked number: overloaded at 2,400 tokens/s per replica, backed off to
                # 0.9 x 2,400 = 2,160: probes may test up to 2,400 again, not 1.5 x the
                # envelope (3,240), for an hour or until a higher load meets the SLO.
                ceiling = breach[i]
            if doubt[i] < ceiling:  # False for NaN
                # An ambiguous reading at 2,200 tokens/s per replica: probes stop at 2,200
                # (no back-off: it was not a breach) until a load past 2,200 / 0.9 = 2,444
                # meets the SLO.
                ceiling = doubt[i]
            if load[i] >= PROBE_MIN_LOAD * cap[i] and cap[i] < ceiling:
                grown = cap[i] * (1.0 + PROBE_RATE_PER_MIN) ** (dt / 60.0)
                cap[i] = _bounded(min(grown, ceiling), est.prior[i])
                probed.append(i)
    return replace(est, capacity=tuple(cap), envelope=tuple(env), rel_var=rel_var,
                   probes=est.probes + (1 if probed else 0),
                   measured=_measured(est, tuple(probed)),
                   work_ref=_work_ref(est, tuple(probed)),
                   work_ref_mix=_work_ref_mix(est, tuple(probed)))


def requests_equivalent(est: LearnedCapacity,
                        tokens_per_request: tuple[float | None, float | None]) -> float:
    """One replica's capacity in requests/s at the current mix: the least over units of
    capacity_u / (units per request). Worked number: 12,000 prompt tokens/s at 1,500 tokens
    per request is 8 req/s; 1,200 generated tokens/s at 200 per request is 6 req/s; with a
    requests/s estimate of 7.8 the replica carries min(8, 6, 7.8) = 6 req/s. The requests/s
    estimate counts requests of the learned mix, so at the recent mix it is divided by
    ``work_factor`` (``capacity_at_mix``)."""
    c_r = capacity_at_mix(est, 2)
    best = c_r if math.isfinite(c_r) else math.inf
    for c, tpr, known in zip(est.capacity[:2], tokens_per_request, est.measured[:2],
                             strict=True):
        if known and tpr is not None and tpr > 0 and math.isfinite(c):
            best = min(best, c / tpr)
    return best


def replicas_needed(est: LearnedCapacity, demand: tuple[float | None, ...],
                    utilization: float) -> tuple[int, int]:
    """(replicas, index of the unit that needs the most) for ``demand`` per unit at
    ``utilization`` of the learned capacity; units without demand, estimate or evidence
    are skipped. The requests/s demand is in requests of the learned mix (``work_demand``).
    Worked number: 9,000 prompt tokens/s at 2,000 per replica x 0.85 needs ceil(5.29) = 6."""
    best, which = 0, len(UNITS) - 1
    for i, (dem, c) in enumerate(zip(demand, est.capacity, strict=True)):
        if dem is None or not math.isfinite(dem) or not math.isfinite(c) or c <= 0:
            continue
        if not est.measured[i]:
            # A token unit still derived from the requests/s prior at the averaged mix
            # would bind whenever the minute's mix wanders from the average (the max of two
            # noisy ratios is above either), over-provisioning against plain requests/s.
            # It plans once the fleet has shown something about it.
            continue
        n = 0 if dem <= 0 else max(1, math.ceil(dem / (c * utilization) - 1e-9))
        if n > best:
            best, which = n, i
    return best, which


def work_demand(est: LearnedCapacity, demand: tuple[float | None, float | None, float]
                ) -> tuple[float | None, float | None, float]:
    """``demand`` (prompt tokens/s, generated tokens/s, requests/s) with the requests/s
    counted as requests of the learned mix at the recent mix (``recent_mix``), the unit
    the estimate is learned in. Monotone in each demand: the mix comes from the state.
    Worked number: 9.6 req/s at a work factor of 0.59 plan as 5.7."""
    return (demand[0], demand[1], demand[2] * work_factor(est, est.recent_mix))


def capacity_at_mix(est: LearnedCapacity, unit: int) -> float:
    """One replica's learned capacity in ``UNITS[unit]`` as it reads at the recent mix (the
    requests/s estimate divided by ``work_factor``; the token units as they are)."""
    if unit != 2:
        return est.capacity[unit]
    return est.capacity[2] / work_factor(est, est.recent_mix)
