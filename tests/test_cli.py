"""The command line as a user runs it: documented JSON, a report, and one-line errors."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from autoscaler.cli import main

REAL = Path(__file__).resolve().parents[2] / "shared" / "traces"
RESULT_KEYS = {"policy", "slo_attainment", "gpu_hours", "ttft_p50_s", "ttft_p95_s",
               "ttft_p99_s", "scale_events", "mean_replicas", "max_replicas"}


def _azure_csv(path: Path, n: int = 1500, seconds: float = 900.0, seed: int = 3) -> Path:
    """A small trace in the Azure format: a ramp from 0.5 to 3 req/s."""
    rng = np.random.default_rng(seed)
    u = np.sort(rng.random(n))
    t = seconds * np.sqrt(u)  # density grows linearly in time: a ramp
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for x in t:
        whole = int(x)
        frac = int((x - whole) * 1e7)
        lines.append(f"2023-11-16 18:{whole // 60:02d}:{whole % 60:02d}.{frac:07d},"
                     f"{int(rng.integers(200, 2000))},{int(rng.integers(20, 300))}")
    path.write_text("\n".join(lines))
    return path


def test_replay_writes_the_documented_json_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _azure_csv(tmp_path / "t.csv")
    code = main(["replay", "--trace", str(trace), "--json", "-", "--no-progress"])
    assert code == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert set(doc["trace"]) >= {"name", "requests", "duration_s", "interarrival_cv",
                                 "collection_gaps"}
    assert doc["trace"]["name"] == "t" and doc["trace"]["requests"] == 1500
    assert doc["trace"]["collection_gaps"] == 0 and doc["trace"]["interarrival_cv"] > 0
    # Arrivals count from the first request (about 23 s in for this ramp).
    assert 850 <= doc["trace"]["duration_s"] <= 901
    assert doc["slo"] == {"ttft_s": 2.0, "ttft_s_per_prompt_token": 0.0,
                          "target_attainment": 0.99}
    assert doc["bound"]["gpu_hours"] > 0 and doc["bound"]["definition"]
    assert [r["policy"] for r in doc["results"]] == [
        "hpa", "hpa-queue", "hpa-kv", "keda", "kpa", "wva", "predictive", "hindsight", "static"]
    for r in doc["results"]:
        assert set(r) >= RESULT_KEYS
        assert 0.0 <= r["slo_attainment"] <= 1.0
        assert r["gpu_hours"] > 0
        assert r["ttft_p50_s"] <= r["ttft_p95_s"] <= r["ttft_p99_s"]
        assert r["max_replicas"] >= r["mean_replicas"] > 0
    # The table goes to stderr when the JSON takes stdout, so stdout stays parseable.
    assert "policy" in out.err and "SLO att." in out.err


def test_replay_writes_an_html_report_with_plots(tmp_path: Path) -> None:
    trace = _azure_csv(tmp_path / "t.csv", n=600, seconds=600.0)
    report = tmp_path / "report"
    assert main(["replay", "--trace", str(trace), "--policies", "hpa,oracle", "--report",
                 str(report), "--json", str(tmp_path / "r.json"), "--no-progress"]) == 0
    html = (report / "index.html").read_text()
    for png in ("comparison.png", "replicas.png"):
        assert f'href="{png}"' in html
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["policy"] for r in doc["results"]] == ["hpa", "hindsight"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["--policies", "hpa,bogus"], "--policies: 'bogus' is not allowed",
                     id="unknown policy"),
        pytest.param(["--slo-ttft", "-1"], "--slo-ttft", id="negative SLO"),
        pytest.param(["--cold-start", "abc"], "--cold-start", id="non-numeric cold start"),
        pytest.param(["--profile", "no-such-profile"], "no-such-profile", id="unknown profile"),
        pytest.param(["--trace", "/nonexistent/trace.csv"], "/nonexistent/trace.csv",
                     id="missing trace"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_code_two(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        code = main(["replay", "--no-progress", *args])
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err


def test_a_malformed_trace_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                   "2023-11-16 18:15:46.6805900,374,44\n"
                   "2023-11-16 18:15:50.9951690,abc,109\n")
    assert main(["replay", "--trace", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{bad}:3" in err and "ContextTokens" in err


def test_a_bad_spec_file_names_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("policy: predictive\nmaxReplicas: 4\ncapacity: {requestsPerSecond: 4, "
                    "concurrency: 20}\npredictive:\n  headroomQuantile: 1.5\n")
    assert main(["replay", "--spec", str(spec), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:5: predictive.headroomQuantile: 1.5" in err


def test_validate_accepts_a_shipped_example(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "hpa-concurrency.yaml"
    assert main(["validate", str(example)]) == 0
    assert "valid hpa spec" in capsys.readouterr().out


@pytest.mark.parametrize(("edit", "expected"), [
    pytest.param(None, "valid predictive spec", id="a shipped InferenceAutoscaler is valid"),
    pytest.param({"minReplicas": 9, "maxReplicas": 3}, "minReplicas must be <= maxReplicas",
                 id="min above max is named"),
    pytest.param({"fallback": {"replicas": 99}}, "spec.fallback",
                 id="a fallback outside min..max is named"),
])
def test_validate_checks_a_whole_custom_resource(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: dict[str, object] | None,
        expected: str) -> None:
    example = Path(__file__).resolve().parents[1] / "deploy/examples/vllm-autoscaler.yaml"
    doc = yaml.safe_load(example.read_text())
    if edit:
        doc["spec"].update(edit)
    path = tmp_path / "cr.yaml"
    path.write_text(yaml.safe_dump(doc))
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    assert code == (0 if edit is None else 2)
    assert expected in (out.out + out.err)


def test_building_the_parser_loads_no_cluster_or_prometheus_client() -> None:
    # In a fresh interpreter: this test process has long imported everything.
    code = ("import sys\n"
            "from autoscaler.cli import build_parser\n"
            "build_parser()\n"
            "heavy = ('kubernetes', 'prometheus_api_client', 'prometheus_client', 'optuna',\n"
            "         'fastapi', 'uvicorn', 'matplotlib')\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_version_prints_the_version_pyproject_declares(
        capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml")
                              .read_text())
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"autoscaler {pyproject['project']['version']}"


def test_the_console_script_runs_without_a_terminal(tmp_path: Path) -> None:
    trace = _azure_csv(tmp_path / "t.csv", n=300, seconds=300.0)
    proc = subprocess.run(
        [sys.executable, "-m", "autoscaler.cli", "replay", "--trace", str(trace),
         "--policies", "static", "--json", "-"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["policy"] == "static"


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/traces is not beside the clone")
def test_the_real_azure_conversation_trace_replays_with_every_policy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = REAL / "AzureLLMInferenceTrace_conv.csv"
    assert main(["replay", "--trace", str(path), "--json", "-", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trace"]["requests"] == 19_366
    by = {r["policy"]: r for r in doc["results"]}
    # Perfect foresight keeps the SLO on real traffic, and every policy served every hour.
    assert by["hindsight"]["slo_attainment"] >= 0.99
    assert set(by) == {"hpa", "hpa-queue", "hpa-kv", "keda", "kpa", "wva", "predictive",
                       "hindsight", "static"}
    assert all(r["gpu_hours"] >= 0.9 for r in by.values())  # >= 1 replica for ~58 min


def test_an_unwritable_json_path_is_one_line_and_exit_code_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _azure_csv(tmp_path / "t.csv", n=200, seconds=200.0)
    target = tmp_path / "no-such-dir" / "r.json"
    assert main(["replay", "--trace", str(trace), "--policies", "static", "--json",
                 str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--json {target}: cannot write" in err and "Traceback" not in err


def test_the_decision_log_explains_every_decision(tmp_path: Path) -> None:
    from autoscaler.core.types import Reason

    trace = _azure_csv(tmp_path / "t.csv", n=600, seconds=600.0)
    log = tmp_path / "decisions.jsonl"
    assert main(["replay", "--trace", str(trace), "--policies", "hpa,predictive",
                 "--decisions", str(log), "--no-progress"]) == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    by_policy = {p: [r for r in lines if r["policy"] == p] for p in ("hpa", "predictive")}
    # One decision per 15-s sync period over the trace, for each policy.
    for records in by_policy.values():
        assert len(records) >= 35
        assert [r["t_s"] for r in records] == sorted(r["t_s"] for r in records)
    reasons = {r.value for r in Reason}
    for r in lines:
        assert r["reason"] in reasons and r["message"]
        if not r["valid"]:
            assert r["replicas"] == r["current"]  # invalid means hold
    # The first decisions come before two scrapes exist: no rate yet, so they hold.
    assert by_policy["predictive"][0]["valid"] is False
    assert any(r["valid"] and "request_rate" in r["metrics"] for r in by_policy["hpa"])


# --- progress -------------------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_on_a_pipe_is_plain_lines_at_most_every_interval() -> None:
    from autoscaler.cli.common import Progress

    out, clock = io.StringIO(), _Clock()
    with Progress(100, "replay", unit="decision", stream=out, min_interval_s=10.0,
                  clock=clock) as bar:
        for step in range(100):
            clock.now = step * 0.5  # 50 s in all: a line at 0, 10, 20, 30, 40 s and the end
            bar.update(1, "hpa")
    lines = out.getvalue().splitlines()
    assert lines == [f"replay: {n}/100 decisions done, {t} s (hpa)"
                     for n, t in ((1, 0), (21, 10), (41, 20), (61, 30), (81, 40), (100, 50))]


def test_progress_on_a_terminal_is_a_bar_and_off_is_silent() -> None:
    from autoscaler.cli.common import Progress

    tty = _Tty()
    with Progress(10, "tune", unit="trial", stream=tty) as bar:
        for _ in range(10):
            bar.update(1)
    assert "\r" in tty.getvalue() and "10/10" in tty.getvalue()  # tqdm redraws one line
    quiet = _Tty()
    with Progress(10, "tune", stream=quiet, enabled=False) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""


def test_replay_prints_its_header_before_progress_lines_on_a_pipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = _azure_csv(tmp_path / "t.csv", n=300, seconds=300.0)
    assert main(["replay", "--trace", str(trace), "--policies", "hpa,static"]) == 0
    err = capsys.readouterr().err.splitlines()
    # The header names trace, capacity and SLO, and comes first: before any work is done.
    assert err[0].startswith("replay: trace t: 300 requests over ")
    assert "SLO TTFT <= 2 s" in err[0] and "req/s at the SLO" in err[0]
    done = [line for line in err if " done (" in line]
    assert [line.split(":")[1].strip() for line in done] == ["hpa done (1/2)",
                                                              "static done (2/2)"]


def test_forecast_backtest_reports_progress_per_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = np.random.default_rng(1).poisson(2.0, 3 * 86_400)
    path = tmp_path / "counts.txt"
    path.write_text(" ".join(map(str, counts)))
    assert main(["forecast", "backtest", "--trace", str(path), "--resolution", "600",
                 "--horizons", "600", "--models", "ses,auto", "--train-days", "2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("forecast backtest: trace ")
    # Baselines first (one step), then one step per model: 3 steps.
    assert [line.split(", ")[0] for line in err[1:]] == [
        "forecast backtest: 1/3 models done", "forecast backtest: 2/3 models done",
        "forecast backtest: 3/3 models done"]
    assert err[-1].endswith("(auto)")


# --- the decision log -----------------------------------------------------------------------

def _log(tmp_path: Path, *flags: str) -> list[dict[str, object]]:
    trace = _azure_csv(tmp_path / "t.csv", n=600, seconds=600.0)
    log = tmp_path / "d.jsonl"
    assert main(["replay", "--trace", str(trace), "--policies", "hpa,predictive",
                 "--decisions", str(log), "--no-progress", *flags]) == 0
    return [json.loads(x) for x in log.read_text().splitlines()]


def test_the_decision_log_can_be_limited_by_policy_window_and_changes(tmp_path: Path) -> None:
    full = _log(tmp_path)
    only_hpa = _log(tmp_path, "--decisions-policies", "hpa")
    assert only_hpa == [r for r in full if r["policy"] == "hpa"]
    window = _log(tmp_path, "--decisions-window", "2m:300")
    assert window == [r for r in full if 120 <= float(r["t_s"]) < 300]  # type: ignore[arg-type]
    changes = _log(tmp_path, "--decisions-changes-only")
    # A slow reference: keep a record when (replicas, reason, valid) differs from the
    # policy's previous record in the full log.
    expected, last = [], {}
    for r in full:
        key = (r["replicas"], r["reason"], r["valid"])
        if last.get(r["policy"]) != key:
            expected.append(r)
            last[r["policy"]] = key
    assert changes == expected and len(changes) < len(full)


def test_a_large_decision_log_warns_with_its_expected_size_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoscaler.cli import replay

    monkeypatch.setattr(replay, "DECISIONS_WARN_BYTES", 1000.0)
    trace = _azure_csv(tmp_path / "t.csv", n=300, seconds=600.0)
    assert main(["replay", "--trace", str(trace), "--policies", "hpa", "--decisions",
                 str(tmp_path / "d.jsonl")]) == 0
    err = capsys.readouterr().err.splitlines()
    warning = [line for line in err if "warning: --decisions" in line]
    assert len(warning) == 1
    # The trace spans 570 to 600 s (arrivals count from the first request): one HPA
    # decision per 15-s sync period is 38 to 40 decisions, about 650 bytes each: 0 MB.
    m = re.search(r"will write about (\d+) MB \((\d+) decisions\)", warning[0])
    assert m is not None and m[1] == "0" and 38 <= int(m[2]) <= 40
    assert "--decisions-policies, --decisions-window or --decisions-changes-only" in warning[0]
    assert err.index(warning[0]) < next(i for i, line in enumerate(err) if " done (" in line)


def test_json_output_has_no_infinity_or_nan(capsys: pytest.CaptureFixture[str]) -> None:
    from autoscaler.cli.common import write_json

    write_json("--json", "-", {"ttft_p99_s": math.inf, "x": [math.nan, 1.5], "ok": 2})

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    assert json.loads(capsys.readouterr().out, parse_constant=refuse) == {
        "ttft_p99_s": None, "x": [None, 1.5], "ok": 2}


def test_tune_prints_its_header_then_a_line_per_trial_on_a_pipe(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tune", "--synthetic-duration", "2400", "--engine", "fluid", "--budget", "2",
                 "--policy", "hpa"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("tune: trace synthetic") and "SLO TTFT <= 2 s" in err[0]
    # Lines are at most every 10 s plus the first and the last: the first and the last trial.
    trials = [line for line in err if "trials done" in line]
    assert trials[0].startswith("tune: 1/2 trials done") and trials[-1].startswith(
        "tune: 2/2 trials done")
    assert re.search(r"\(hpa: \d+\.\d\d GPU-h at \d+\.\d%\)$", trials[-1])


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/traces is not beside the clone")
def test_the_header_states_the_slo_and_capacity_the_replay_uses_at_a_length_aware_slo(
    capsys: pytest.CaptureFixture[str]
) -> None:
    # Azure code's prompts average ~2,000 tokens: at 2 s + 0.001 s per prompt token their
    # objective is ~4 s, so one replica carries more than at a flat 2 s. The header used to
    # state the flat SLO and the flat figure while the replay ran at the length-aware one.
    said: dict[float, float] = {}
    for slope in (0.0, 0.001):
        assert main(["replay", "--trace", str(REAL / "AzureLLMInferenceTrace_code.csv"),
                     "--policies", "static", "--json", "-", "--no-progress",
                     "--slo-ttft-per-prompt-token", str(slope)]) == 0
        out = capsys.readouterr()
        first = out.err.splitlines()[0]
        assert ("+ 0.001 s/prompt token" in first) == (slope > 0)
        header = re.search(r"holds ([0-9.]+) req/s at the SLO", first)
        assert header is not None
        used = json.loads(out.out)["capacity"]["requests_per_second"]
        assert float(header.group(1)) == pytest.approx(used, rel=0.01)
        said[slope] = used
    assert said[0.001] > said[0.0]
