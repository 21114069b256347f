"""The fake Prometheus' fast paths against slow, obviously-correct references, over random
fleets, scrape times, query times and faults:

* a query at or after the newest scrape (``_build_memo``: each cohort's window read in one
  pass, the window's values without the general ``_values``) answers what recomputing it
  from the stored samples answers (``cache=False``: ``_windows``, ``_series``,
  ``extrapolated_rate`` over each window's list of samples);
* ``in_outage`` (a bisection on the hidden intervals' union) is the scan
  ``any(lo <= t < hi)`` over the faults as given.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.sim.fluid_engine import FluidEngine
from autoscaler.sim.observe import (
    CounterReset,
    FakePrometheus,
    Fault,
    PodSilent,
    PrometheusRestart,
    ScrapeGap,
)
from autoscaler.sim.profiles import load_profile
from tests.test_sim_observe_cache import raw_equal, same

PROFILE = load_profile()
TICKS = 400

times = st.floats(min_value=0.0, max_value=float(TICKS), allow_nan=False)
faults = st.one_of(
    st.builds(lambda a, d: ScrapeGap(a, a + d), times, st.floats(0.0, 150.0)),
    st.builds(lambda a, d, n: PodSilent(a, a + d, n), times, st.floats(0.0, 150.0),
              st.integers(1, 4)),
    st.builds(PrometheusRestart, times, st.floats(0.0, 60.0)),
    st.builds(CounterReset, times, st.integers(1, 4)),
)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    window=st.sampled_from([20.0, 50.0, 60.0]),
    gaps=st.lists(st.sampled_from([1.0, 2.0, 2.0, 3.5, 15.0, 40.0]), min_size=5,
                  max_size=60),
    fleet=st.lists(st.tuples(times, st.integers(0, 7)), max_size=8),
    injected=st.lists(faults, max_size=4),
    resets=st.lists(st.builds(CounterReset, times, st.integers(1, 4)), max_size=3),
    between=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
)
def test_fast_queries_equal_recomputed_ones(seed: int, window: float, gaps: list[float],
                                            fleet: list[tuple[float, int]],
                                            injected: list[Fault], resets: list[Fault],
                                            between: list[float]) -> None:
    # Counter resets drawn on their own as well: a reset just before a window's start is
    # the edge the one-pass window read must see (``SeriesWindow.lost_until``).
    injected = injected + resets
    rates = np.random.default_rng(seed).gamma(1.5, 8.0, size=TICKS)
    eng = FluidEngine(PROFILE, rates, prompt_tokens=400.0, output_tokens=120.0,
                      slo_ttft_s=2.0, initial_replicas=3)
    fast = FakePrometheus(rate_window_s=window, faults=injected)
    slow = FakePrometheus(rate_window_s=window, faults=injected, cache=False)
    changes = sorted(fleet)
    t = 0.0
    for i, gap in enumerate(gaps):
        nxt = t + gap
        while changes and changes[0][0] < nxt:  # the fleet changes between scrapes
            at, n = changes.pop(0)
            eng.advance(max(t, at))
            eng.set_target(n, max(t, at))
        t = nxt
        eng.advance(t)
        sample = eng.sample(t)
        fast.scrape(sample)
        slow.scrape(sample)
        # At the scrape, and at moments before the next one (the memo's reuse), some long
        # after it (the 5-minute lookback running out).
        later = [t] + [t + f * gaps[(i + 1) % len(gaps)] for f in between] + [t + 320.0]
        for q in later:
            a, b = fast.raw(q), slow.raw(q)
            assert raw_equal(a, b), (q, a, b)
            oa, ob = fast.observe(q), slow.observe(q)
            assert list(oa.readings) == list(ob.readings)
            for ra, rb in zip(oa.readings.values(), ob.readings.values(), strict=True):
                assert (ra.status, ra.observed_at, ra.detail) == (
                    rb.status, rb.observed_at, rb.detail)
                assert same(ra.value, rb.value)
            ready = fast.ready()
            assert fast.snapshot(q, ready, ready) == slow.snapshot(q, ready, ready)


@settings(max_examples=200, deadline=None)
@given(injected=st.lists(faults, max_size=8),
       probes=st.lists(st.floats(-10.0, TICKS + 250.0, allow_nan=False), max_size=30))
def test_in_outage_is_the_scan_over_the_faults(injected: list[Fault],
                                                probes: list[float]) -> None:
    prom = FakePrometheus(faults=injected, outages=[(50.0, 50.0), (120.0, 130.0)])
    hidden = [(f.start, f.end) for f in injected if isinstance(f, ScrapeGap)]
    hidden += [(f.at, f.at + f.down_s) for f in injected if isinstance(f, PrometheusRestart)]
    hidden += [(50.0, 50.0), (120.0, 130.0)]
    # Every interval's own edges too: an end is not hidden, a start is (half-open).
    edges = [x for lo, hi in hidden for x in (lo, hi, math.nextafter(hi, -math.inf))]
    for t in [*probes, *edges]:
        assert prom.in_outage(t) == any(lo <= t < hi for lo, hi in hidden), t


def test_in_outage_worked_cases() -> None:
    # [0, 5) and [5, 9) touch: 5 is hidden (by the second), 9 is not; [3, 4) lies inside.
    prom = FakePrometheus(faults=[ScrapeGap(0.0, 5.0), ScrapeGap(5.0, 9.0),
                                  ScrapeGap(3.0, 4.0), PrometheusRestart(20.0, 30.0)])
    hidden = {t: prom.in_outage(t) for t in (-1.0, 0.0, 4.5, 5.0, 8.999, 9.0, 19.9, 20.0,
                                             49.9, 50.0)}
    assert hidden == {-1.0: False, 0.0: True, 4.5: True, 5.0: True, 8.999: True, 9.0: False,
                      19.9: False, 20.0: True, 49.9: True, 50.0: False}
