"""The chunked rate history the predictive policy keeps, and the collection-gap rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.forecast.binning import CHUNK, RateBins
from autoscaler.forecast.gaps import collection_gaps


def slow_bins(samples: list[tuple[float, float]], res: float, max_bins: int
              ) -> tuple[float, list[float]]:
    """Group by floor(t / res) with a dict; every bin from the first sample's to the one
    before the last sample's is completed (NaN if empty). Returns (start_s, last max_bins
    completed values). Samples are strictly increasing in time."""
    groups: dict[int, list[float]] = {}
    for t, v in samples:
        groups.setdefault(math.floor(t / res), []).append(v)
    first, open_k = min(groups), max(groups)
    vals = [sum(groups[k]) / len(groups[k]) if k in groups else math.nan
            for k in range(first, open_k)]
    keep = vals[-max_bins:] if max_bins else []
    return (open_k - len(keep)) * res, keep


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 1500),
       max_gap=st.sampled_from([20.0, 90.0, 400.0, 5000.0]), max_bins=st.integers(1, 700))
def test_chunked_bins_equal_a_slow_group_by(seed: int, n: int, max_gap: float,
                                            max_bins: int) -> None:
    # Large inputs (up to ~1000 bins, several chunks) drawn from a seeded generator.
    rng = np.random.default_rng(seed)
    times = 1000.0 + np.cumsum(rng.uniform(0.5, max_gap, n))
    samples = list(zip(times.tolist(), rng.uniform(0, 1e4, n).tolist(), strict=True))
    # Silences longer than max_bins restart the history: only the stretch after the last
    # such silence is comparable with the slow reference.
    k = [math.floor(s / 60.0) for s, _ in samples]
    cut = max((i for i in range(1, len(k)) if k[i] - k[i - 1] - 1 >= max_bins), default=0)
    bins = RateBins(60.0, max_bins)
    for s, v in samples:
        bins, _ = bins.add(s, v)
    start, want = slow_bins(samples[cut:], 60.0, max_bins)
    h = bins.history()
    np.testing.assert_array_equal(h.values, np.array(want, dtype=np.float64))
    if want:
        assert h.start_s == start
    assert all(len(c) == CHUNK for c in bins.chunks) and len(bins.tail) < CHUNK


def test_completed_bins_are_reported_once_with_nan_for_silent_minutes() -> None:
    bins = RateBins(60.0, 100)
    bins, done = bins.add(10.0, 4.0)
    bins, done2 = bins.add(50.0, 6.0)
    assert done == done2 == ()
    bins, done = bins.add(200.0, 1.0)  # bin 3 opens: bin 0 = mean(4, 6), bins 1-2 silent
    assert done[0] == 5.0 and len(done) == 3 and all(math.isnan(v) for v in done[1:])
    assert bins.add(200.0, 9.0) == (bins, ())  # repeated time: ignored


@pytest.mark.parametrize(("values", "nan_at"), [
    # 600 req/s over 600-s bins = 360,000 requests either side: a 2-bin zero run is a gap.
    pytest.param([600.0, 600.0, 0.0, 0.0, 620.0], [2, 3], id="fleet-wide zero between busy bins"),
    # 0.1 req/s x 600 s = 60 expected requests < 100: a true lull, left as zero.
    pytest.param([0.1, 0.0, 0.1], [], id="quiet service zero is real"),
    pytest.param([600.0, 0.0, 0.1], [], id="one quiet neighbour keeps the zero"),
    pytest.param([0.0, 0.0, 600.0], [], id="zeros at the start have no left neighbour"),
    pytest.param([600.0, 0.0, 0.0], [], id="zeros at the end have no right neighbour"),
])
def test_collection_gaps_are_zero_runs_between_busy_bins(values: list[float],
                                                         nan_at: list[int]) -> None:
    y = np.array(values)
    out = collection_gaps(y, resolution_s=600.0)
    assert [i for i in range(len(out)) if math.isnan(out[i])] == nan_at
    assert np.array_equal(y, np.array(values))  # the input is not modified
