"""How the forecast's margin and the capacity's margin combine into one plan.

The predictive plan carries two margins. The forecast's: the ``headroomQuantile`` of the
lead-time peak above its mean (``quantile - base``, req/s or tokens/s), measured from the
lead-time errors once enough are scored. The capacity's: ``targetUtilization`` of a
capacity that is itself defined *at the SLO*, i.e. ``base x (1 / util - 1)`` of headroom.

``STACK`` (the rule until now) divides the quantile by the utilisation, so both margins
apply in full at once: their product. Worked number (Azure conv at 1,665 s): mean 7.5, p90
9.07 req/s, util 0.85: 9.07 / 0.85 = 10.67 req/s of capacity planned, one more than the
learned 10.65 of one replica, so a second replica starts.

``QUADRATURE`` treats them as independent errors at the same confidence: the capacity
planned is ``base + sqrt(f^2 + c^2)`` with ``f = quantile - base`` and ``c = base x (1 /
util - 1)``. Same numbers: f = 1.57, c = 1.32, sqrt(1.57^2 + 1.32^2) = 2.05: 9.55 req/s,
one replica. Never below either margin alone, never above the stack.

``UNCERTAIN`` is ``QUADRATURE`` with the capacity's margin the larger of the user's
``targetUtilization`` and what the learned capacity's own ``relative_sd`` needs at the
planning quantile's z: ``c = base x max(1 / util - 1, z x rsd / (1 - z x rsd))`` (with z x
rsd capped below 1). A capacity still being probed past what the fleet showed, or just cut
by an overload, then plans more headroom; a settled one plans the user's.

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
RULES = (STACK, QUADRATURE, UNCERTAIN)

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


def combined_plan(base: float, quantile: float, utilization: float, rule: str,
                  quantile_level: float = 0.9, relative_sd: float = 0.0) -> float:
    """The demand planned at ``utilization`` for a point plan ``base`` (max of the mean
    forecast's peak and the observed rate) and a planning quantile ``quantile`` (>= base).

    ``STACK``: ``quantile``. ``QUADRATURE`` / ``UNCERTAIN``: ``util x (base + sqrt(f^2 +
    c^2))`` (module docstring)."""
    if rule == STACK:
        return quantile  # as it is: the plan before this module existed, to the bit
    base = max(0.0, base)
    quantile = max(base, quantile)
    z = NormalDist().inv_cdf(quantile_level)
    rsd = relative_sd if rule == UNCERTAIN else 0.0
    c = base * capacity_margin(utilization, z, rsd)
    f = quantile - base
    return utilization * (base + math.hypot(f, c))
