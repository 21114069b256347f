"""How a benchmark's figures were made, for the line under its table: the command, the
machine's load while it ran and the CPU it spent (the machine is often shared, so wall
times alone mislead)."""

from __future__ import annotations

import os
import resource
import shlex
import sys
from dataclasses import dataclass, field


def cpu_seconds() -> float:
    """User + system CPU of this process and of the children it has waited for (servers it
    started and stopped: Prometheus, a control plane, a controller)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Provenance:
    """Started when the measuring starts; ``note()`` once it is over."""

    module: str
    """The script as a module (``benchmarks.metrics_cycle``)."""
    cpu0: float = field(default_factory=cpu_seconds)
    load0: float = field(default_factory=lambda: os.getloadavg()[0])

    def note(self, extra: str = "") -> str:
        load1 = os.getloadavg()[0]
        args = shlex.join(a for a in sys.argv[1:] if a != "--readme")
        command = f"python -m {self.module}{' ' + args if args else ''}"
        return (f"Produced by `{command}` on a {os.cpu_count()}-core machine at a 1-minute "
                f"load average of {self.load0:.1f} at the start and {load1:.1f} at the end; "
                f"{cpu_seconds() - self.cpu0:,.0f} CPU-s in all{extra}.")
