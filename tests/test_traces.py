"""Trace loading (every format, auto-detection, errors), scaling and expansion."""

from __future__ import annotations

import csv
import gzip
import io
import math
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.errors import SpecError, TraceError
from autoscaler.traces import (
    TokenMix,
    Trace,
    detect_format,
    expand_to_requests,
    load_trace,
    parse_counts,
    scale_trace,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "traces"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason="../shared/traces is not beside the clone"
)

# ---------------------------------------------------------------------------- writers


def _tar(members: dict[str, bytes], mode: Literal["w:bz2", "w:gz"]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


AZURE_SMALL = (
    b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
    b"2023-11-16 18:15:46.6805900,374,44\n"
    b"2023-11-16 18:15:50.9951690,396,109\n"
    b"2023-11-16 18:16:47.0000000,2000,7"  # no final newline, like the real files
)
MOONCAKE_SMALL = (
    b'{"timestamp": 1000, "input_length": 6755, "output_length": 500, "hash_ids": [1, 2]}\n'
    b"\n"
    b'{"timestamp": 2500, "input_length": 10, "output_length": 3}\n'
)
SERVEGEN_0 = b"0,1.5,1.2,Gamma,0.7,0.9\n600,0,0,,0,0\n1200,0.25,1.0,Weibull,1.0,4.0\n"
SERVEGEN_1 = b"0,0.5,1.1,Gamma,0.8,2.5\n600,2.0,1.3,Weibull,0.9,0.5\n1200,0,0,,0,0\n"


# (files to write, path to load, explicit format, expected checker)
LoadCase = tuple[dict[str, bytes], str, str, Callable[[Trace], None]]


def _check_azure(t: Trace) -> None:
    assert t.arrivals_s is not None and t.prompt_tokens is not None
    assert t.output_tokens is not None
    # 18:15:50.9951690 - 18:15:46.6805900 = 4.3145790 s; 18:16:47 - 18:15:46.68059 = 60.31941
    np.testing.assert_allclose(t.arrivals_s, [0.0, 4.314579, 60.31941], atol=1e-9)
    assert t.prompt_tokens.tolist() == [374, 396, 2000]
    assert t.output_tokens.tolist() == [44, 109, 7]
    assert t.duration_s == 61.0  # floor(60.31941) + 1
    assert t.token_mix.mean_prompt_tokens == pytest.approx((374 + 396 + 2000) / 3)


def _check_mooncake(t: Trace) -> None:
    assert t.arrivals_s is not None and t.prompt_tokens is not None
    np.testing.assert_allclose(t.arrivals_s, [0.0, 1.5])  # (2500 - 1000) ms
    assert t.prompt_tokens.tolist() == [6755, 10]
    assert t.output_tokens is not None and t.output_tokens.tolist() == [500, 3]


def _check_counts(t: Trace) -> None:
    assert not t.is_request_level
    assert t.resolution_s == 1.0 and t.duration_s == 5.0
    assert t.rates_rps is not None and t.rates_rps.tolist() == [3.0, 0.0, 2.0, 1.0, 10.0]
    assert t.request_count == 16.0
    assert t.token_mix == TokenMix()


def _check_servegen(t: Trace) -> None:
    # Bursty by default: per-second counts drawn from each window's fitted distribution.
    assert t.resolution_s == 1.0 and t.duration_s == 1800.0
    assert t.rates_rps is not None and t.rates_rps.size == 1800
    assert np.all(t.rates_rps == np.rint(t.rates_rps)) and t.rates_rps.min() >= 0
    # Windows: 1.5 + 0.5, 0 + 2.0, 0.25 + 0 req/s, i.e. 1200, 1200 and 150 expected
    # arrivals; the gap CVs are at most 1.2, so 6 x sqrt(1200) x 1.2 = 249 bounds the noise.
    totals = t.rates_rps.reshape(3, 600).sum(axis=1)
    np.testing.assert_allclose(totals, [1200.0, 1200.0, 150.0], atol=249.0)
    assert t.gaps == ()  # no window is silent for both clients


def _check_generic(t: Trace) -> None:
    assert t.arrivals_s is not None and t.prompt_tokens is not None
    np.testing.assert_allclose(t.arrivals_s, [0.0, 0.25, 0.25, 7.5])
    assert t.prompt_tokens.tolist() == [100, 200, 300, 400]
    assert t.output_tokens is not None and t.output_tokens.tolist() == [1, 2, 3, 4]


def _check_generic_tokenless(t: Trace) -> None:
    assert t.prompt_tokens is not None and t.output_tokens is not None
    assert set(t.prompt_tokens.tolist()) == {1155} and set(t.output_tokens.tolist()) == {211}
    assert t.request_count == 3


COUNTS_TEXT = b"3 0\n2\t1   10\n"
LOAD_CASES = [
    pytest.param({"a.csv": AZURE_SMALL}, "a.csv", "azure", _check_azure, id="azure csv"),
    pytest.param(
        {"m.jsonl": MOONCAKE_SMALL}, "m.jsonl", "mooncake", _check_mooncake, id="mooncake jsonl"
    ),
    pytest.param({"w.txt": COUNTS_TEXT}, "w.txt", "counts", _check_counts, id="counts plain"),
    pytest.param(
        {"w.txt.gz": gzip.compress(COUNTS_TEXT)}, "w.txt.gz", "counts", _check_counts,
        id="counts gzip",
    ),
    pytest.param(
        {"w.tbz2": _tar({"anything.txt": COUNTS_TEXT}, "w:bz2")}, "w.tbz2", "counts",
        _check_counts, id="counts tbz2 single member",
    ),
    pytest.param(
        {"w.tar.gz": _tar({"README": b"hi", "d/workload.txt": COUNTS_TEXT}, "w:gz")},
        "w.tar.gz", "counts", _check_counts, id="counts tar.gz picks workload.txt",
    ),
    pytest.param(
        {"sg/chunk-0-trace.csv": SERVEGEN_0, "sg/chunk-1-trace.csv": SERVEGEN_1,
         "sg/chunk-0-dataset.json": b"{}"},
        "sg", "servegen", _check_servegen, id="servegen folder",
    ),
    pytest.param(
        {"g.csv": b"id,arrival_time,input_length,output_length\n"
                  b"a,10,100,1\n\nb,10.25,200,2\nc,10.25,300,3\nd,17.5,400,4\n"},
        "g.csv", "csv", _check_generic, id="generic csv with tokens and a blank line",
    ),
    pytest.param(
        {"g.csv": b"timestamp,prompt_tokens,output_tokens\n2024-01-01T10:00:00,100,1\n"
                  b"2024-01-01T10:00:00.25,200,2\n2024-01-01 10:00:00.25,300,3\n"
                  b"2024-01-01T10:00:07.5,400,4\n"},
        "g.csv", "csv", _check_generic, id="generic csv with ISO date-times",
    ),
    pytest.param(
        {"g.csv": b"Time\n0\n1\n2\n"}, "g.csv", "csv", _check_generic_tokenless,
        id="generic csv without tokens uses TokenMix defaults",
    ),
]


@pytest.mark.parametrize(("files", "target", "fmt", "check"), LOAD_CASES)
def test_each_format_parses_when_detected_or_named(
    tmp_path: Path, files: dict[str, bytes], target: str, fmt: str,
    check: Callable[[Trace], None],
) -> None:
    _write(tmp_path, files)
    assert detect_format(tmp_path / target) == fmt
    check(load_trace(tmp_path / target))
    check(load_trace(str(tmp_path / target), format=fmt, name="given"))
    assert load_trace(tmp_path / target, name="given").name == "given"


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        pytest.param("x.csv", AZURE_SMALL, "azure", id="azure header"),
        pytest.param("x.log", MOONCAKE_SMALL, "mooncake", id="json object first line"),
        pytest.param("x.txt", b"\n\n1 2 3", "counts", id="numbers after blank lines"),
        pytest.param("x", b"timestamp,foo\n1,2\n", "csv", id="time column without suffix"),
        pytest.param("chunk-7-trace.csv", SERVEGEN_0, "servegen", id="single servegen chunk"),
        pytest.param("x.tar.bz2", _tar({"a": b"1"}, "w:bz2"), "counts", id="tar.bz2 suffix"),
    ],
)
def test_format_detection_picks_the_right_reader(
    tmp_path: Path, filename: str, content: bytes, expected: str
) -> None:
    (tmp_path / filename).write_bytes(content)
    assert detect_format(tmp_path / filename) == expected


