"""The trace options on the command line: ``--start``/``--duration`` on replay, tune and
forecast backtest; bad windows, scales and trace files end in one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main


def _counts_file(tmp_path: Path, hours: int = 3, rate: float = 4.0) -> Path:
    counts = np.random.default_rng(0).poisson(rate, hours * 3600)
    path = tmp_path / "w.txt"
    path.write_text(" ".join(map(str, counts)))
    return path


def test_replay_of_a_window_replays_only_that_window(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    trace = _counts_file(tmp_path)
    code = main(["replay", "--trace", str(trace), "--start", "1h", "--duration", "30m",
                 "--policies", "static", "--json", "-", "--no-progress"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    # 30 minutes at 4 req/s: about 7,200 requests (not the whole 3 h's 43,200).
    assert doc["trace"]["name"] == "w[1h+30m]"
    assert doc["trace"]["duration_s"] == 1800.0
    assert abs(doc["trace"]["requests"] - 7200) < 5 * 85  # sd sqrt(7200) = 85


@pytest.mark.parametrize(("args", "needle"), [
    pytest.param(["--start", "banana"], "--start", id="start not a duration"),
    pytest.param(["--duration", "0"], "--duration", id="zero duration"),
    pytest.param(["--start", "5h"], "--start", id="start past the end"),
    pytest.param(["--rate-scale", "1e6"], "--rate-scale", id="rate scale x1e6"),
    pytest.param(["--time-scale", "1e6"], "--time-scale", id="time scale x1e6 (114 years)"),
])
def test_bad_window_or_scale_is_one_line_naming_the_option(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    trace = _counts_file(tmp_path)
    code = main(["replay", "--trace", str(trace), "--policies", "static", "--no-progress",
                 *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and "\n" not in err and "Traceback" not in err


def test_a_trace_spanning_1e15_seconds_exits_2_naming_the_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text("timestamp\n0\n1\n1000000000000000\n")
    assert main(["replay", "--trace", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{path}:4" in err and "\n" not in err


def test_forecast_backtest_takes_a_window(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    trace = _counts_file(tmp_path, hours=26)
    code = main(["forecast", "backtest", "--trace", str(trace), "--start", "1h",
                 "--duration", "24h", "--train-days", "0.5", "--models", "last",
                 "--horizons", "300", "--json", "-"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trace"]["name"] == "w[1h+1d]"
    # 24 h at 60-s bins minus 12 h of training: 720 scored origins at most.
    assert 0 < doc["results"][0]["n"] <= 720


def test_rate_scale_draws_copies_from_the_whole_trace_before_the_window(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _counts_file(tmp_path, hours=72, rate=0.5)
    # A 1-day window of a 3-day trace can be scaled x3 (copies from the other two days).
    code = main(["replay", "--trace", str(trace), "--duration", "1d", "--rate-scale", "3",
                 "--policies", "static", "--json", "-", "--no-progress"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    # 86,400 s x 0.5 req/s x 3 = 129,600 expected; sd sqrt(129,600) = 360.
    assert abs(doc["trace"]["requests"] - 129_600) < 5 * 360
    # x4 needs four whole days: one line naming --rate-scale and its range.
    code = main(["replay", "--trace", str(trace), "--duration", "1d", "--rate-scale", "4",
                 "--policies", "static", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--rate-scale" in err and "<= 3" in err and "\n" not in err
