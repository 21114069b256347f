"""One observation path: raw metric readings in, the core's ``Snapshot`` out.

The live collector (``autoscaler.metrics.collect``, reading a real Prometheus) and the
replay's fake Prometheus (``autoscaler.sim.observe``) both hand their raw readings to
``judge``; every rule about data that must not be read as load lives here, once:

* missing series, NaN values, stale samples;
* partial pods (fewer pods report than are ready: a sum undercounts);
* a rate window that the series do not cover yet (after a scrape gap, a Prometheus
  restart or a pod that reappears): ``not_yet_valid``, never low load;
* counter resets, which are not a drop in load, and leave the window uncovered from the
  last scrape before the reset until the sample after it.

A partial sum and a summed rate over an uncovered window are left out of
``Snapshot.metrics`` but kept in ``Snapshot.lower_bounds``: they cannot be above the load,
so the core may scale *up* on them (``autoscaler.core.decide``), and nothing else.

Pure like the core: no I/O, no clock, no client libraries (an import-linter contract).
"""

from autoscaler.observation.judge import (
    SUMMED_SIGNALS,
    WINDOWED_SIGNALS,
    Observation,
    SignalReading,
    Status,
    judge,
    window_coverage,
)
from autoscaler.observation.readings import RawTarget, SeriesWindow, WindowSeries

__all__ = [
    "SUMMED_SIGNALS",
    "WINDOWED_SIGNALS",
    "Observation",
    "RawTarget",
    "SeriesWindow",
    "SignalReading",
    "Status",
    "WindowSeries",
    "judge",
    "window_coverage",
]
