"""The project's own error types.

Two families, kept apart because callers treat them differently:

* ``SpecError`` (and ``TraceError``): the *input* is wrong. Retrying will not help; the
  message names what is wrong and where (field path and allowed range, or file and line).
* ``TransientError``: something outside us failed (a server, a network). Retrying later
  may help. The CLI exits 1 for it and 2 for the first family.

Every error chains the original exception (``raise ... from exc``) so nothing is lost.
"""

from __future__ import annotations


class AutoscalerError(Exception):
    """Base of every error this project raises on purpose."""


class SpecError(AutoscalerError, ValueError):
    """An autoscaler spec (or a CLI option feeding one) is invalid.

    ``field`` is the user-facing path (``behavior.scaleUp.policies[0].periodSeconds``),
    ``value`` the offending value and ``allowed`` the allowed range or set, in words.
    """

    def __init__(self, field: str, value: object, allowed: str, *, source: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {value!r} is not allowed; allowed: {allowed}")


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
