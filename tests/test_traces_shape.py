"""Traffic with its real shape: ServeGen bursts and tokens, collection gaps, honest rate
scaling, windows, trace statistics and size limits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from autoscaler.errors import SpecError, TraceError
from autoscaler.traces import (
    Trace,
    interarrival_cv,
    load_trace,
    parse_duration,
    scale_trace,
    window_trace,
)
from autoscaler.traces.gaps import count_gaps
from autoscaler.traces.servegen import (
    parse_token_distribution,
    renewal_counts_clt,
    renewal_counts_exact,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "traces"
needs_real = pytest.mark.skipif(not REAL.is_dir(),
                                reason="../shared/traces is not beside the clone")

# ---------------------------------------------------------------------------- reference


def _reference_counts(rng: np.random.Generator, rate: float, dist: str, shape: float,
                      seconds: int, burn_in: int = 200) -> np.ndarray:
    """Slow and obviously correct: draw inter-arrival times one batch at a time from the
    distribution rescaled to mean 1/rate, add them up, and count arrivals per second after
    a burn-in (so the process has forgotten its start)."""
    mean_gap = 1.0 / rate
    total = seconds + burn_in
    times: list[float] = []
    t = 0.0
    while t < total:
        gaps = rng.gamma(shape, 1.0, 10_000) if dist == "gamma" else rng.weibull(shape, 10_000)
        gaps = gaps / (shape if dist == "gamma" else math.gamma(1 + 1 / shape)) * mean_gap
        for g in gaps:
            t += float(g)
            if t >= total:
                break
            times.append(t)
    arr = np.asarray(times)
    arr = arr[arr >= burn_in] - burn_in
    return np.bincount(arr.astype(np.int64), minlength=seconds)[:seconds].astype(float)


def _gap_cv(dist: str, shape: float) -> float:
    """CV of the gap distribution, from its moments (Gamma: 1/sqrt(k); Weibull: from
    G(1 + 2/k) / G(1 + 1/k)^2 - 1)."""
    if dist == "gamma":
        return 1.0 / math.sqrt(shape)
    return math.sqrt(math.gamma(1 + 2 / shape) / math.gamma(1 + 1 / shape) ** 2 - 1)


CLT_CASES = [
    # (dist, shape, rate): the renewal CLT's regime, mean residual gap (1 + c^2) / (2 rate)
    # well under 1 s: 5 / 400 = 0.0125 s; Weibull 0.7 has c = 1.46: 3.1 / 200 = 0.016 s;
    # Gamma 4 has c = 0.5 (regular arrivals): 1.25 / 200 = 0.006 s.
    pytest.param("gamma", 0.25, 200.0, id="gamma cv 2 at 200 rps"),
    pytest.param("weibull", 0.7, 100.0, id="weibull shape 0.7 at 100 rps"),
    pytest.param("gamma", 4.0, 100.0, id="gamma cv 0.5 at 100 rps"),
]


@pytest.mark.parametrize(("dist", "shape", "rate"), CLT_CASES)
def test_fast_per_second_counts_match_direct_inter_arrival_sampling(
        dist: str, shape: float, rate: float) -> None:
    seconds = 3000
    ref = _reference_counts(np.random.default_rng(1), rate, dist, shape, seconds)
    c = _gap_cv(dist, shape)
    fast = renewal_counts_clt(np.random.default_rng(2), np.array([rate]),
                              np.array([rate * c * c]), seconds)[0]
    # Means: both estimate `rate`; the reference's mean has sd sqrt(rate c^2 / 3000)
    # (0.52 for the first case), well inside 2%.
    assert fast.mean() == pytest.approx(rate, rel=0.02)
    assert ref.mean() == pytest.approx(rate, rel=0.02)
    # Variances of per-second counts: the sample variance over 3000 s has a relative sd of
    # about sqrt(2 / 3000) = 2.6% (more with heavy tails), so 15% is > 4 sd.
    assert fast.var() == pytest.approx(ref.var(), rel=0.15)
    cv_fast, cv_ref = fast.std() / fast.mean(), ref.std() / ref.mean()
    assert cv_fast == pytest.approx(cv_ref, rel=0.08)
    # And the renewal CLT's value itself: count CV = c / sqrt(rate).
    assert cv_fast == pytest.approx(c / math.sqrt(rate), rel=0.08)


@pytest.mark.parametrize(("dist", "code", "shape"), [
    pytest.param("gamma", 1, 0.5, id="gamma cv 1.41"),
    pytest.param("weibull", 2, 0.6, id="weibull shape 0.6"),
])
def test_exact_windows_start_in_equilibrium_so_the_mean_count_is_rate_times_length(
        dist: str, code: int, shape: float) -> None:
    rng = np.random.default_rng(3)
    rate, windows = 1.0, 300
    totals = np.array([renewal_counts_exact(rng, rate, code, shape, 600).sum()
                       for _ in range(windows)])
    c = _gap_cv(dist, shape)
    # A window's count has variance about 600 c^2 (renewal CLT), so the mean of 300
    # windows has sd sqrt(600 c^2 / 300) = 1.41 c; allow 5 sd around 600.
    assert abs(totals.mean() - 600.0) < 5 * 1.41 * c
    ref = _reference_counts(np.random.default_rng(4), rate, dist, shape, 600 * windows)
    # Same process, so the same per-second dispersion (both ~ c^2 at 1 req/s within 25%).
    per_sec = np.concatenate([renewal_counts_exact(rng, rate, code, shape, 600)
                              for _ in range(windows)]).astype(float)
    assert per_sec.var() / per_sec.mean() == pytest.approx(ref.var() / ref.mean(), rel=0.25)


# ---------------------------------------------------------------------------- ServeGen


def _servegen_folder(root: Path, clients: dict[int, list[str]],
                     datasets: dict[int, dict[str, dict[str, str]]] | None = None) -> Path:
    folder = root / "sg"
    folder.mkdir()
    for cid, rows in clients.items():
        (folder / f"chunk-{cid}-trace.csv").write_text("\n".join(rows) + "\n")
    for cid, doc in (datasets or {}).items():
        (folder / f"chunk-{cid}-dataset.json").write_text(json.dumps(doc))
    return folder


def _rows(rate: float, dist: str, shape: float, windows: int,
          silent: frozenset[int] | set[int] = frozenset()) -> list[str]:
    return [f"{i * 600},0,0,,0,0" if i in silent else
            f"{i * 600},{rate},1.0,{dist},{shape},1.0" for i in range(windows)]


def test_servegen_bursts_keep_the_fitted_cv_and_are_seeded(tmp_path: Path) -> None:
    # 6 hours of one busy client: Gamma shape 0.25 (c = 2) at 100 req/s, CLT path.
    folder = _servegen_folder(tmp_path, {0: _rows(100.0, "Gamma", 0.25, 36)})
    a = load_trace(folder, seed=1)
    b = load_trace(folder, seed=1)
    c = load_trace(folder, seed=2)
    assert a.rates_rps is not None and b.rates_rps is not None and c.rates_rps is not None
    np.testing.assert_array_equal(a.rates_rps, b.rates_rps)
    assert not np.array_equal(a.rates_rps, c.rates_rps)
    # 21,600 s at 100 req/s = 2,160,000 expected; sd sqrt(2.16e6 x 4) = 2,939.
    assert abs(a.request_count - 2_160_000) < 5 * 2_939
    assert interarrival_cv(a) == pytest.approx(2.0, rel=0.05)
    flat = load_trace(folder, bursts=False)
    assert flat.rates_rps is not None and flat.rates_rps.tolist() == [100.0] * 36
    assert math.isnan(interarrival_cv(flat))  # smooth rates carry no count noise


def test_servegen_gaps_are_windows_where_every_client_is_silent(tmp_path: Path) -> None:
    folder = _servegen_folder(tmp_path, {
        0: _rows(5.0, "Gamma", 1.0, 10, silent={3, 4, 7}),
        1: _rows(3.0, "Weibull", 1.0, 10, silent={4, 7, 8}),
    })
    trace = load_trace(folder)
    # Both silent in windows 4 and 7 only.
    assert trace.gaps == ((2400.0, 3000.0), (4200.0, 4800.0))
    assert trace.rates_rps is not None
    assert trace.rates_rps[2400:3000].sum() == 0 and trace.rates_rps[4200:4800].sum() == 0
    mask = trace.gap_mask(600.0)
    assert np.flatnonzero(mask).tolist() == [4, 7]
    missing = trace.binned_rates_missing(600.0)
    assert np.isnan(missing[[4, 7]]).all() and np.isfinite(np.delete(missing, [4, 7])).all()
    assert trace.binned_rates(600.0)[4] == 0.0  # engines still see no traffic there
    # One client alone has no gaps: its silence is real.
    assert load_trace(folder / "chunk-0-trace.csv").gaps == ()


def _dist(d: dict[int, float]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"


def test_token_windows_are_rate_weighted_and_clients_without_data_use_the_pool(
        tmp_path: Path) -> None:
    # 12 h = 72 windows = two 6-h token windows. Client 0 at 3 req/s, client 1 at 1 req/s,
    # client 2 (no dataset file) at 6 req/s.
    folder = _servegen_folder(tmp_path, {
        0: _rows(3.0, "Gamma", 1.0, 72), 1: _rows(1.0, "Gamma", 1.0, 72),
        2: _rows(6.0, "Gamma", 1.0, 72)}, {
        0: {"0": {"input_tokens": _dist({100: 1.0}), "output_tokens": _dist({10: 1.0})},
            "21600": {"input_tokens": "{}", "output_tokens": "{}"}},
        1: {"0": {"input_tokens": _dist({200: 0.5, 400: 0.5}),
                  "output_tokens": _dist({30: 1.0})},
            "21600": {"input_tokens": _dist({50: 1.0}), "output_tokens": _dist({5: 1.0})}},
    })
    trace = load_trace(folder, bursts=False)
    tw = trace.token_windows
    assert tw is not None and tw.resolution_s == 21_600.0
    # Window 0: clients 0 and 1 weigh 3:1; client 2 takes their pooled mean, so it does not
    # move it: prompt (3 x 100 + 1 x 300) / 4 = 150, output (3 x 10 + 1 x 30) / 4 = 15.
    # Window 1: client 0 has no data ("{}"), only client 1 counts: 50 and 5.
    np.testing.assert_allclose(tw.mean_prompt, [150.0, 50.0])
    np.testing.assert_allclose(tw.mean_output, [15.0, 5.0])
    prompt, output = trace.token_means_at(np.array([0.0, 21_599.0, 21_600.0, 1e9]))
    # Past the last window: the pooled means. Pool weights (requests): 3 x 21,600 at 100,
    # 21,600 at 200/400 (300 on average), 21,600 at 50: (300 + 300 + 50) / 5 = 130.
    np.testing.assert_allclose(prompt, [150.0, 150.0, 50.0, 130.0])
    np.testing.assert_allclose(output, [15.0, 15.0, 5.0, (30 + 30 + 5) / 5])
    p, o = trace.token_sample(20_000, seed=3)
    assert set(np.unique(p).tolist()) <= {50, 100, 200, 400}
    assert p.mean() == pytest.approx(130.0, rel=0.03)
    assert set(np.unique(o).tolist()) <= {5, 10, 30}


@pytest.mark.parametrize(("text", "values", "probs"), [
    pytest.param("{18: 0.25, 19: 0.75}", [18, 19], [0.25, 0.75], id="plain"),
    pytest.param("{ 1:2e-1 ,2 : 0.8, }", [1, 2], [0.2, 0.8], id="spaces, exponent, comma"),
    pytest.param("{3: 1, 4: 3}", [3, 4], [0.25, 0.75], id="unnormalised weights"),
    pytest.param("{}", [], [], id="empty is no traffic"),
])
def test_token_distribution_strings_parse_like_a_dict_literal(
        text: str, values: list[int], probs: list[float]) -> None:
    v, p = parse_token_distribution(text, "f.json", "window '0'")
    assert v.tolist() == values
    np.testing.assert_allclose(p, probs)


@pytest.mark.parametrize("body", [
    pytest.param(b"{not json", id="not json"),
    pytest.param(b"[1, 2]", id="not an object"),
    pytest.param(b'{"0": {"input_tokens": "{1: 0.5"}}', id="unclosed literal"),
    pytest.param(b'{"0": {"input_tokens": "{1: 2: 3}", "output_tokens": "{}"}}',
                 id="two colons"),
    pytest.param(b'{"0": {"input_tokens": "{-5: 1}", "output_tokens": "{}"}}',
                 id="negative tokens"),
    pytest.param(b'{"0": {"input_tokens": "{5: 0}", "output_tokens": "{}"}}',
                 id="probabilities sum to zero"),
    pytest.param(b'{"0": {"input_tokens": {"5": 1}, "output_tokens": "{}"}}',
                 id="object instead of string"),
    pytest.param(b'{"x": {"input_tokens": "{}", "output_tokens": "{}"}}', id="bad key"),
    pytest.param(b"\xff\xfe", id="not utf-8"),
])
def test_malformed_dataset_files_are_one_line_trace_errors(tmp_path: Path, body: bytes
                                                            ) -> None:
    folder = _servegen_folder(tmp_path, {0: _rows(1.0, "Gamma", 1.0, 2)})
    (folder / "chunk-0-dataset.json").write_bytes(body)
    with pytest.raises(TraceError) as info:
        load_trace(folder)
    msg = str(info.value)
    assert "chunk-0-dataset.json" in msg and "\n" not in msg and len(msg) < 400


# ---------------------------------------------------------------------------- count gaps


def _poisson_day(rng: np.random.Generator, rate: float, seconds: int) -> np.ndarray:
    return rng.poisson(rate, seconds).astype(float)


def test_a_quiet_night_stays_traffic() -> None:
    rng = np.random.default_rng(5)
    # Busy evening, a night at 0.02 req/s (natural silences of a minute or more are
    # common: P(60 s empty) = e^-1.2 = 30%), busy morning.
    night = _poisson_day(rng, 0.02, 6 * 3600)
    counts = np.concatenate([_poisson_day(rng, 0.5, 3 * 3600), night,
                             _poisson_day(rng, 0.5, 3 * 3600)])
    assert count_gaps(counts) == ()


def test_an_outage_at_a_busy_time_is_a_gap_with_its_exact_bounds() -> None:
    rng = np.random.default_rng(6)
    counts = _poisson_day(rng, 5.0, 4 * 3600)
    counts[5000:5600] = 0.0  # ten silent minutes at 5 req/s: P = e^-3000 under Poisson
    assert count_gaps(counts) == ((5000.0, 5600.0),)


def test_an_outage_followed_by_a_sparse_recovery_is_still_a_gap() -> None:
    rng = np.random.default_rng(7)
    counts = np.concatenate([_poisson_day(rng, 5.0, 7200), np.zeros(20_000),
                             _poisson_day(rng, 0.005, 3600), _poisson_day(rng, 5.0, 7200)])
    gaps = count_gaps(counts)
    # The silence runs on into the sparse recovery until its first arrival.
    first_after = 27_200 + int(np.flatnonzero(counts[27_200:])[0])
    assert gaps[0] == (7200.0, float(first_after))


def test_counts_files_carry_their_gaps_and_a_short_silence_is_not_one(tmp_path: Path
                                                                        ) -> None:
    rng = np.random.default_rng(8)
    counts = rng.poisson(3.0, 3 * 3600)
    counts[3600:3630] = 0  # 30 s: below MIN_RUN_S (60 s), never tested
    counts[7200:8000] = 0
    path = tmp_path / "w.txt"
    path.write_text(" ".join(map(str, counts)))
    trace = load_trace(path)
    assert trace.gaps == ((7200.0, 8000.0),)


# ---------------------------------------------------------------------------- scaling


def _local_dispersion(counts: np.ndarray) -> tuple[float, float]:
    """(mean, variance around each minute's mean) of per-second counts."""
    x = counts[: counts.size // 60 * 60].reshape(-1, 60)
    return float(x.mean()), float(((x - x.mean(axis=1, keepdims=True)) ** 2).mean() * 60 / 59)


def _count_trace(days: int, seed: int = 9) -> Trace:
    rng = np.random.default_rng(seed)
    t = np.arange(days * 86_400)
    rate = 2.0 + 1.5 * np.sin(2 * np.pi * t / 86_400)
    # Over-dispersed counts (variance 3x the mean), like bursty real traffic.
    counts = rng.negative_binomial(rate / 2.0, 1.0 / 3.0).astype(float)
    return Trace(name="c", duration_s=float(t.size), rates_rps=counts, resolution_s=1.0)


@pytest.mark.parametrize("k", [pytest.param(4.0, id="x4"), pytest.param(2.5, id="x2.5")])
def test_superposing_a_count_trace_scales_variance_by_k_not_k_squared(k: float) -> None:
    src = _count_trace(6)
    out = scale_trace(src, rate=k, seed=1)
    assert src.rates_rps is not None and out.rates_rps is not None
    m0, v0 = _local_dispersion(src.rates_rps)
    m1, v1 = _local_dispersion(out.rates_rps)
    assert m1 == pytest.approx(k * m0, rel=0.01)
    # Independent copies add variances: floor(k) x v0 plus the thinned copy's
    # f^2 v0 + f (1 - f) m0. x4: 4 v0 (about 4 x 6 = 24 per second), where multiplying
    # would give 16 v0 (96); x2.5: 2.25 v0 + 0.25 m0.
    whole, f = math.floor(k), k - math.floor(k)
    assert v1 == pytest.approx(whole * v0 + f * f * v0 + f * (1 - f) * m0, rel=0.05)
    assert v1 < 0.5 * k * k * v0
    # The diurnal phase is kept: hourly means of the scaled trace follow k x the source.
    h0 = src.rates_rps.reshape(-1, 3600).mean(axis=1)
    h1 = out.rates_rps.reshape(-1, 3600).mean(axis=1)
    assert np.corrcoef(h0, h1)[0, 1] > 0.99


def test_thinning_a_count_trace_is_binomial() -> None:
    src = _count_trace(2)
    out = scale_trace(src, rate=0.25, seed=2)
    assert src.rates_rps is not None and out.rates_rps is not None
    assert np.all(out.rates_rps <= src.rates_rps) and np.all(out.rates_rps == np.rint(
        out.rates_rps))
    m0, v0 = _local_dispersion(src.rates_rps)
    m1, v1 = _local_dispersion(out.rates_rps)
    # Binomial thinning: mean p m, variance p^2 v + p (1 - p) m.
    assert m1 == pytest.approx(0.25 * m0, rel=0.01)
    assert v1 == pytest.approx(0.0625 * v0 + 0.1875 * m0, rel=0.05)


def test_superposed_copies_put_no_traffic_into_gaps() -> None:
    src = _count_trace(4)
    assert src.rates_rps is not None
    counts = src.rates_rps.copy()
    counts[100_000:110_000] = 0.0
    gapped = Trace(name="g", duration_s=src.duration_s, rates_rps=counts, resolution_s=1.0,
                   gaps=((100_000.0, 110_000.0),))
    out = scale_trace(gapped, rate=3.0, seed=3)
    assert out.rates_rps is not None and out.gaps == gapped.gaps
    assert out.rates_rps[100_000:110_000].sum() == 0
    # Copies whose source day is in the gap read another day: no hole a day later.
    day_later = out.rates_rps[100_000 + 86_400:110_000 + 86_400]
    assert day_later.mean() == pytest.approx(3 * counts[100_000 + 86_400:110_000 + 86_400]
                                             .mean(), rel=0.1)


def test_superposing_a_request_trace_scales_per_second_variance_by_k() -> None:
    rng = np.random.default_rng(10)
    # One hour of clustered arrivals: 2 clusters/s of 5 requests each (variance 5x mean).
    centres = np.sort(rng.uniform(0, 3600, 7200))
    arr = np.sort(np.repeat(centres, 5) + rng.uniform(0, 0.01, 36_000))
    arr = arr[arr < 3600]
    src = Trace(name="r", duration_s=3600.0, arrivals_s=arr,
                prompt_tokens=np.arange(arr.size, dtype=np.int64),
                output_tokens=np.ones(arr.size, dtype=np.int64))
    out = scale_trace(src, rate=4.0, seed=4)
    m0, v0 = _local_dispersion(src.binned_rates(1.0))
    m1, v1 = _local_dispersion(out.binned_rates(1.0))
    assert m1 == pytest.approx(4 * m0, rel=0.01)
    assert v1 == pytest.approx(4 * v0, rel=0.1)  # not 16 x v0
    assert out.prompt_tokens is not None
    assert np.bincount(out.prompt_tokens).tolist() == [4] * arr.size  # tokens kept


@pytest.mark.parametrize(("trace", "rate", "allowed"), [
    pytest.param(_count_trace(3), 4.0, "<= 3", id="more copies than days"),
    pytest.param(Trace(name="s", duration_s=10.0, rates_rps=np.ones(10), resolution_s=1.0),
                 1e6, "<= 1000", id="short count trace x1e6"),
    pytest.param(Trace(name="r", duration_s=10.0, arrivals_s=np.arange(10.0),
                       prompt_tokens=np.ones(10, dtype=np.int64),
                       output_tokens=np.ones(10, dtype=np.int64)),
                 1e8, "<= 2e+07", id="request trace x1e8"),
])
def test_impossible_rate_factors_name_the_option_and_its_range(trace: Trace, rate: float,
                                                                allowed: str) -> None:
    with pytest.raises(SpecError) as info:
        scale_trace(trace, rate=rate)
    assert info.value.field == "rate" and allowed in info.value.allowed


# ---------------------------------------------------------------------------- windows


@pytest.mark.parametrize(("text", "seconds"), [
    pytest.param("90", 90.0, id="bare seconds"),
    pytest.param("90s", 90.0, id="seconds"),
    pytest.param("90m", 5400.0, id="minutes"),
    pytest.param("6h", 21_600.0, id="hours"),
    pytest.param("2d", 172_800.0, id="days"),
    pytest.param("1.5h", 5400.0, id="fractional hours"),
    pytest.param("1w", 604_800.0, id="a week"),
])
def test_durations_parse_with_units(text: str, seconds: float) -> None:
    assert parse_duration("--duration", text, allow_zero=False) == seconds


@pytest.mark.parametrize("text", [
    pytest.param("banana", id="word"), pytest.param("-1h", id="negative"),
    pytest.param("0", id="zero duration"), pytest.param("1e99", id="huge"),
    pytest.param("2 days", id="long unit"), pytest.param("nan", id="nan"),
])
def test_bad_durations_are_spec_errors_naming_the_option(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_duration("--duration", text, allow_zero=False)
    assert info.value.field == "--duration" and "2d" in info.value.allowed


def test_a_window_of_a_request_trace_rebases_times_gaps_and_tokens() -> None:
    src = Trace(name="r", duration_s=100.0, arrivals_s=np.array([1.0, 10.0, 20.0, 55.0]),
                prompt_tokens=np.array([1, 2, 3, 4]), output_tokens=np.array([5, 6, 7, 8]),
                gaps=((30.0, 40.0), (80.0, 90.0)))
    w = window_trace(src, 10.0, 40.0)
    assert w.arrivals_s is not None and w.arrivals_s.tolist() == [0.0, 10.0]
    assert w.prompt_tokens is not None and w.prompt_tokens.tolist() == [2, 3]
    assert w.duration_s == 40.0 and w.gaps == ((20.0, 30.0),)
    assert w.name == "r[10s+40s]"


def test_a_servegen_window_matches_the_same_stretch_of_the_whole_trace(tmp_path: Path
                                                                        ) -> None:
    # Three days, one busy and one quiet client, windows 300-305 silent for both (a gap).
    rows0 = _rows(40.0, "Gamma", 0.3, 432, silent=set(range(300, 306)))
    rows1 = _rows(0.5, "Weibull", 0.6, 432, silent=set(range(300, 306)))
    folder = _servegen_folder(tmp_path, {0: rows0, 1: rows1}, {
        0: {str(i * 21_600): {"input_tokens": _dist({100 + i: 1.0}),
                              "output_tokens": _dist({10: 1.0})} for i in range(12)}})
    whole = load_trace(folder, seed=4)
    start, dur = parse_duration("--start", "1d", allow_zero=True), 36 * 3600.0 + 5400.0
    part = load_trace(folder, seed=4, start_s=start + 5400.0, duration_s=dur)
    assert whole.rates_rps is not None and part.rates_rps is not None
    lo = int(start + 5400)
    np.testing.assert_array_equal(part.rates_rps, whole.rates_rps[lo:lo + int(dur)])
    # Windows 300-305 are 180,000-183,600 s; minus the 91,800-s start: 88,200-91,800,
    # one gap per window.
    assert part.gaps == tuple((88_200.0 + 600 * i, 88_800.0 + 600 * i) for i in range(6))
    t = np.array([0.0, 16_199.0, 16_200.0, 50_000.0])
    np.testing.assert_allclose(part.token_means_at(t)[0],
                               whole.token_means_at(t + start + 5400.0)[0])
    # 91,800 s and 135,000 s are whole minutes, not whole hours: 1530m and 2250m.
    assert part.name == "sg[1530m+2250m]"
    with pytest.raises(SpecError) as info:
        load_trace(folder, start_s=3 * 86_400.0)
    assert info.value.field == "start" and "259200 s" in info.value.allowed


# ---------------------------------------------------------------------------- statistics


def test_interarrival_cv_of_request_traces_is_the_gap_cv() -> None:
    rng = np.random.default_rng(11)
    gaps = rng.gamma(0.25, 4.0, 200_000)  # CV 1/sqrt(0.25) = 2
    arr = np.cumsum(gaps)
    trace = Trace(name="g", duration_s=float(arr[-1]) + 1, arrivals_s=arr,
                  prompt_tokens=np.ones(arr.size, dtype=np.int64),
                  output_tokens=np.ones(arr.size, dtype=np.int64))
    assert interarrival_cv(trace) == pytest.approx(2.0, rel=0.03)


def test_interarrival_cv_of_poisson_counts_is_one_despite_a_diurnal_swing() -> None:
    rng = np.random.default_rng(12)
    t = np.arange(2 * 86_400)
    counts = rng.poisson(20 + 15 * np.sin(2 * np.pi * t / 86_400)).astype(float)
    trace = Trace(name="p", duration_s=float(t.size), rates_rps=counts, resolution_s=1.0)
    # Plain std/mean over the whole trace would read the 4x diurnal swing as burstiness.
    assert interarrival_cv(trace) == pytest.approx(1.0, rel=0.02)


# ---------------------------------------------------------------------------- real data


@needs_real
def test_real_nasa_trace_marks_hurricane_erin_as_a_gap() -> None:
    trace = load_trace(REAL / "nasa_http_1995" / "workload.tbz2")
    longest = max(trace.gaps, key=lambda g: g[1] - g[0])
    # SOURCES.md: Aug 1 14:52:01 to Aug 3 04:36:13 local; August starts at index
    # 2,381,546 (Aug 1 00:00:01), so the outage begins 14:52:00 = 53,520 s later.
    assert longest[0] == pytest.approx(2_381_546 + 53_520, abs=120)
    assert (longest[1] - longest[0]) / 3600 == pytest.approx(37.7, abs=0.1)


@pytest.mark.parametrize(("lulls", "is_gap"), [
    # 1 req/s on average either way. Steady: per-minute counts 60 +- 8 never approach 0, so
    # 75 silent seconds have P = e^-75 (a stalled server or log). With lulls: half the
    # minutes, at random, carry nothing (an on/off source at 2 req/s): per-minute variance
    # 60 + 0.5 x 0.5 x 120^2 = 3,660, s2 = 1.0, shape 1, P(75 s) = 1 / 76: traffic.
    pytest.param(False, True, id="steady 1 req/s: a 75-s silence is a gap"),
    pytest.param(True, False, id="1 req/s with minute-long lulls: it is traffic"),
])
def test_a_short_silence_is_judged_against_the_lulls_of_its_own_traffic(
        lulls: bool, is_gap: bool) -> None:
    rng = np.random.default_rng(9)
    minutes = 4 * 60
    level = (rng.random(minutes) < 0.5) * 2.0 if lulls else np.ones(minutes)
    counts = rng.poisson(np.repeat(level, 60)).astype(float)
    counts[7200:7275] = 0.0
    # Leave the run exactly 75 s long: the seconds next to it carry an arrival.
    counts[7199] = counts[7275] = 1.0
    gaps = count_gaps(counts)
    assert ((7200.0, 7275.0) in gaps) is is_gap
