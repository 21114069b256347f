"""autoscaler tune: search spaces, Pareto fronts, the holdout split, shards against the local
pool, resumable search, the emitted spec, CLI errors and the Indexed Job manifest."""

from __future__ import annotations

import argparse
import functools
import json
import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.cli import build_parser, main
from autoscaler.cli.tune import settings_from_args
from autoscaler.config import load_spec
from autoscaler.core.spec import MetricTargetType, PolicyKind
from autoscaler.errors import AutoscalerError, SpecError
from autoscaler.sim.profiles import load_profile
from autoscaler.traces import Trace, default_workload
from autoscaler.tuning import (
    SPACES,
    Candidate,
    TuneSettings,
    apply_params,
    candidate_list,
    from_unit,
    pareto_front,
    prepare,
    search,
    shard_slice,
    split_trace,
)
from autoscaler.tuning.searching import best_of
from autoscaler.tuning.spaces import ChoiceParam, FloatParam, IntParam

ROOT = Path(__file__).resolve().parents[1]
SMALL_S = 2400.0
"""40 minutes of the embedded workload: 30 to tune on, 10 held out (the 600-s minimum)."""
SMALL = ["--synthetic-duration", str(int(SMALL_S)), "--engine", "fluid", "--budget", "4"]


def _parser() -> argparse.ArgumentParser:
    return build_parser()


def _cli(argv: list[str]) -> int:
    return main(argv)


# --- Pareto front -----------------------------------------------------------------------

def _front_reference(points: list[tuple[float, float]]) -> list[int]:
    """O(n^2): a point is kept unless another beats it (<= GPU-h and >= attainment, one
    strictly) or an identical point comes earlier."""
    keep = []
    for i, (g, a) in enumerate(points):
        beaten = any((g2 <= g and a2 >= a and (g2 < g or a2 > a)) or ((g2, a2) == (g, a)
                                                                       and j < i)
                     for j, (g2, a2) in enumerate(points) if j != i)
        if not beaten:
            keep.append(i)
    return sorted(keep, key=lambda i: points[i][0])


_coarse = st.integers(0, 6).map(float)  # coarse values make ties and duplicates common


@given(st.lists(st.tuples(_coarse, st.integers(0, 6).map(lambda x: x / 6)), max_size=40))
@settings(max_examples=300, deadline=None)
def test_pareto_front_matches_the_quadratic_reference(points: list[tuple[float, float]]) -> None:
    assert pareto_front(points) == _front_reference(points)


def test_pareto_front_of_the_worked_example_drops_the_dominated_point() -> None:
    pts = [(10.0, 0.99), (8.0, 0.95), (9.0, 0.95), (12.0, 0.999)]
    assert pareto_front(pts) == [1, 0, 3]


# --- Search spaces ------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _base() -> dict[PolicyKind, Any]:
    """Each policy's replay default on a small trace (what candidates are applied to)."""
    return prepare(default_workload(seed=0, duration_s=SMALL_S), load_profile("llama3-8b-h100"),
                   TuneSettings(engine="fluid")).base


@pytest.mark.parametrize("policy", list(SPACES), ids=lambda p: str(p))
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_every_point_of_the_unit_cube_is_a_valid_spec_within_the_bounds(
        policy: PolicyKind, data: st.DataObject) -> None:
    space = SPACES[policy]
    point = data.draw(st.lists(st.floats(0.0, 1.0), min_size=len(space), max_size=len(space)))
    params = from_unit(policy, point)
    for p in space:
        v = params[p.name]
        if isinstance(p, ChoiceParam):
            assert v in p.choices
        else:
            assert isinstance(v, int | float) and p.low <= v <= p.high * (1 + 1e-12)
        if isinstance(p, IntParam):
            assert isinstance(v, int) and (v - p.low) % p.step == 0
    ctx_spec = _base()[policy]
    spec = apply_params(ctx_spec, params)  # Spec validates itself on construction
    assert spec.policy == policy
    if policy == PolicyKind.HPA:
        (m,) = spec.metrics
        assert m.type == MetricTargetType.AVERAGE_VALUE
        # The target is the fraction of the base spec's capacity (the input, not the
        # result's), to 3 decimals: a fraction 0.7 of 10 req/s is 7 req/s per replica.
        want = round(ctx_spec.capacity.requests_per_second * float(params["target_fraction"]),
                     3)
        assert m.value == pytest.approx(max(want, 0.001))
    if policy == PolicyKind.PREDICTIVE:
        assert spec.predictive.forecaster == params["forecaster"]
        assert spec.predictive.scale_down_window_s == params["hold_s"]
    if policy in (PolicyKind.HPA_QUEUE, PolicyKind.HPA_KV, PolicyKind.HPA_RUNNING,
                  PolicyKind.KEDA):
        (m,) = spec.metrics
        assert m.value == pytest.approx(max(float(params["target"]), 0.001))
    if policy == PolicyKind.WVA:
        assert spec.wva.scale_down_threshold == pytest.approx(
            float(params["scale_up_threshold"]) * float(params["band"]))


