"""How the forecast's margin and the capacity's margin combine into one plan.

The predictive plan carries two margins. The forecast's: the ``headroomQuantile`` of the
lead-time peak above its mean (``quantile - base``, req/s or tokens/s), measured from the
lead-time errors once enough are scored. The capacity's: ``targetUtilization`` of a
capacity that is itself defined *at the SLO*, i.e. ``base x (1 / util - 1)`` of headroom.

``STACK`` (the rule until the fifth session; ``NOISE`` is it net of noise) divides the
quantile by the utilisation, so both margins apply in full at once: their product. Worked
number (Azure conv at 1,665 s): mean 7.5, p90 9.07 req/s, util 0.85: 9.07 / 0.85 = 10.67
req/s of capacity planned, one more than the learned 10.65 of one replica, so a second
replica starts.

``QUADRATURE`` treats them as independent errors at the same confidence: the capacity
planned is ``base + sqrt(f^2 + c^2)`` with ``f = quantile - base`` and ``c = base x (1 /
util - 1)``. Same numbers: f = 1.57, c = 1.32, sqrt(1.57^2 + 1.32^2) = 2.05: 9.55 req/s,
one replica. Never below either margin alone, never above the stack.

``UNCERTAIN`` is ``QUADRATURE`` with the capacity's margin the larger of the user's
``targetUtilization`` and what the learned capacity's own ``relative_sd`` needs at the
planning quantile's z: ``c = base x max(1 / util - 1, z x rsd / (1 - z x rsd))`` (with z x
rsd capped below 1). A capacity still being probed past what the fleet showed, or just cut
by an overload, then plans more headroom; a settled one plans the user's.

``NOISE`` is ``STACK`` with the forecast's margin net of the rate window's counting noise:
``base + sqrt(max(0, f^2 - n^2))``. Demand is read as a ``rate()`` over a window of W
seconds, so even a constant Poisson demand of r req/s reads r +- sqrt(r / W), and the
lead-time errors (``LeadErrors``: realised peak of the readings minus promised) measure that
noise as well as the demand's changes. The capacity at the SLO is the mean rate of Poisson
arrivals at which the p99 meets the SLO (``capacity_at_slo`` measures it so, and the learner
reads it from minutes of such arrivals): the noise is inside it already, and the stack
covers it twice. ``n`` (``counting_noise``) is the quantile of the highest reading a
perfect forecast of a constant demand would see over the lead time; it is a lower bound of
the noise the errors hold (it leaves out the forecast's own noise, and in tokens the
spread of lengths), so the margin left is never below the demand's own. A steady plateau
(errors near n) plans near its mean, a bursty trace (f >> n) keeps its margin. Worked
number (the demo at 600 s): mean 5.0, calibrated p90 5.9 req/s, r 4.84, W 60 s, lead
105 s at a 15-s sync: n = 0.4931 (``counting_noise``), f = 0.9: 5.0 + sqrt(0.81 - 0.2431)
= 5.7529, 0.147 req/s less than the stack's 5.9.

Every function returns the demand *as planned at ``util``*, i.e. what
``capacity.replicas_needed`` divides by ``C x util``: that keeps the scale-down band's
arithmetic (``util x scaleDownBand``) and the one call unchanged.
"""

from __future__ import annotations

import math
from statistics import NormalDist

STACK = "stack"
QUADRATURE = "quadrature"
UNCERTAIN = "uncertain"
NOISE = "noise"
RULES = (STACK, QUADRATURE, UNCERTAIN, NOISE)

_MAX_ZRSD = 0.5
"""z x relative sd is capped here: beyond it the capacity's own lower band is half the
estimate (c = base), the ``BOUND`` at which the margin stops growing, not a division by 0."""


def capacity_margin(utilization: float, z: float, relative_sd: float) -> float:
    """Relative headroom the capacity needs: ``max(1 / util - 1, z rsd / (1 - z rsd))``.
    Worked numbers: util 0.85, rsd 0.05, z(0.9) = 1.2816: max(0.1765, 0.0685) = 0.1765;
    rsd 0.2: z rsd = 0.2563, 0.2563 / 0.7437 = 0.3447."""
    u = 1.0 / utilization - 1.0
    zr = min(_MAX_ZRSD, max(0.0, z * relative_sd)) if math.isfinite(relative_sd) else _MAX_ZRSD
    return max(u, zr / (1.0 - zr))


