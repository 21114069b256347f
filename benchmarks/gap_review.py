"""The evidence behind NASA's short collection gaps: are they gaps or quiet minutes?

    .venv/bin/python benchmarks/gap_review.py [TRACE_DIR]

For the counts trace ``nasa_http_1995/workload.tbz2`` it prints, for the gaps shorter than an
hour that ``autoscaler.traces.gaps`` finds: how many there are, their lengths, how many
come in clusters (another one within 30 minutes), the traffic of the two hours around them
(per-minute hits, minutes touching a gap left out), and the lengths of all silences at the
same traffic level (1-2 req/s around them), so the tail they sit in is visible.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from autoscaler.traces import load_trace


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        Path(__file__).resolve().parents[2] / "shared" / "traces")
    trace = load_trace(root / "nasa_http_1995" / "workload.tbz2")
    assert trace.rates_rps is not None
    x = trace.rates_rps * (trace.resolution_s or 1.0)
    gaps = [(int(a), int(b)) for a, b in trace.gaps]
    short = [g for g in gaps if g[1] - g[0] < 3600]
    lengths = [b - a for a, b in short]
    print(f"{len(gaps)} gaps, {len(short)} shorter than an hour: {min(lengths)}-{max(lengths)} "
          f"s, {sum(lengths) / 3600:.1f} h in all")
    clustered = sum(1 for i, (a, b) in enumerate(short) if any(
        j != i and (abs(a - d) < 1800 or abs(c - b) < 1800) for j, (c, d) in enumerate(short)))
    print(f"in clusters (another short gap within 30 min): {clustered}")
    mask = np.zeros(len(x), dtype=bool)
    for a, b in gaps:
        mask[a:b] = True
    low, mean = [], []
    for a, b in short:
        lo, hi = max(0, a - 3600), min(len(x), b + 3600)
        n = (hi - lo) // 60 * 60
        per_min = x[lo:lo + n].reshape(-1, 60).sum(axis=1)
        touched = mask[lo:lo + n].reshape(-1, 60).any(axis=1)
        low.append(float(per_min[~touched].min()))
        mean.append(float(per_min[~touched].mean()))
    print(f"hits per minute in the 2 h around each: mean {np.median(mean):.0f} (median over "
          f"gaps), quietest minute {np.median(low):.0f} (median), {sum(v <= 5 for v in low)} "
          "of them have a minute with <= 5 hits nearby")
    zero = np.concatenate(([False], x == 0, [False]))
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    s, e = edges[0::2], edges[1::2]
    cs = np.concatenate(([0.0], np.cumsum(x)))

    def rate(a: int, b: int) -> float:
        a, b = max(0, a), min(len(x), b)
        return float(cs[b] - cs[a]) / max(1, b - a)

    ctx = np.asarray([(rate(a - 3600, a) + rate(b, b + 3600)) / 2 for a, b in zip(s, e,
                                                                                   strict=True)])
    bins = [10, 20, 30, 40, 50, 60, 80, 120, 200, 400, 1000, 10**7]
    h, _ = np.histogram((e - s)[(ctx >= 1.0) & (ctx < 2.0)], bins)
    print("silences at 1-2 req/s around them, by length (s): " + ", ".join(
        f"[{bins[i]}, {bins[i + 1] if bins[i + 1] < 10**7 else 'inf'}): {h[i]}"
        for i in range(len(h))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