@pytest.mark.parametrize(("policy", "name", "upstream"), [
    pytest.param(PolicyKind.HPA, "scale_down_window_s", 300,
                 id="hpa scale-down window 300 s"),
    pytest.param(PolicyKind.HPA, "scale_up_percent", 100,
                 id="hpa scale-up 100 %"),
    pytest.param(PolicyKind.HPA, "scale_up_pods", 4,
                 id="hpa scale-up 4 pods"),
    pytest.param(PolicyKind.HPA, "tolerance", 0.1, id="hpa tolerance 0.1"),
    pytest.param(PolicyKind.KPA, "target_utilization", 0.7,
                 id="kpa utilisation 0.7"),
    pytest.param(PolicyKind.KPA, "stable_window_s", 60.0,
                 id="kpa stable window 60 s"),
    pytest.param(PolicyKind.KPA, "panic_window_percentage", 10.0,
                 id="kpa panic window 10 %"),
    pytest.param(PolicyKind.KPA, "panic_threshold_percentage",
                 200.0, id="kpa panic threshold 200 %"),
    pytest.param(PolicyKind.KPA, "max_scale_down_rate", 2.0,
                 id="kpa scale-down rate 2"),
    pytest.param(PolicyKind.PREDICTIVE, "headroom_quantile", 0.9,
                 id="predictive quantile 0.9"),
    pytest.param(PolicyKind.PREDICTIVE, "hold_s", 120,
                 id="predictive hold 120 s"),
    # Baselines' documented targets (sources in autoscaler.core.defaults).
    pytest.param(PolicyKind.HPA_QUEUE, "target", 5.0, id="hpa-queue 5 waiting per replica"),
    pytest.param(PolicyKind.HPA_KV, "target", 0.8, id="hpa-kv 80 % of the KV cache"),
    pytest.param(PolicyKind.HPA_RUNNING, "target", 10.0, id="hpa-running 10 running per replica"),
    pytest.param(PolicyKind.KEDA, "target", 5.0, id="keda 5 waiting per replica"),
    pytest.param(PolicyKind.WVA, "kv_cache_threshold", 0.8, id="wva token capacity 0.8 x KV"),
    pytest.param(PolicyKind.WVA, "scale_up_threshold", 0.85, id="wva scale up above 0.85"),
    pytest.param(PolicyKind.WVA, "band", 0.70 / 0.85, id="wva scale down below 0.70"),
])
def test_the_upstream_default_is_a_point_of_the_space(policy: PolicyKind, name: str,
                                                      upstream: float) -> None:
    (p,) = [p for p in SPACES[policy] if p.name == name]
    assert isinstance(p, FloatParam | IntParam)
    assert p.low <= upstream <= p.high
    if isinstance(p, IntParam):
        assert (upstream - p.low) % p.step == 0


# --- Winner selection ---------------------------------------------------------------------

def _c(i: int, gpu: float, att: float, events: int = 0, error: str | None = None) -> Candidate:
    return Candidate("hpa", i, {}, gpu_hours=gpu, attainment=att, scale_events=events,
                     error=error)


@pytest.mark.parametrize(("cands", "want", "feasible"), [
    pytest.param([_c(0, 5, 0.995), _c(1, 4, 0.99), _c(2, 3, 0.98)], 1, True,
                 id="cheapest of those at or above the target"),
    pytest.param([_c(0, 4, 0.99, events=9), _c(1, 4, 0.999, events=3)], 1, True,
                 id="equal GPU-hours: fewer scale events"),
    pytest.param([_c(0, 3, 0.95), _c(1, 9, 0.97), _c(2, 1, 0.5)], 1, False,
                 id="none feasible: highest attainment"),
    pytest.param([_c(0, 1, math.nan, error="bad"), _c(1, 6, 0.991)], 1, True,
                 id="failed candidates are ignored"),
])
def test_best_is_the_cheapest_feasible_candidate(cands: list[Candidate], want: int,
                                                 feasible: bool) -> None:
    best, ok = best_of(cands, 0.99)
    assert best is not None and best.index == want and ok is feasible


# --- Holdout split ------------------------------------------------------------------------