# ---------------------------------------------------------------------------- errors

ERROR_CASES = [
    pytest.param(
        "a.csv", AZURE_SMALL.replace(b"396,109", b"abc,109"), None, 3,
        "column ContextTokens: 'abc' is not an integer", id="azure bad integer",
    ),
    pytest.param(
        "a.csv", AZURE_SMALL.replace(b"2000,7", b"2000,-7"), None, 4,
        "column GeneratedTokens: '-7' is negative", id="azure negative tokens",
    ),
    pytest.param(
        "a.csv", AZURE_SMALL.replace(b"18:15:50.9951690", b"18:15:5x.9951690"), None, 3,
        "is not a date-time", id="azure bad timestamp",
    ),
    pytest.param(
        "a.csv", AZURE_SMALL.replace(b"18:16:47", b"18:14:47"), None, 4,
        "not sorted", id="azure unsorted names first out-of-order line",
    ),
    pytest.param(
        "a.csv", AZURE_SMALL.replace(b"396,109", b"396"), None, 3,
        "expected 3 fields, found 2", id="azure missing field",
    ),
    pytest.param(
        "a.csv", b"TIMESTAMP,ContextTokens,GeneratedTokens\n", None, None,
        "no requests", id="azure header only is empty",
    ),
    pytest.param(
        "a.csv", b"TIMESTAMP,Prompt,GeneratedTokens\n2023-11-16 18:15:46,1,1", "azure", 1,
        "expected the header", id="azure wrong header",
    ),
    pytest.param(
        "m.jsonl", MOONCAKE_SMALL.replace(b'"output_length": 3}', b'"output_length": 3'),
        None, 3, "not valid JSON", id="mooncake truncated json on line 3",
    ),
    pytest.param(
        "m.jsonl", b'{"timestamp": 1, "input_length": 2}\n', None, 1,
        "missing key 'output_length'", id="mooncake missing key",
    ),
    pytest.param(
        "m.jsonl", b'{"timestamp": 9, "input_length": 2, "output_length": 1}\n'
        b'{"timestamp": 5, "input_length": 2, "output_length": 1}\n', None, 2,
        "not sorted", id="mooncake unsorted",
    ),
    pytest.param("w.txt", b"1 2 3\n4 -5 6\n", None, 2, "negative count '-5'", id="negative count"),
    pytest.param("w.txt", b"1 2\n\n3 4x 6", None, 3, "'4x' is not", id="count with a letter"),
    pytest.param("w.txt", b"1 2.5", None, 1, "'2.5' is not", id="fractional count"),
    pytest.param("w.txt", b" \n \n", "counts", None, "no counts", id="empty count file"),
    pytest.param(
        "w.txt.gz", b"not gzip at all", None, None, "corrupt compressed", id="corrupt gzip"
    ),
    pytest.param(
        "w.tbz2", _tar({"a.txt": b"1", "b.txt": b"2"}, "w:bz2"), None, None,
        "expected one file or a workload.txt", id="tar with two members",
    ),
    pytest.param(
        "chunk-0-trace.csv", b"0,1,1,Gamma,1,1\n600,-2,1,Gamma,1,1\n", None, 2,
        "column rate: '-2' is not between 0 and 1e+07 req/s", id="servegen negative rate",
    ),
    pytest.param(
        "chunk-0-trace.csv", b"0,1,1,Gamma,1,1\n600,1,1,Gamma\n", None, 2,
        "expected 6 fields, found 4", id="servegen short row",
    ),
    pytest.param(
        "g.csv", b"when,prompt_tokens\n1,2\n", "csv", 1, "no time column", id="csv no time column"
    ),
    pytest.param(
        "g.csv", b"time\n1\n2\nnan\n", None, 4, "'nan' is not finite", id="csv nan time"
    ),
    pytest.param(
        "weird.bin", b"hello world\n", None, 1, "cannot tell the format", id="undetectable format"
    ),
]


