"""Child processes (Prometheus, etcd, the API server) that die with the test process."""

from __future__ import annotations

import ctypes
import signal

# Loaded here, in the parent: the forked child must not dlopen (other threads may hold the
# loader's locks at fork time, and the child would deadlock).
_LIBC: ctypes.CDLL | None
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: in the child before exec, be killed when the parent dies, even by SIGKILL.

    Otherwise an interrupted run (or a killed benchmark) leaves servers holding ports and CPU.
    SIGKILL, not SIGTERM: etcd dies at the same moment, and an API server shutting down
    gracefully without etcd was seen hanging for good.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