def test_request_level_split_keeps_every_request_once_and_rebases_the_held_out_part() -> None:
    trace = default_workload(seed=1, duration_s=SMALL_S)
    train, test = split_trace(trace, 0.25)
    assert test is not None and trace.arrivals_s is not None
    assert train.duration_s == pytest.approx(1800.0) and test.duration_s == pytest.approx(600.0)
    assert train.arrivals_s is not None and test.arrivals_s is not None
    assert len(train.arrivals_s) + len(test.arrivals_s) == len(trace.arrivals_s)
    assert train.arrivals_s.max() < 1800.0 <= trace.arrivals_s[len(train.arrivals_s)]
    np.testing.assert_allclose(test.arrivals_s + 1800.0, trace.arrivals_s[len(train.arrivals_s):])
    assert test.prompt_tokens is not None and trace.prompt_tokens is not None
    assert (test.prompt_tokens == trace.prompt_tokens[len(train.arrivals_s):]).all()


def test_rate_level_split_cuts_at_the_bin_edge_before_the_exact_cut() -> None:
    # 90 one-minute bins, holdout 0.25: the exact cut is 67.5 min, moved back to 67 min.
    rates = np.arange(90, dtype=np.float64)
    trace = Trace(name="r", duration_s=5400.0, rates_rps=rates, resolution_s=60.0)
    train, test = split_trace(trace, 0.25)
    assert test is not None and train.rates_rps is not None and test.rates_rps is not None
    assert train.duration_s == 67 * 60 and test.duration_s == 23 * 60
    assert train.rates_rps.tolist() == list(range(67))
    assert test.rates_rps.tolist() == list(range(67, 90))


def test_a_holdout_leaving_under_ten_minutes_names_the_flag() -> None:
    trace = default_workload(seed=1, duration_s=1800.0)
    with pytest.raises(SpecError, match="--holdout"):
        split_trace(trace, 0.25)  # 7.5 min held out


# --- Candidate lists and shards -----------------------------------------------------------

@given(st.integers(0, 60), st.integers(1, 9))
def test_shards_partition_the_candidate_list(n: int, shards: int) -> None:
    parts = [shard_slice(n, i, shards) for i in range(shards)]
    flat = sorted(x for p in parts for x in p)
    assert flat == list(range(n))


def test_the_candidate_list_depends_only_on_the_settings() -> None:
    s = TuneSettings(budget=5, seed=3)
    a, b = candidate_list(s), candidate_list(TuneSettings(budget=5, seed=3))
    # Budget 5 for each of the 8 tunable policies (predictive, hpa, kpa, hpa-queue, hpa-kv,
    # hpa-running, keda, wva): 5 x 8 = 40 candidates.
    assert a == b and len(a) == 40
    assert candidate_list(TuneSettings(budget=5, seed=4)) != a
    # A bigger budget extends the list without changing its start (Sobol prefix).
    longer = [c for c in candidate_list(TuneSettings(budget=7, seed=3))
              if c[0] == PolicyKind.HPA][:5]
    assert longer == [c for c in a if c[0] == PolicyKind.HPA]


def test_shard_runs_and_merge_equal_the_local_pool(tmp_path: Path) -> None:
    out = tmp_path / "shards"
    common = [*SMALL, "--attainment", "0.5", "--seed", "7"]
    for i in range(3):
        assert _cli(["tune", "shard", "--index", str(i), "--shards", "3", "--out", str(out),
                     *common]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"shard-000{i}-of-0003.json" for i in range(3)]
    merged, local = tmp_path / "merged.json", tmp_path / "local.json"
    spec_m, spec_l = tmp_path / "merged.yaml", tmp_path / "local.yaml"
    assert _cli(["tune", "merge", str(out), "--json", str(merged), "--emit-spec",
                 str(spec_m), "--report", str(tmp_path / "report")]) == 0
    assert _cli(["tune", *common, "--sweep", "--shards", "3", "--workers", "2", "--json",
                 str(local), "--emit-spec", str(spec_l)]) == 0
    doc_m, doc_l = json.loads(merged.read_text()), json.loads(local.read_text())
    assert doc_m == doc_l
    assert spec_m.read_text() == spec_l.read_text()
    assert all(len(p["candidates"]) == 4 for p in doc_m["policies"].values())
    assert (tmp_path / "report" / "index.html").exists()
    assert (tmp_path / "report" / "pareto.png").stat().st_size > 0

    # The emitted spec loads back equal to the winner rebuilt from its parameters, up to
    # what emitting does on purpose: floats rounded to 4 significant digits and the
    # sections the policy ignores left out (compared in the emitted form).
    winner = min((p for p in doc_m["policies"].values() if p["feasible"]),
                 key=lambda p: p["best"]["gpu_hours"])
    ctx = prepare(default_workload(seed=0, duration_s=SMALL_S), load_profile("llama3-8b-h100"),
                  TuneSettings(budget=4, attainment=0.5, seed=7, engine="fluid"))
    kind = PolicyKind(winner["best"]["policy"])
    from autoscaler.cli.tune import tidy_spec
    from autoscaler.config import spec_to_dict

    assert tidy_spec(spec_to_dict(load_spec(spec_m))) == tidy_spec(spec_to_dict(
        apply_params(ctx.base[kind], winner["best"]["params"])))


