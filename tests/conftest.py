"""Fixtures shared by test files (their classes live in tests/support/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.silent import SilentServer


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()
