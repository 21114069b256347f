"""The embedded synthetic workload: determinism, shape, sizing and token mix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.errors import SpecError
from autoscaler.traces import BURSTS, Trace, default_workload, default_workload_rate

FOUR_HOURS = 4 * 3600.0


@pytest.fixture(scope="module")
def workload() -> Trace:
    return default_workload(0)


def _arrivals(trace: Trace) -> np.ndarray:
    assert trace.arrivals_s is not None
    return trace.arrivals_s


def test_same_seed_gives_the_same_trace() -> None:
    a, b = default_workload(11), default_workload(11)
    np.testing.assert_array_equal(_arrivals(a), _arrivals(b))
    assert a.prompt_tokens is not None and b.prompt_tokens is not None
    np.testing.assert_array_equal(a.prompt_tokens, b.prompt_tokens)
    assert a.output_tokens is not None and b.output_tokens is not None
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)


@pytest.mark.parametrize(("s1", "s2"), [pytest.param(0, 1, id="0 vs 1"),
                                        pytest.param(2, 3, id="2 vs 3")])
def test_different_seeds_give_different_traces(s1: int, s2: int) -> None:
    a, b = _arrivals(default_workload(s1)), _arrivals(default_workload(s2))
    assert a.size != b.size or not np.array_equal(a, b)


def test_workload_is_request_level_sorted_and_inside_the_window(workload: Trace) -> None:
    a = _arrivals(workload)
    assert workload.is_request_level and workload.duration_s == FOUR_HOURS
    assert np.all(np.diff(a) >= 0) and a.min() >= 0 and a.max() < FOUR_HOURS
    assert workload.prompt_tokens is not None and workload.output_tokens is not None
    assert workload.prompt_tokens.size == workload.output_tokens.size == a.size


def test_request_count_is_within_poisson_error_of_the_integrated_rate() -> None:
    # Independent of the thinning code: integrate the rate function on a 0.1-s grid.
    grid = np.linspace(0.0, FOUR_HOURS, 144_001)
    rate = default_workload_rate(grid, FOUR_HOURS)
    expected = float(np.sum((rate[1:] + rate[:-1]) / 2 * np.diff(grid)))
    # Diurnal part: exactly 9 req/s * 14,400 s; bursts add a few thousand on top.
    assert 9.0 * FOUR_HOURS < expected < 9.0 * FOUR_HOURS * 1.1
    for seed in (0, 1, 2):
        n = default_workload(seed).request_count
        assert abs(n - expected) < 5 * math.sqrt(expected)


def test_mean_and_peak_rates_size_a_few_h100_replicas(workload: Trace) -> None:
    mean = workload.request_count / workload.duration_s
    assert 6.0 <= mean <= 12.0
    per_minute = workload.binned_rates(60.0)
    assert 20.0 <= per_minute.max() <= 32.0
    assert per_minute.min() >= 3.0


def test_diurnal_cycle_peaks_mid_window_at_two_to_three_times_the_trough(
    workload: Trace,
) -> None:
    ten_min = workload.binned_rates(600.0)  # 24 bins
    trough = (ten_min[0] + ten_min[-1]) / 2
    peak = (ten_min[11] + ten_min[12]) / 2  # 110-130 min: no burst there
    assert 2.0 <= peak / trough <= 3.0
    # The rate function itself: 5.14 at the ends, 12.86 mid-window (9 * (1 -/+ 3/7)).
    ends = default_workload_rate(np.array([0.0, FOUR_HOURS / 2]), FOUR_HOURS)
    np.testing.assert_allclose(ends, [9 * 4 / 7, 9 * 10 / 7])


@pytest.mark.parametrize("burst", [pytest.param(b, id=f"burst at {b.start_fraction}")
                                   for b in BURSTS])
def test_bursts_rise_sharply_to_two_or_three_times(workload: Trace, burst: object) -> None:
    from autoscaler.traces import Burst

    assert isinstance(burst, Burst)
    t0 = burst.start_fraction * FOUR_HOURS
    before, top = default_workload_rate(np.array([t0 - 1.0, t0 + burst.rise_s]), FOUR_HOURS)
    assert 2.0 <= top / before <= 3.0  # full height 30 s after the rise starts
    assert burst.rise_s <= 30.0
    # In the sampled arrivals: the plateau minute carries 1.8x+ the minute before.
    a = _arrivals(workload)
    pre = np.count_nonzero((a >= t0 - 60) & (a < t0))
    plateau = np.count_nonzero((a >= t0 + 60) & (a < t0 + 120))
    assert plateau >= 1.8 * pre


def test_token_lengths_follow_the_documented_mix(workload: Trace) -> None:
    assert workload.prompt_tokens is not None and workload.output_tokens is not None
    prompt, output = workload.prompt_tokens, workload.output_tokens
    # 92% lognormal median 1000 plus 8% near 6000 lift the overall median a little.
    assert 950 <= np.median(prompt) <= 1200
    assert 120 <= np.median(output) <= 140
    assert prompt.min() >= 16 and prompt.max() <= 16_384
    assert output.min() >= 4 and output.max() <= 2048
    # The long class: P(prompt > 4000) = 0.92 * P(Z > ln 4 / 0.9) + 0.08 * P(Z > ln(2/3)/0.35)
    #                                  = 0.92 * 0.0618 + 0.08 * 0.8765 = 0.127.
    share = float(np.mean(prompt > 4000))
    assert share == pytest.approx(0.127, abs=0.01)
    assert workload.token_mix.mean_prompt_tokens == pytest.approx(float(prompt.mean()))


def test_shorter_duration_keeps_the_shape_within_the_window() -> None:
    short = default_workload(3, duration_s=1800.0)
    a = _arrivals(short)
    assert short.duration_s == 1800.0 and a.max() < 1800.0
    # Burst widths do not shrink with the window, so the mean rises; check against the
    # integrated rate function on the short window (0.1-s trapezoids).
    grid = np.linspace(0.0, 1800.0, 18_001)
    rate = default_workload_rate(grid, 1800.0)
    expected = float(np.sum((rate[1:] + rate[:-1]) / 2 * np.diff(grid)))
    assert abs(a.size - expected) < 5 * math.sqrt(expected)


@pytest.mark.parametrize(
    "duration",
    [pytest.param(0.0, id="zero"), pytest.param(-5.0, id="negative"),
     pytest.param(float("nan"), id="nan")],
)
def test_bad_duration_is_a_spec_error(duration: float) -> None:
    with pytest.raises(SpecError) as info:
        default_workload(0, duration_s=duration)
    assert info.value.field == "duration_s"
