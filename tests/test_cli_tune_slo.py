"""``autoscaler tune --slo-ttft-per-prompt-token``: the length-aware SLO, with the name, range
and one-line error of ``autoscaler replay``'s option, carried to every candidate's replay
and bound."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from typing import Any

import pytest

from autoscaler.cli import main
from autoscaler.cli.common import load_trace_input
from autoscaler.core.spec import PolicyKind
from autoscaler.errors import SpecError
from autoscaler.sim.profiles import load_profile
from autoscaler.tuning import TuneSettings, default_params, evaluate, prepare
from autoscaler.tuning.searching import settings_from_json, settings_json, study_key

TUNE = ["tune", "--synthetic-duration", "2400", "--engine", "fluid", "--budget", "1",
        "--policy", "hpa", "--no-progress"]


def _err(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code  # type: ignore[assignment]
    return code, capsys.readouterr().err


@pytest.mark.parametrize("value", [
    pytest.param("0.5", id="50x the largest slope"),
    pytest.param("0.0100001", id="just above 0.01"),
    pytest.param("-0.001", id="negative"),
    pytest.param("nan", id="nan"),
    pytest.param("inf", id="inf"),
    pytest.param("fast", id="not a number"),
])
def test_a_bad_slope_is_replays_one_line_exit_2(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code_t, err_t = _err([*TUNE, "--slo-ttft-per-prompt-token", value], capsys)
    code_r, err_r = _err(["replay", "--slo-ttft-per-prompt-token", value], capsys)
    assert code_t == 2, err_t
    assert err_t.count("\n") == 1 and "Traceback" not in err_t, err_t
    assert (f"--slo-ttft-per-prompt-token: {value!r} is not allowed; allowed: a number >= 0 "
            "and <= 0.01") in err_t
    # The same check as replay's, word for word but for the command's name.
    assert code_r == 2
    assert err_t.replace("autoscaler tune", "autoscaler replay") == err_r


def test_the_slope_reaches_the_settings_the_json_and_the_emitted_spec(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = tmp_path / "winner.yaml"
    assert main([*TUNE, "--slo-ttft-per-prompt-token", "0.0002", "--json", "-",
                 "--attainment", "0.5", "--emit-spec", str(spec_path)]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["settings"]["slo_ttft_s_per_prompt_token"] == 0.0002
    assert doc["policies"]["hpa"]["spec"]["slo"]["ttftSecondsPerPromptToken"] == 0.0002
    assert "(TTFT <= 2 s + 0.0002 s/prompt token)" in err  # the table, on stderr with "-"
    assert "ttftSecondsPerPromptToken: 0.0002" in spec_path.read_text(encoding="utf-8")


def test_a_flat_objective_says_nothing_of_a_slope(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TUNE, "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["settings"]["slo_ttft_s_per_prompt_token"] == 0.0
    assert "(TTFT <= 2 s)" in err and "prompt token" not in err


def test_settings_round_trip_and_old_shard_files_read_as_flat() -> None:
    s = TuneSettings(slo_ttft_s_per_prompt_token=0.0003)
    assert settings_from_json(settings_json(s)) == s
    old = settings_json(TuneSettings())
    del old["slo_ttft_s_per_prompt_token"]  # a shard file written before the option
    assert settings_from_json(old).slo_ttft_s_per_prompt_token == 0.0


@pytest.mark.parametrize("slope", [-1e-6, 0.02, math.nan])
def test_settings_refuse_a_slope_out_of_range(slope: float) -> None:
    with pytest.raises(SpecError, match="--slo-ttft-per-prompt-token"):
        TuneSettings(slo_ttft_s_per_prompt_token=slope).validate()


@pytest.fixture(scope="module")
def trace() -> Any:
    return load_trace_input(None, None, seed=0, synthetic_duration_s=2400, rate_scale=1.0,
                            start=None, duration=None)


def test_a_flat_study_keeps_its_key_and_a_slope_gets_another(trace: Any) -> None:
    profile = load_profile("llama3-8b-h100")
    flat = prepare(trace, profile, TuneSettings(policies=(PolicyKind.HPA,), engine="fluid"))
    # The key as it was computed before the option (journals written then must resume).
    ident = {"trace": trace.name, "duration_s": trace.duration_s,
             "requests": trace.request_count, "profile": profile.name, "attainment": 0.99,
             "slo_ttft_s": 2.0, "holdout": 0.25, "seed": 0, "engine": "fluid"}
    old = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    assert study_key(flat) == old
    sloped = replace(flat, settings=replace(flat.settings, slo_ttft_s_per_prompt_token=1e-4))
    assert study_key(sloped) != old


def test_the_tuned_objective_uses_the_slope(trace: Any) -> None:
    """The same candidate (the HPA's defaults) on the same training part: with 0.001 s per
    prompt token every request's objective is longer, so no request met at the flat 2 s
    is missed and some missed ones are met (attainment strictly up), and the bound at the
    longer objectives can only fall."""
    profile = load_profile("llama3-8b-h100")
    got = {}
    for slope in (0.0, 0.001):
        ctx = prepare(trace, profile, TuneSettings(
            policies=(PolicyKind.HPA, PolicyKind.PREDICTIVE), budget=1, engine="fluid",
            slo_ttft_s_per_prompt_token=slope))
        # Every base spec (each candidate is one with tuned fields changed) carries it.
        assert {k: b.slo.ttft_seconds_per_prompt_token for k, b in ctx.base.items()} == {
            k: slope for k in ctx.base}
        base = ctx.base[PolicyKind.HPA]
        got[slope] = evaluate(ctx, PolicyKind.HPA, 0, default_params(base))
    flat, sloped = got[0.0], got[0.001]
    assert flat.error is None and sloped.error is None
    assert flat.gpu_hours == pytest.approx(sloped.gpu_hours)  # same replicas, same traffic
    assert sloped.attainment > flat.attainment
    assert sloped.bound_gpu_hours <= flat.bound_gpu_hours