def test_merge_refuses_a_folder_with_a_missing_shard(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["tune", "shard", "--index", "0", "--shards", "2", "--out", str(tmp_path),
                 *SMALL, "--policy", "hpa", "--budget", "2"]) == 0
    assert _cli(["tune", "merge", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err


# --- The optuna search --------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_ctx_hpa() -> Any:
    return prepare(default_workload(seed=0, duration_s=SMALL_S), load_profile("llama3-8b-h100"),
                   TuneSettings(policies=(PolicyKind.HPA,), budget=3, engine="fluid",
                                attainment=0.9))


def test_search_resumes_from_its_journal_up_to_the_budget(tmp_path: Path,
                                                          small_ctx_hpa: Any) -> None:
    from dataclasses import replace

    store = tmp_path / "journal.log"
    seen: list[Candidate] = []
    first = search(small_ctx_hpa, storage=store, on_result=seen.append)
    assert len(first) == 3 and len(seen) == 3
    bigger = replace(small_ctx_hpa, settings=replace(small_ctx_hpa.settings, budget=5))
    seen.clear()
    second = search(bigger, storage=store, on_result=seen.append)
    assert len(seen) == 2, "only the two missing candidates are replayed"
    assert second[:3] == first and len(second) == 5
    seen.clear()
    assert search(bigger, storage=store, on_result=seen.append) == second and seen == []


def test_search_candidates_carry_the_replayed_figures(small_ctx_hpa: Any) -> None:
    from autoscaler.tuning import evaluate

    (c, *_) = search(small_ctx_hpa)
    again = evaluate(small_ctx_hpa, PolicyKind.HPA, c.index, c.params)
    assert (again.gpu_hours, again.attainment, again.scale_events) == (
        c.gpu_hours, c.attainment, c.scale_events)


# --- CLI input errors ---------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "flag", "allowed"), [
    pytest.param(["--policy", "oracle"], "--policy", "predictive, hpa, kpa",
                 id="unknown policy"),
    pytest.param(["--attainment", "0"], "--attainment", "> 0 and <= 1", id="attainment 0"),
    pytest.param(["--attainment", "1.5"], "--attainment", "> 0 and <= 1",
                 id="attainment above 1"),
    pytest.param(["--budget", "0"], "--budget", ">= 1", id="budget 0"),
    pytest.param(["--budget", "2.5"], "--budget", ">= 1", id="fractional budget"),
    pytest.param(["--holdout", "1"], "--holdout", ">= 0 and < 1", id="holdout 1"),
    pytest.param(["--workers", "0"], "--workers", ">= 1", id="no workers"),
    pytest.param(["--trace", "/nonexistent/trace.csv"], "/nonexistent/trace.csv",
                 "no such file", id="unreadable trace"),
])
def test_bad_input_is_one_line_naming_the_flag_and_the_allowed_range(
        flags: list[str], flag: str, allowed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["tune", *SMALL, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and allowed in err


def test_bad_settings_raise_an_autoscaler_error() -> None:
    args = _parser().parse_args(["tune", "--attainment", "-1"])
    with pytest.raises(AutoscalerError, match="--attainment"):
        settings_from_args(args)


# --- The Indexed Job ----------------------------------------------------------------------

def test_the_tune_job_is_an_indexed_job_whose_shard_args_the_cli_accepts() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "tune-job.yaml").read_text()))
    shards_job, merge_job = docs
    spec = shards_job["spec"]
    assert shards_job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert 1 <= spec["parallelism"] <= spec["completions"]
    (c,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    index_arg = c["args"][c["args"].index("--index") + 1]
    var = index_arg.removeprefix("$(").removesuffix(")")
    assert index_arg == f"$({var})" and var in env
    assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    # Every completion index expands to shard arguments the CLI parses and accepts.
    for i in (0, spec["completions"] - 1):
        argv = [a.replace(index_arg, str(i)) for a in c["args"]]
        args = _parser().parse_args(argv)
        assert args.tune_command == "shard" and int(args.index) == i
        assert int(args.shards) == spec["completions"]
        settings_from_args(args)
    # The merge reads the folder the shards write, and its arguments parse too.
    (m,) = merge_job["spec"]["template"]["spec"]["containers"]
    margs = _parser().parse_args(m["args"])
    assert margs.tune_command == "merge" and margs.dir == args.out
    wait = merge_job["spec"]["template"]["spec"]["initContainers"][0]["args"][0]
    assert f"-ge {spec['completions']}" in wait and shlex.split(wait)
