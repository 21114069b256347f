"""Forecast cost: incremental update (goal < 1 ms) and refit on 14 days of 1-minute data
(goal < 250 ms), per model, on the NASA-HTTP 1995 trace.

    .venv/bin/python benchmarks/forecast_cost.py [--blas-threads N]

BLAS threads default to 1 here: the fits are small (4320-sample windows), and on a 2-core
machine shared with other work OpenBLAS' spinning worker threads made the ``auto`` refit
3x slower (measured 300-400 ms against 110 ms single-threaded). A controller process
should run with ``OPENBLAS_NUM_THREADS=1`` for the same reason.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    _n = sys.argv[sys.argv.index("--blas-threads") + 1] if "--blas-threads" in sys.argv else "1"
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n  # must be set before numpy is imported

import time
from pathlib import Path

import numpy as np

from autoscaler.forecast import MODEL_NAMES, History, make_forecaster
from autoscaler.traces import load_trace


def main() -> None:
    nasa = Path(__file__).resolve().parents[2] / "shared" / "traces" / "nasa_http_1995"
    y = load_trace(nasa / "workload.tbz2").binned_rates(60.0)
    hist = History(0.0, 60.0, y[: 14 * 1440])
    nxt = y[14 * 1440: 14 * 1440 + 2000]
    print(f"{'model':<20}{'refit ms (best of 5)':>22}{'update us (median)':>20}"
          f"{'update+forecast(30) us':>24}  used")
    for name in MODEL_NAMES:
        fc = make_forecaster(name, resolution_s=60.0)
        fits = []
        for _ in range(5):
            t = time.perf_counter()
            res = fc.fit(hist)
            fits.append(time.perf_counter() - t)
        ups, both = [], []
        r = res
        for v in nxt:
            t = time.perf_counter()
            r = r.update(float(v))
            ups.append(time.perf_counter() - t)
            r.forecast(30)
            both.append(time.perf_counter() - t)
        print(f"{name:<20}{min(fits) * 1e3:>22.1f}{np.median(ups) * 1e6:>20.1f}"
              f"{np.median(both) * 1e6:>24.1f}  {res.model}")


if __name__ == "__main__":
    main()
