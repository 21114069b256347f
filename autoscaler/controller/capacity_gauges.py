"""The learned capacity on the controller's ``/metrics``: one gauge family per figure, one
series per autoscaler (``namespace``, ``autoscaler``), in requests/s at the current mix.

A policy that learns nothing (every one but predictive) has no series: removed, not set to
0, so a dashboard shows a gap rather than a capacity of zero.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge

from autoscaler.controller.status import learned_capacity

if TYPE_CHECKING:
    from autoscaler.controller.loop import Outcome

NAMES = ("autoscaler_learned_capacity_rps", "autoscaler_learned_capacity_lower_rps",
         "autoscaler_learned_capacity_upper_rps", "autoscaler_learned_capacity_relative_sd")
"""The families, in the order ``CapacityGauges`` registers them."""


class CapacityGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["namespace", "autoscaler"]
        self.value, self.lower, self.upper, self.sd = (
            Gauge(name, help_, labels, registry=registry) for name, help_ in zip(NAMES, (
                "Learned capacity of one replica at the SLO, requests/s at the current mix",
                "Learned capacity, 90 % band lower end, requests/s",
                "Learned capacity, 90 % band upper end, requests/s",
                "Learned capacity, relative standard deviation (0.1 = +-10 %)"), strict=True))

    def observe(self, outcome: Outcome) -> None:
        lab = (outcome.namespace, outcome.name)
        cap = learned_capacity(outcome.decision)
        gauges = (self.value, self.lower, self.upper, self.sd)
        if cap is None:
            for g in gauges:
                with contextlib.suppress(KeyError):  # never set for this autoscaler
                    g.remove(*lab)
            return
        for g, v in zip(gauges, (cap.requests_per_second, cap.lower_rps, cap.upper_rps,
                                 cap.relative_sd), strict=True):
            g.labels(*lab).set(v)
