"""Loopback ports for the servers tests and benchmarks start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the kernel picks it).

    Bound and released: another process could take it before the caller binds, which on a
    test machine's ephemeral range is rare enough; servers that can bind port 0 themselves
    should do that instead.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