@pytest.mark.parametrize(("filename", "content", "fmt", "line", "fragment"), ERROR_CASES)
def test_malformed_input_raises_trace_error_naming_file_and_line(
    tmp_path: Path, filename: str, content: bytes, fmt: str | None, line: int | None,
    fragment: str,
) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(TraceError) as info:
        load_trace(path, format=fmt)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert fragment in str(info.value)
    where = f"{path}:{line}" if line is not None else str(path)
    assert str(info.value).startswith(where)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("missing.csv", id="missing file"),
        pytest.param("missing_folder/", id="missing folder"),
        pytest.param("empty_folder", id="folder without servegen chunks"),
    ],
)
def test_missing_or_empty_paths_raise_trace_error(tmp_path: Path, target: str) -> None:
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(TraceError) as info:
        load_trace(tmp_path / target)
    assert str(tmp_path / target.rstrip("/")) in str(info.value)


def test_unknown_format_name_is_a_trace_error(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(AZURE_SMALL)
    with pytest.raises(TraceError, match="unknown format 'parquet'"):
        load_trace(tmp_path / "a.csv", format="parquet")


# ---------------------------------------------------------------------------- counts oracle


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.integers(0, 10**12), min_size=1, max_size=60),
    seps=st.lists(st.sampled_from([" ", "\n", "\t", "  ", " \r\n", "\n\n"]), min_size=1),
    lead=st.sampled_from(["", " ", "\n"]),
)
def test_vectorised_count_parser_matches_a_slow_split(
    values: list[int], seps: list[str], lead: str
) -> None:
    text = lead + "".join(f"{v}{seps[i % len(seps)]}" for i, v in enumerate(values))
    slow = [int(tok) for tok in text.split()]
    assert parse_counts(text.encode()).tolist() == slow == values