def counting_noise(rate: float, window_s: float, span_s: float, quantile_level: float,
                   per_request: float = 1.0) -> float:
    """The ``quantile_level`` quantile of how far the highest ``rate()`` reading over a
    lead time lies above a constant Poisson demand of ``rate`` req/s, in a unit of
    ``per_request`` per request (1 for requests, tokens per request for tokens).

    One reading over ``window_s`` has sd ``per_request x sqrt(rate / window_s)``. The
    readings of one lead time cover ``span_s`` seconds (lead - sync + window: the first
    reading one sync after the forecast looks one window back), i.e. m = span / window
    independent windows (at least 1), whose highest exceeds the ``q^(1/m)`` quantile of
    one with probability 1 - q. Worked number: 5.5 req/s, 60-s window, lead 105 s at a
    15-s sync: span 150 s, m = 2.5, 0.9^(1/2.5) = 0.95873, z = 1.7362, sd = sqrt(5.5 / 60)
    = 0.30277: 0.5256 req/s. A compound Poisson token rate has variance r x E[L^2] >= r x
    E[L]^2, so ``per_request`` = the mean length is a lower bound."""
    if not (rate > 0.0 and window_s > 0.0 and per_request > 0.0) or not math.isfinite(rate):
        return 0.0
    m = max(1.0, span_s / window_s)
    level = min(max(quantile_level, 0.5), 1.0 - 1e-12) ** (1.0 / m)
    return NormalDist().inv_cdf(level) * per_request * math.sqrt(rate / window_s)


def combined_plan(base: float, quantile: float, utilization: float, rule: str,
                  quantile_level: float = 0.9, relative_sd: float = 0.0,
                  noise: float = 0.0) -> float:
    """The demand planned at ``utilization`` for a point plan ``base`` (max of the mean
    forecast's peak and the observed rate) and a planning quantile ``quantile`` (>= base).

    ``STACK``: ``quantile``. ``QUADRATURE`` / ``UNCERTAIN``: ``util x (base + sqrt(f^2 +
    c^2))``. ``NOISE``: ``base + sqrt(max(0, f^2 - noise^2))`` with ``noise`` from
    ``counting_noise`` (module docstring)."""
    if rule == STACK:
        return quantile  # as it is: the plan before this module existed, to the bit
    if rule == NOISE:
        if not quantile > base or not noise > 0.0:
            return quantile
        b = max(0.0, base)
        f = quantile - b
        return b + math.sqrt(max(0.0, f * f - noise * noise))
    base = max(0.0, base)
    quantile = max(base, quantile)
    z = NormalDist().inv_cdf(quantile_level)
    rsd = relative_sd if rule == UNCERTAIN else 0.0
    c = base * capacity_margin(utilization, z, rsd)
    f = quantile - base
    return utilization * (base + math.hypot(f, c))


def expected_excess(mean: float, sd: float, level: float) -> float:
    """E[(D - level)^+] for D normal(mean, sd): the demand above ``level`` expected over
    the lead time. Worked number: mean 7.5, sd 1.64, level 10.7: z = 1.9512, phi(z) =
    0.059453, 1 - Phi(z) = 0.025515: 1.64 x (0.059453 - 1.9512 x 0.025515) = 0.01585."""
    if not sd > 0.0:
        return max(0.0, mean - level)
    z = (level - mean) / sd
    nd = NormalDist()
    return sd * (math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) - z * (1.0 - nd.cdf(z)))


def worth_stepping(replicas: int, mean: float, quantile: float, noise: float,
                   capacity: float, quantile_level: float, budget: float) -> bool:
    """Is one replica more than ``replicas`` worth its cost, with the late requests it
    spares priced from the SLO's error budget?

    A replica more costs one replica-second per second. It spares at most the demand above
    what ``replicas`` carry within the SLO, E[(D - m C)^+] with D the lead-time peak,
    normal with mean ``mean`` and sd the forecast's margin net of counting noise over the
    planning quantile's z (``NOISE``; the capacity at the SLO already holds that noise),
    and C ``capacity``, one replica's load at the SLO (it already includes the queueing
    that keeps the p99 at the objective). A late request beyond the budget is worth the
    fleet's spend per request over the budget, m / mean / budget replica-seconds (the
    price ``recur`` puts on the misses a cold start adds). So the step pays when
    E[(D - m C)^+] / mean > threshold x budget / m: on one replica the demand above it must
    be 1 % of all (at a 99 % target), on ten 0.1 %. One step doubles a one-replica fleet's
    spend and adds a tenth to ten; the stack of margins (``STACK``/``NOISE``) prices every
    step alike. Worked number (Azure conv at 1,680 s, one replica): mean 8.5, p90 9.6 req/s
    (the stack: 9.6 > 0.85 x 11.0 = 9.35, a second replica), n 0.6457 at 8.3 req/s read:
    f = sqrt(1.1^2 - 0.6457^2) = 0.8905, sd = 0.8905 / 1.2816 = 0.6949, C 11.0:
    E[(D - 11.0)^+] = 2.7e-5 req/s, 3e-6 of the demand against 1 %: one replica."""
    if replicas < 1 or not mean > 0.0 or not capacity > 0.0 or not budget > 0.0:
        return True
    if not (math.isfinite(mean) and math.isfinite(quantile) and math.isfinite(capacity)):
        return True
    f = max(0.0, quantile - mean)
    sd = math.sqrt(max(0.0, f * f - noise * noise)) / NormalDist().inv_cdf(quantile_level)
    share = expected_excess(mean, sd, replicas * capacity) / mean
    return share > budget / replicas



