"""What ``autoscaler replay`` prints: the header first, and a table that stays aligned."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from autoscaler.replaying import format_table

HEADERS = ("policy", "SLO att.", "worst h", "h>=tgt", "GPU-h", "bound", "/bound", "TTFT p50",
           "p95", "p99", "events", "starts/d", "cold GPU-h", "mean rep", "max")


def _result(policy: str, gpu_hours: float, bound: float | None) -> dict[str, Any]:
    return {"policy": policy, "slo_attainment": 0.9951, "worst_hour_attainment": 0.9,
            "hours_meeting_target": 0.75, "gpu_hours": gpu_hours, "bound_gpu_hours": bound,
            "gpu_vs_bound": None if bound is None else gpu_hours / bound,
            "ttft_p50_s": 0.12, "ttft_p95_s": 1.5, "ttft_p99_s": None, "scale_events": 12345,
            "replica_starts_per_day": 1158.0, "cold_start_gpu_hours": 12.5,
            "mean_replicas": 123.45, "max_replicas": 1234}


def _doc(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"trace": {"name": "t", "requests": 1000, "duration_s": 3600.0},
            "slo": {"ttft_s": 2.0, "target_attainment": 0.99}, "profile": "p",
            "capacity": {"requests_per_second": 7.8}, "results": results}


@pytest.mark.parametrize("gpu_hours", [
    pytest.param(9.5, id="one-digit"),
    pytest.param(12_345.67, id="five-digit"),
    pytest.param(1_234_567.89, id="seven-digit"),
])
def test_table_columns_stay_aligned(gpu_hours: float) -> None:
    text = format_table(_doc([_result("hpa", 10.22, 4.79),
                              _result("predictive", gpu_hours, gpu_hours * 0.9),
                              _result("static", 16.0, None)]))
    header, rule, *rows = text.splitlines()[1:5]
    assert set(rule) == {"-"} and len(rule) == len(header)
    # Every column (right-aligned after the policy) ends where its header ends, and cells
    # are apart by a space at least.
    edges, pos = [], 0
    for name in HEADERS:
        pos = header.index(name, pos) + len(name)
        edges.append(pos)
    for row in rows:
        assert len(row) == len(header), (header, row)
        cells = row.split()
        assert len(cells) == 15, row  # none ran into its neighbour
        row_edges = [m.end() for m in re.finditer(r"\S+", row)]
        assert row_edges[1:] == edges[1:], (header, row)


def test_header_comes_first_without_progress(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"2023-11-16 18:{m:02d}:{s:02d}.0000000,1000,200" for m in range(5)
              for s in range(0, 60, 2)]
    trace.write_text("\n".join(lines) + "\n")
    err = io.StringIO()
    from autoscaler.cli import replay as cli_replay
    from autoscaler.cli.app import build_parser

    args = build_parser().parse_args(["replay", "--trace", str(trace), "--policies", "static",
                                      "--no-progress"])
    assert cli_replay.run_replay(cli_replay.ReplayCommand.from_args(args), stream=err) == 0
    first = err.getvalue().splitlines()[0]
    assert first.startswith("replay: trace t: 150 requests over ")
    assert "SLO TTFT <= 2 s" in first and "req/s at the SLO" in first