# ---------------------------------------------------------------------------- real files


def _slow_azure_arrivals(path: Path) -> tuple[list[float], list[int]]:
    """Obviously-correct reference: hand-split each timestamp, exact to 100 ns."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]

    def ns(stamp: str) -> int:
        date, clock = stamp.split(" ")
        hh, mm, ss = clock.split(":")
        whole, frac = ss.split(".")
        day = int(date.split("-")[2])
        seconds = ((day * 24 + int(hh)) * 60 + int(mm)) * 60 + int(whole)
        return seconds * 10**9 + int(frac.ljust(9, "0"))

    first = ns(rows[0][0])
    return [(ns(r[0]) - first) / 1e9 for r in rows], [int(r[1]) for r in rows]


@needs_real
@pytest.mark.parametrize(
    ("filename", "rows", "span_min", "prompt_median", "output_median"),
    [
        pytest.param("AzureLLMInferenceTrace_conv.csv", 19_366, 58.4, 1020, 129, id="azure conv"),
        pytest.param("AzureLLMInferenceTrace_code.csv", 8_819, 57.3, 1469, 13, id="azure code"),
    ],
)
def test_real_azure_traces_match_the_documented_figures(
    filename: str, rows: int, span_min: float, prompt_median: int, output_median: int
) -> None:
    path = REAL / filename
    assert detect_format(path) == "azure"
    trace = load_trace(path)
    assert trace.arrivals_s is not None and trace.prompt_tokens is not None
    assert trace.output_tokens is not None
    assert trace.request_count == rows
    assert trace.arrivals_s[-1] / 60 == pytest.approx(span_min, abs=0.05)
    assert np.median(trace.prompt_tokens) == prompt_median
    assert np.median(trace.output_tokens) == output_median
    slow_arrivals, slow_prompt = _slow_azure_arrivals(path)
    np.testing.assert_allclose(trace.arrivals_s, slow_arrivals, rtol=0, atol=1e-6)
    assert trace.prompt_tokens.tolist() == slow_prompt


@needs_real
def test_real_nasa_counts_match_the_documented_figures() -> None:
    path = REAL / "nasa_http_1995" / "workload.tbz2"
    assert detect_format(path) == "counts"
    trace = load_trace(path)
    assert trace.rates_rps is not None
    assert trace.rates_rps.size == 5_059_950 and trace.duration_s == 5_059_950
    assert trace.resolution_s == 1.0
    assert trace.request_count == 3_461_610
    assert trace.rates_rps.max() == 20  # "the max 20" per second in SOURCES.md
    assert trace.name == "nasa_http_1995/workload"


@needs_real
def test_real_servegen_folder_sums_clients_per_window() -> None:
    folder = REAL / "servegen_language_m-small"
    assert detect_format(folder) == "servegen"
    trace = load_trace(folder, bursts=False)
    assert trace.rates_rps is not None
    assert trace.rates_rps.size == 2_016 and trace.resolution_s == 600.0
    assert trace.duration_s == 14 * 86_400
    # Slow reference: add every row's rate into its window with the csv module.
    expected = np.zeros(2_016)
    files = sorted(folder.glob("chunk-*-trace.csv"))
    assert len(files) == 30
    for f in files:
        with f.open(newline="") as fh:
            for row in csv.reader(fh):
                if row[3]:
                    expected[int(row[0]) // 600] += float(row[1])
    np.testing.assert_allclose(trace.rates_rps, expected, rtol=1e-12)
    # SOURCES.md: 37 windows sum to zero (it says "all in days 9-13"; the first is in
    # fact window 1032, i.e. 0-based day 7, so only the count is checked). They are the
    # collection gaps, one per window.
    assert np.count_nonzero(trace.rates_rps == 0) == 37
    assert len(trace.gaps) == 37 and sum(b - a for a, b in trace.gaps) == 37 * 600.0
    assert trace.gaps[0][0] == 1032 * 600.0


# ---------------------------------------------------------------------------- scaling


def _request_trace(arrivals: list[float], duration: float) -> Trace:
    a = np.sort(np.asarray(arrivals, dtype=np.float64))
    n = a.size
    return Trace(
        name="t", duration_s=duration, arrivals_s=a,
        prompt_tokens=np.arange(n, dtype=np.int64) + 1,
        output_tokens=np.arange(n, dtype=np.int64) * 2,
    )


arrival_lists = st.lists(
    st.floats(0, 999, allow_nan=False, allow_infinity=False), min_size=1, max_size=200
)


@settings(max_examples=60, deadline=None)
@given(arrivals=arrival_lists, rate=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_whole_rate_factor_multiplies_request_count_exactly(
    arrivals: list[float], rate: int, seed: int
) -> None:
    src = _request_trace(arrivals, 1000.0)
    out = scale_trace(src, rate=float(rate), seed=seed)
    assert out.arrivals_s is not None and out.prompt_tokens is not None
    assert out.request_count == rate * src.request_count
    assert np.all(np.diff(out.arrivals_s) >= 0)
    assert out.arrivals_s.min() >= 0 and out.arrivals_s.max() <= out.duration_s
    assert out.duration_s == src.duration_s
    # Copies keep their original's tokens: each prompt length appears exactly `rate` times.
    assert sorted(out.prompt_tokens.tolist()) == sorted(
        v for v in (src.prompt_tokens.tolist() if src.prompt_tokens is not None else [])
        for _ in range(rate)
    )


@settings(max_examples=60, deadline=None)
@given(arrivals=arrival_lists, rate=st.floats(0.05, 3.95), seed=st.integers(0, 1000))
def test_fractional_rate_factor_keeps_count_between_floor_and_ceiling(
    arrivals: list[float], rate: float, seed: int
) -> None:
    src = _request_trace(arrivals, 1000.0)
    out = scale_trace(src, rate=rate, seed=seed)
    n = src.request_count
    assert math.floor(rate) * n <= out.request_count <= math.ceil(rate) * n
    assert scale_trace(src, rate=rate, seed=seed).request_count == out.request_count


@pytest.mark.parametrize("rate", [pytest.param(r, id=f"rate x{r}") for r in (0.3, 1.5, 2.7)])
def test_fractional_rate_factor_is_right_on_average(rate: float) -> None:
    n = 20_000
    src = _request_trace(list(np.linspace(0, 999, n)), 1000.0)
    out = scale_trace(src, rate=rate, seed=7)
    frac = rate - math.floor(rate)
    sigma = math.sqrt(n * frac * (1 - frac))  # Binomial(n, frac) extra copies
    assert abs(out.request_count - rate * n) < 5 * sigma


@settings(max_examples=60, deadline=None)
@given(arrivals=arrival_lists, factor=st.floats(0.01, 100))
def test_time_scaling_preserves_count_and_stretches_the_axis(
    arrivals: list[float], factor: float
) -> None:
    src = _request_trace(arrivals, 1000.0)
    out = scale_trace(src, time=factor)
    assert out.arrivals_s is not None and src.arrivals_s is not None
    assert out.request_count == src.request_count
    assert out.duration_s == pytest.approx(1000.0 * factor)
    np.testing.assert_allclose(out.arrivals_s, src.arrivals_s * factor)


@settings(max_examples=60, deadline=None)
@given(
    rates=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=50),
    rate=st.floats(0.01, 100), factor=st.floats(0.01, 100),
)
def test_rate_level_scaling_is_exact(rates: list[float], rate: float, factor: float) -> None:
    src = Trace(name="r", duration_s=len(rates) * 60.0,
                rates_rps=np.asarray(rates, dtype=np.float64), resolution_s=60.0)
    out = scale_trace(src, rate=rate, time=factor)
    assert out.request_count == pytest.approx(src.request_count * rate, rel=1e-9, abs=1e-9)
    assert out.resolution_s == pytest.approx(60.0 * factor)
    assert out.duration_s == pytest.approx(src.duration_s * factor)
    assert out.rates_rps is not None
    np.testing.assert_allclose(out.rates_rps, np.asarray(rates) * rate / factor, atol=1e-9)


@pytest.mark.parametrize(
    ("rate", "factor", "field"),
    [
        pytest.param(0.0, 1.0, "rate", id="zero rate"),
        pytest.param(-1.0, 1.0, "rate", id="negative rate"),
        pytest.param(1.0, float("nan"), "time", id="nan time"),
        pytest.param(1.0, float("inf"), "time", id="infinite time"),
    ],
)
def test_bad_scale_factors_are_spec_errors(rate: float, factor: float, field: str) -> None:
    with pytest.raises(SpecError) as info:
        scale_trace(_request_trace([1.0], 10.0), rate=rate, time=factor)
    assert info.value.field == field


# ---------------------------------------------------------------------------- expansion


def _rate_trace() -> Trace:
    # 1 h at 1-min bins: 2 req/s, a 10-min hole, then 20 req/s; last bin is half a minute.
    rates = np.concatenate([np.full(30, 2.0), np.zeros(10), np.full(20, 20.0), [4.0]])
    return Trace(name="steps", duration_s=60 * 60 + 30, rates_rps=rates, resolution_s=60.0,
                 token_mix=TokenMix(mean_prompt_tokens=800.0, mean_output_tokens=200.0))


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed {s}") for s in (0, 1, 2)])
def test_expanded_request_count_is_within_poisson_error(seed: int) -> None:
    src = _rate_trace()
    expected = 30 * 60 * 2.0 + 20 * 60 * 20.0 + 30 * 4.0  # = 27,720 (half-width last bin)
    out = expand_to_requests(src, seed=seed)
    assert out.arrivals_s is not None
    assert abs(out.request_count - expected) < 5 * math.sqrt(expected)
    assert np.all(np.diff(out.arrivals_s) >= 0)
    assert out.arrivals_s.min() >= 0 and out.arrivals_s.max() < src.duration_s
    # The hole stays empty and each step keeps its own rate.
    assert np.count_nonzero((out.arrivals_s >= 1800) & (out.arrivals_s < 2400)) == 0
    first = np.count_nonzero(out.arrivals_s < 1800)
    assert abs(first - 3600) < 5 * math.sqrt(3600)


def test_expanded_token_lengths_average_the_token_mix() -> None:
    out = expand_to_requests(_rate_trace(), seed=3)
    assert out.prompt_tokens is not None and out.output_tokens is not None
    assert out.prompt_tokens.mean() == pytest.approx(800.0, rel=0.03)
    assert out.output_tokens.mean() == pytest.approx(200.0, rel=0.03)
    assert out.prompt_tokens.min() >= 1 and out.output_tokens.min() >= 1


def test_expansion_is_deterministic_for_a_seed() -> None:
    a, b = expand_to_requests(_rate_trace(), seed=5), expand_to_requests(_rate_trace(), seed=5)
    assert a.arrivals_s is not None and b.arrivals_s is not None
    np.testing.assert_array_equal(a.arrivals_s, b.arrivals_s)
    c = expand_to_requests(_rate_trace(), seed=6)
    assert c.arrivals_s is not None and not np.array_equal(a.arrivals_s, c.arrivals_s)


def test_expansion_over_max_requests_is_a_trace_error_naming_the_trace() -> None:
    with pytest.raises(TraceError) as info:
        expand_to_requests(_rate_trace(), max_requests=10_000)
    assert info.value.path == "steps" and "max_requests=10,000" in str(info.value)


def test_expanding_a_request_level_trace_returns_it_unchanged() -> None:
    src = _request_trace([0.0, 1.0], 2.0)
    assert expand_to_requests(src) is src
