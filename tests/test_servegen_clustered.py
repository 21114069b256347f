"""Very clustered ServeGen windows keep their real per-second shape.

The renewal CLT draws each second independently with the window's long-run variance
L c^2. When the mean residual gap (1 + c^2) / (2L) is not small against a second, the
exact process has not reached that variance within one second, and the CLT's seconds are
far burstier than the process ServeGen's own generator samples (client 0's window at
339,000 s: Weibull 0.198, c = 16.3, 67.4 req/s). Those windows are sampled exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autoscaler.traces import load_trace
from autoscaler.traces.servegen import _Client, _exact_path, clt_settle_arrivals


def _direct_counts(rng: np.random.Generator, rate: float, shape: float, seconds: int,
                   burn_in: int = 300) -> np.ndarray:
    """Obviously correct: Weibull(shape) gaps rescaled to mean 1/rate, summed into arrival
    times, counted per second after a burn-in."""
    mean_gap = 1.0 / rate
    n = int((seconds + burn_in) * rate * 1.5) + 1000
    gaps = rng.weibull(shape, n) / math.gamma(1 + 1 / shape) * mean_gap
    times = np.cumsum(gaps)
    assert times[-1] > seconds + burn_in
    times = times[(times >= burn_in) & (times < seconds + burn_in)] - burn_in
    return np.bincount(times.astype(np.int64), minlength=seconds)[:seconds].astype(float)


def _one_client(root: Path, rate: float, dist: str, shape: float, windows: int) -> Path:
    folder = root / "sg"
    folder.mkdir()
    rows = [f"{i * 600},{rate},1.0,{dist},{shape},1.0" for i in range(windows)]
    (folder / "chunk-0-trace.csv").write_text("\n".join(rows) + "\n")
    return folder / "chunk-0-trace.csv"


def test_a_clustered_window_has_the_per_second_counts_of_the_process_itself(
        tmp_path: Path) -> None:
    # One day of client 0's burstiest window: Weibull 0.198 at 67.4 req/s.
    rate, shape = 67.4, 0.198
    trace = load_trace(_one_client(tmp_path, rate, "Weibull", shape, 144))
    loaded = trace.binned_rates(1.0)
    ref = _direct_counts(np.random.default_rng(7), rate, shape, 86_400)
    # Both means estimate 67.4 (a day of a c = 16 process: sd of the mean about
    # sqrt(67.4 x 266 / 86,400) = 0.46, so 5 % is > 7 sd).
    assert loaded.mean() == pytest.approx(rate, rel=0.05)
    assert ref.mean() == pytest.approx(rate, rel=0.05)
    # Per-second variance / mean: about 67 for the process (measured 67.3 over 20 windows);
    # the CLT's independent seconds give L c^2 / L = c^2 = 266, four times as much.
    disp_loaded = loaded.var() / loaded.mean()
    disp_ref = ref.var() / ref.mean()
    assert disp_loaded == pytest.approx(disp_ref, rel=0.3)
    assert disp_loaded < 0.5 * 16.3**2
    # The burst tail a fleet must drain: the 99.9th percentile second (312 for the
    # process, 1,072 for the CLT draws).
    q_loaded, q_ref = np.quantile(loaded, 0.999), np.quantile(ref, 0.999)
    assert q_loaded == pytest.approx(q_ref, rel=0.3)


@pytest.mark.parametrize(("dist", "shape", "rate", "exact"), [
    # A second must hold 2 x m3 / c^2 arrivals for the CLT (m3 = E[X^3] / E[X]^3):
    # Gamma(k): m3 / c^2 = (k + 1)(k + 2) / k.
    pytest.param(1, 0.25, 200.0, False, id="gamma c 2 at 200 rps: 2 x 11.25 = 22.5, CLT"),
    pytest.param(1, 0.04, 200.0, False, id="gamma c 5 at 200 rps: 2 x 53.04 = 106, CLT"),
    pytest.param(1, 0.04, 100.0, True, id="gamma c 5 at 100 rps: under 106, exact"),
    # Weibull 0.198: G(1 + 3/k) / G(1 + 1/k)^3 / c^2 = 3,303 (c = 16.4).
    pytest.param(2, 0.198, 67.4, True, id="weibull 0.198 at 67.4 rps: under 6,606, exact"),
    pytest.param(2, 0.198, 1345.0, True, id="weibull 0.198 at 1,345 rps: still exact"),
    pytest.param(2, 0.198, 7000.0, False, id="weibull 0.198 at 7,000 rps: CLT"),
    pytest.param(1, 0.25, 1.5, True, id="any window of at most 1,200 arrivals: exact"),
])
def test_which_windows_are_sampled_arrival_by_arrival(dist: int, shape: float, rate: float,
                                                      exact: bool) -> None:
    c = _Client(cid=0, path=Path("x"), slots=np.array([0, 1]), rates=np.array([rate, 0.0]),
                dist=np.array([dist, 0]), shape=np.array([shape, 1.0]),
                scale=np.array([1.0, 1.0]))
    assert _exact_path(c, 600).tolist() == [exact, False]


@pytest.mark.parametrize(("dist", "shape", "expected"), [
    pytest.param(1, 0.25, 11.25, id="gamma 0.25: 1.25 x 2.25 / 0.25"),
    pytest.param(1, 1.0, 6.0, id="gamma 1 (poisson): 2 x 3 / 1"),
    # Weibull 1 is the exponential: m3 = 3! = 6, c^2 = 1.
    pytest.param(2, 1.0, 6.0, id="weibull 1 (exponential): 6"),
    # Weibull 0.5: E[X^n] / E[X]^n = G(1 + 2n) / G(3)^n: m3 = 720 / 8 = 90,
    # c^2 = 24 / 4 - 1 = 5: 18.
    pytest.param(2, 0.5, 18.0, id="weibull 0.5: 90 / 5"),
])
def test_the_settling_count_is_m3_over_c_squared(dist: int, shape: float,
                                                 expected: float) -> None:
    got = clt_settle_arrivals(np.array([dist]), np.array([shape]))
    assert got[0] == pytest.approx(expected, rel=1e-9)
