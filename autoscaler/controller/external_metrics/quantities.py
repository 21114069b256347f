"""Kubernetes ``resource.Quantity`` strings, as prometheus-adapter writes samples."""

from __future__ import annotations

import math

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)

_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T",
                     15: "P", 18: "E"}


def canonical_quantity(mantissa: int, exponent: int = 0) -> str:
    """The canonical string of the DecimalSI ``resource.Quantity`` mantissa x 10^exponent.

    Kubernetes' rule (``Quantity.CanonicalizeBytes`` / ``AsCanonicalBytes``): move every
    factor of ten of the mantissa into the exponent, then lower the exponent to a multiple
    of three (multiplying the mantissa), and write the SI suffix of that exponent; an
    exponent with no suffix (beyond E or below n) is written ``e<exp>``. Examples:
    1500 m -> 15 x 10^2 -> 1500 x 10^0 = "1500" (not "1.5k": no decimal point, ever);
    1500000 m = 1500 -> "1500" too; 2000 m -> 2 x 10^0 = "2"; 1 m -> "1m";
    1.5e12 = 15 x 10^11 -> 1500 x 10^9 = "1500G"; 10^21 -> "1e21"; 0 -> "0".
    """
    if mantissa == 0:
        return "0"
    sign = "-" if mantissa < 0 else ""
    amount = abs(mantissa)
    while amount % 10 == 0:
        amount //= 10
        exponent += 1
    shift = exponent % 3  # Python's modulo is never negative: -4 % 3 == 2
    amount *= 10**shift
    exponent -= shift
    suffix = _DECIMAL_SUFFIXES.get(exponent)
    if suffix is None:
        suffix = f"e{exponent}"
    return f"{sign}{amount}{suffix}"


def milli_units(value: float) -> int | None:
    """``value`` as prometheus-adapter hands it over: int64(value x 1000), truncated toward
    zero (1.1004 -> 1100; 0.0009 -> 0) and clamped to int64. None for NaN and infinities."""
    if not math.isfinite(value):
        return None
    scaled = value * 1000.0
    if scaled >= _INT64_MAX:
        return _INT64_MAX
    if scaled <= _INT64_MIN:
        return _INT64_MIN
    return int(scaled)


def quantity(value: float) -> str | None:
    """A sample as a canonical quantity in milli precision (None: not servable)."""
    milli = milli_units(value)
    return None if milli is None else canonical_quantity(milli, -3)
