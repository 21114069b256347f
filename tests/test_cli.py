"""The command line as a user runs it: documented JSON, a report, and one-line errors."""

from __future__ import annotations

import json
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
    assert set(doc["trace"]) >= {"name", "requests", "duration_s"}
    assert doc["trace"]["name"] == "t" and doc["trace"]["requests"] == 1500
    # Arrivals count from the first request (about 23 s in for this ramp).
    assert 850 <= doc["trace"]["duration_s"] <= 901
    assert doc["slo"] == {"ttft_s": 2.0}
    assert [r["policy"] for r in doc["results"]] == [
        "hpa", "hpa-queue", "hpa-kv", "keda", "kpa", "wva", "predictive", "oracle", "static"]
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
    for png in ("demand.png", "replicas.png", "latency.png", "tradeoff.png"):
        assert f'src="{png}"' in html
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["policy"] for r in doc["results"]] == ["hpa", "oracle"]


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
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
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
    assert by["oracle"]["slo_attainment"] >= 0.99
    assert set(by) == {"hpa", "hpa-queue", "hpa-kv", "keda", "kpa", "wva", "predictive",
                       "oracle", "static"}
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