SMOOTH_ONLY = True
"""``predictive.SMALL_FLEET`` prices steps only on smooth arrivals (``smooth_arrivals``):
its pricing takes the capacity at the SLO, measured at Poisson arrivals, to cover the
noise, which a bursty client's within-minute bursts exceed. The span of the readings is
taken as the rate window less one sync period (the replay scrapes at the sync period)."""
DISPERSION_SPAN_S = 1800.0
"""The readings the arrival dispersion is measured over (``arrival_dispersion``): the last
30 minutes, 120 pairs at a 15-s sync, so a single burst in them counts and the cost per
step is bounded whatever ``predictive.history_s`` is."""
MIN_DISPERSION_PAIRS = 20
"""Fewer pairs of readings than this (5 minutes at 15 s) and the dispersion is unknown."""
DISPERSION_LIMIT = 2.0
"""Arrivals count as smooth (``smooth_arrivals``) while their counts vary at most twice as
much as Poisson arrivals' would: the excess over Poisson no larger than the Poisson noise
that the capacity at the SLO was measured with. Measured (medians over each replay, 15-s
readings of a 60-s rate): Poisson arrivals 0.97, Azure conv 1.34, ServeGen client 16 2.7,
client 2 8.4, clients 0 and 3 112 and 69. A test of Poisson itself at the planning
quantile (1 + z sqrt(2 / n), 1.17 on 120 pairs) refutes conv's real arrivals as well."""


def arrival_dispersion(history: tuple[tuple[float, float], ...], window_s: float,
                       span_s: float, over_s: float = DISPERSION_SPAN_S
                       ) -> tuple[float, int]:
    """The index of dispersion of the arrivals behind ``rate()`` readings ((time, req/s),
    oldest first, each over ``window_s``) against Poisson, and the pairs it rests on.

    A ``rate()`` over W seconds of counters scraped every s seconds spans the samples in its
    window, ``span_s`` = W - s, and extrapolates their increase to W: a reading is N / S
    with N the arrivals over the span S. Two readings dt < W apart share all but dt seconds
    at each end, so S (r2 - r1) is the count of the newest dt seconds less that of the dt
    seconds that left: for Poisson arrivals at lambda its variance is 2 lambda dt, with
    lambda ~ (r1 + r2) / 2. So the index is sum S^2 (r2 - r1)^2 / sum dt (r1 + r2) over the
    consecutive pairs of the last ``over_s``: ~1 for Poisson arrivals at any rate, the
    counts' variance over Poisson's for anything else (a slow trend adds only
    (S x slope x dt)^2 per pair). Worked number: 2 req/s, 15-s sync, S 45 s; one burst of
    50 requests within one sync in 30 minutes of otherwise Poisson arrivals adds
    2 x 50^2 = 5,000 (it enters and leaves the span) to 120 pairs x 60 = 7,200 of Poisson
    variance: 1.69. (NaN, n) with fewer than ``MIN_DISPERSION_PAIRS`` pairs or no
    arrivals."""
    if not history or not window_s > 0.0 or not span_s > 0.0:
        return math.nan, 0
    end = history[-1][0]
    num = den = 0.0
    n = 0
    later = history[-1]
    for i in range(len(history) - 2, -1, -1):
        earlier = history[i]
        if earlier[0] < end - over_s:
            break
        dt = later[0] - earlier[0]
        r1, r2 = earlier[1], later[1]
        if 0.0 < dt < window_s and math.isfinite(r1) and math.isfinite(r2):
            d = span_s * (r2 - r1)
            num += d * d
            den += dt * (max(0.0, r1) + max(0.0, r2))
            n += 1
        later = earlier
    if n < MIN_DISPERSION_PAIRS or not den > 0.0:
        return math.nan, n
    return num / den, n


def smooth_arrivals(history: tuple[tuple[float, float], ...], window_s: float,
                    span_s: float, limit: float = DISPERSION_LIMIT) -> bool:
    """Are the arrivals behind the readings smooth enough for a capacity measured at
    Poisson arrivals to cover their noise (``arrival_dispersion`` at most ``limit``)?
    Unknown (too few readings, or none above 0) is not smooth: False."""
    d, _ = arrival_dispersion(history, window_s, span_s)
    return math.isfinite(d) and d <= limit
