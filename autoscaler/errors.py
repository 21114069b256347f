"""The project's own error types.

Two families, kept apart because callers treat them differently:

* ``SpecError`` (and ``TraceError``): the *input* is wrong. Retrying will not help; the
  message names what is wrong and where (field path and allowed range, or file and line).
* ``TransientError``: something outside us failed (a server, a network). Retrying later
  may help. The CLI exits 1 for it and 2 for the first family.

Every error chains the original exception (``raise ... from exc``) so nothing is lost.
"""

from __future__ import annotations

import reprlib


class AutoscalerError(Exception):
    """Base of every error this project raises on purpose."""


class SpecError(AutoscalerError, ValueError):
    """An autoscaler spec (or a CLI option feeding one) is invalid.

    ``field`` is the user-facing path (``behavior.scaleUp.policies[0].periodSeconds``),
    ``value`` the offending value and ``allowed`` the allowed range or set, in words.
    ``also`` lists further errors found in the same input (already formatted), so a user
    fixes them in one round. ``problem`` replaces the "value is not allowed; allowed: ..."
    wording where it does not fit (a missing field, broken YAML).
    """

    def __init__(self, field: str, value: object, allowed: str, *, source: str | None = None,
                 also: tuple[str, ...] = (), problem: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        self.also = also
        self.problem = problem
        where = f"{source}: " if source else ""
        more = f"; also: {'; '.join(also)}" if also else ""
        what = problem if problem is not None else (
            f"{short_repr(value)} is not allowed; allowed: {allowed}")
        super().__init__(f"{where}{field}: {what}{more}")


def short_repr(value: object, limit: int = 120) -> str:
    """``repr(value)`` with long strings, deep nesting and long containers cut (reprlib), and
    at most ``limit`` characters: a 10-MB value must not become a 10-MB error line."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


class TraceError(AutoscalerError, ValueError):
    """A trace file is malformed, empty or unsorted. Names the file and, when known, the line."""

    def __init__(self, path: str, message: str, *, line: int | None = None):
        self.path = path
        self.line = line
        self.detail = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class ProfileError(SpecError):
    """A replica profile (YAML) is invalid; ``source`` names the file."""


class TransientError(AutoscalerError):
    """A dependency failed in a way that may pass (timeouts, 5xx, connection refused)."""
