"""``autoscaler forecast backtest``: bad input is one line and exit code 2; a good run
writes the documented JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main


@pytest.fixture(scope="module")
def counts_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days of per-second counts with a daily cycle (the NASA file's format)."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * 86_400)
    rate = 2.0 + 1.5 * np.sin(2 * np.pi * t / 86_400)
    path = tmp_path_factory.mktemp("trace") / "counts.txt"
    path.write_text(" ".join(map(str, rng.poisson(rate))))
    return path


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        pytest.param(["--horizons", "abc"], "--horizons", id="horizon not a number"),
        pytest.param(["--horizons", "-5"], "--horizons", id="negative horizon"),
        pytest.param(["--horizons", "300,450"], "--horizons", id="horizon not a multiple"),
        pytest.param(["--resolution", "0"], "--resolution", id="zero resolution"),
        pytest.param(["--models", "arima"], "--models", id="unknown model"),
        pytest.param(["--train-days", "30"], "--train-days", id="training longer than trace"),
    ],
)
def test_bad_option_is_one_line_naming_it_with_exit_code_2(
        counts_trace: Path, extra: list[str], option: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["forecast", "backtest", "--trace", str(counts_trace),
                               "--resolution", "300", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and option in err and "allowed" in err


def test_missing_trace_file_is_exit_code_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["forecast", "backtest", "--trace", str(tmp_path / "nope.txt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope.txt" in err


def test_backtest_writes_the_documented_json(counts_trace: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["forecast", "backtest", "--trace", str(counts_trace),
                               "--resolution", "600", "--horizons", "600,1200",
                               "--models", "ses,auto", "--train-days", "2", "--json", "-"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc["trace"]["name"], str) and doc["resolution_s"] == 600
    rows = {(r["model"], r["horizon_s"]): r for r in doc["results"]}
    for model in ("last", "seasonal_daily", "seasonal_weekly", "ses", "auto"):
        for h in (600, 1200):
            r = rows[(model, h)]
            assert 0.0 <= r["coverage_90"] <= 1.0 and r["mae"] >= 0
    for h in (600, 1200):
        best = min(rows[(b, h)]["mae"] for b in ("last", "seasonal_daily", "seasonal_weekly")
                   if rows[(b, h)]["mae"] is not None)
        assert rows[("ses", h)]["relative_mae"] == pytest.approx(rows[("ses", h)]["mae"] / best)


@pytest.mark.parametrize(
    ("flags", "gaps"),
    [pytest.param([], 3, id="by default a collection gap is missing data"),
     pytest.param(["--no-gap-rule"], 0, id="--no-gap-rule scores the zeros as real")],
)
def test_a_run_of_zeros_inside_busy_traffic_is_a_collection_gap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], gaps: int
) -> None:
    # 3 days at ~2 req/s (1,200 expected per 600-s bin) with 30 minutes of exact zeros:
    # three 600-s bins that a real lull at that rate would leave empty with p ~ e^-1200.
    counts = np.random.default_rng(1).poisson(2.0, 3 * 86_400)
    counts[100_200:102_000] = 0
    path = tmp_path / "counts.txt"
    path.write_text(" ".join(map(str, counts)))
    code = main(["forecast", "backtest", "--trace", str(path), "--resolution",
                               "600", "--horizons", "600", "--models", "ses",
                               "--train-days", "2", "--json", "-", *flags])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["collection_gaps"] == gaps
