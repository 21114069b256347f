"""The fluid engine loses no request: what arrived is served or still waiting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.sim.fluid_engine import FluidEngine
from autoscaler.sim.profiles import load_profile

PROFILE = load_profile("llama3-8b-h100")


def _engine(rates: list[float], replicas: int) -> FluidEngine:
    engine = FluidEngine(PROFILE, np.asarray(rates), prompt_tokens=1000.0, output_tokens=200.0,
                         slo_ttft_s=2.0, initial_replicas=replicas)
    engine.advance(float(len(rates)))
    return engine


def test_a_burst_after_a_dip_stays_in_the_backlog() -> None:
    """One replica; a long quiet stretch, then a burst above capacity in the same run of
    ticks. The cumulative surplus stays negative (the dip's slack outweighs the burst), yet
    the burst must wait: 20 ticks at 0 then 5 at 3x capacity (surplus -20 mu + 5 x 2 mu =
    -10 mu, still negative) leave 5 x 2 x mu = 10 mu waiting, and 5 mu served."""
    probe = _engine([0.0], 1)
    mu = probe.capacity_rps
    rates = [0.0] * 20 + [3.0 * mu] * 5
    engine = _engine(rates, 1)
    assert engine.backlog() == pytest.approx(10.0 * mu, rel=1e-9)
    assert engine.sample(25.0).first_tokens_total == pytest.approx(5.0 * mu, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=60.0), min_size=13, max_size=200),
       st.integers(min_value=1, max_value=4))
def test_arrivals_equal_served_plus_waiting(rates: list[float], replicas: int) -> None:
    engine = _engine(rates, replicas)
    sample = engine.sample(float(len(rates)))
    assert sample.first_tokens_total + engine.backlog() == pytest.approx(
        sample.requests_total, rel=1e-9, abs=1e-6)
