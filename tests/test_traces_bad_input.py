"""Bad trace input ends in one bounded line naming the file (exit 2 in the CLI), never a
traceback, a MemoryError or a hang; and the up-front size estimate."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.errors import TraceError
from autoscaler.traces import FORMATS, Trace, load_trace

MAX_MESSAGE = 400
"""Every trace error fits in one line of at most this many characters."""

# Names that route the bytes to each reader (and to auto-detection).
TARGETS = [
    ("trace.csv", None), ("trace.csv", "azure"), ("trace.csv", "csv"),
    ("trace.jsonl", "mooncake"), ("trace.txt", "counts"), ("trace.txt.gz", "counts"),
    ("chunk-0-trace.csv", "servegen"), ("weird.bin", None),
]

# Bytes that look like the real formats, then get mangled: random bytes alone rarely get
# past the first check.
SEEDS = [
    b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n",
    b'{"timestamp": 1000, "input_length": 5, "output_length": 3}\n',
    b"3 0 2 1 10\n",
    b"0,1.5,1.2,Gamma,0.7,0.9\n600,0,0,,0,0\n",
    b"timestamp,prompt_tokens\n0,5\n1.5,7\n",
]


def _check(path: Path, fmt: str | None) -> None:
    try:
        load_trace(path, format=fmt)
    except TraceError as exc:
        msg = str(exc)
        assert str(path) in msg, msg
        assert "\n" not in msg and len(msg) <= MAX_MESSAGE, msg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400), target=st.sampled_from(TARGETS))
def test_any_bytes_load_or_raise_one_bounded_line_naming_the_file(
        data: bytes, target: tuple[str, str | None]) -> None:
    name, fmt = target
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        _check(path, fmt)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), cut=st.integers(0, 120),
       insert=st.binary(min_size=0, max_size=12), fmt=st.sampled_from([None, *FORMATS]))
def test_mangled_real_looking_files_load_or_raise_one_bounded_line(
        seed: bytes, cut: int, insert: bytes, fmt: str | None) -> None:
    data = seed[:cut] + insert + seed[cut:]
    with tempfile.TemporaryDirectory() as tmp:
        name = "chunk-0-trace.csv" if fmt == "servegen" else "trace.csv"
        path = Path(tmp) / name
        path.write_bytes(data)
        _check(path, fmt)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.text(max_size=60))
def test_any_token_dataset_string_loads_or_raises_one_line_naming_the_file(tokens: str
                                                                            ) -> None:
    import json

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "chunk-0-trace.csv").write_text("0,1.0,1.0,Gamma,1.0,1.0\n")
        ds = folder / "chunk-0-dataset.json"
        ds.write_text(json.dumps({"0": {"input_tokens": tokens, "output_tokens": "{1: 1}"}}))
        try:
            load_trace(folder, bursts=False)
        except TraceError as exc:
            assert str(ds) in str(exc) and "\n" not in str(exc)
            assert len(str(exc)) <= MAX_MESSAGE


@pytest.mark.parametrize(("name", "body", "line"), [
    pytest.param("g.csv", b"timestamp\n0\n1\n1e15\n", 4, id="csv seconds span 1e15 s"),
    pytest.param("m.jsonl", b'{"timestamp": 0, "input_length": 1, "output_length": 1}\n'
                 b'{"timestamp": 1e18, "input_length": 1, "output_length": 1}\n', 2,
                 id="mooncake milliseconds span 1e15 s"),
    pytest.param("a.csv", b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 b"2023-11-16 18:15:46.68,1,1\n2200-11-16 18:15:46.68,1,1\n", 3,
                 id="azure dates 177 years apart"),
    pytest.param("a.csv", b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 b"2023-11-16 18:15:46.68,1,1\n9999-11-16 18:15:46.68,1,1\n", 3,
                 id="azure year 9999 beyond nanosecond range"),
    pytest.param("chunk-0-trace.csv", b"0,1,1,Gamma,1,1\n1000000000000000,1,1,Gamma,1,1\n",
                 2, id="servegen windows span 1e15 s"),
])
def test_a_trace_spanning_1e15_seconds_is_refused_before_allocating(
        tmp_path: Path, name: str, body: bytes, line: int) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert info.value.path == str(path) and info.value.line == line
    assert "400 days" in str(info.value) or "years 1678-2261" in str(info.value)


def test_size_estimate_counts_requests_bins_and_bytes() -> None:
    # 14 days at 860 req/s: 1,209,600 ticks and 1,040,256,000 requests.
    rates = np.full(2016, 860.0)
    trace = Trace(name="big", duration_s=14 * 86_400.0, rates_rps=rates, resolution_s=600.0)
    size = trace.size_estimate()
    assert size.requests == 1_040_256_000.0 == trace.estimated_request_count
    assert size.bins_1s == 1_209_600
    assert size.request_engine_bytes == 1_040_256_000 * 700  # 700 B each: about 728 GB
    assert size.fluid_engine_bytes == 1_209_600 * 128  # about 155 MB
