"""The one condition wait for tests and benchmarks: poll until true, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 60.0
"""Generous on purpose: the tier runs on a shared 2-core machine (load 10-25 was seen), and
a longer timeout only lengthens a failure, never a pass. Callers that wait on something
slower (several controller cycles, a cold start) pass their own."""


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = 0.25,
) -> T:
    """Call ``probe`` until it returns a truthy value (an object, a non-empty list, True).

    Returns that value; on timeout, raises AssertionError naming ``what`` and the last value
    the probe returned (what was seen instead is most of a diagnosis).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:g} s waiting for {what}; last: {value!r}")
        time.sleep(interval_s)
