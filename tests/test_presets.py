"""Engine presets: real metric names, templates that render to one series per target,
custom presets that fail with a clear SpecError."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.core.types import Signal
from autoscaler.errors import SpecError
from autoscaler.metrics.presets import (
    PRESETS,
    check_template,
    combine,
    custom_preset,
    get_preset,
    render,
)

BY = "namespace, workload"
SELECTORS = ["", 'namespace=~"a|b",workload="x"']

ALL_TEMPLATES = [
    pytest.param(p.name, key, t, id=f"{p.name}-{key}")
    for p in PRESETS.values()
    for key, t in [*((str(s), q) for s, q in p.queries.items()), *p.extras.items()]
]


def _strip_strings(text: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)


def _balanced_reference(text: str) -> bool:
    """Obviously correct: delete innermost pairs until none is left."""
    s = re.sub(r"[^()\[\]{}]", "", _strip_strings(text))
    while True:
        t = s.replace("()", "").replace("[]", "").replace("{}", "")
        if t == s:
            return not s
        s = t


def _top_level_operands(expr: str) -> list[str]:
    """Split at binary operators (+ - * / or and unless) outside any bracket."""
    out, depth, cur = [], 0, ""
    tokens = re.split(r"(\s(?:\+|-|\*|/|or|and|unless)\s|[()\[\]{}])", _strip_strings(expr))
    for tok in tokens:
        if tok in ("(", "[", "{"):
            depth += 1
        elif tok in (")", "]", "}"):
            depth -= 1
        if depth == 0 and re.fullmatch(r"\s(?:\+|-|\*|/|or|and|unless)\s", tok or ""):
            out.append(cur)
            cur = ""
        else:
            cur += tok
    out.append(cur)
    return out


@pytest.mark.parametrize(("preset", "key", "template"), ALL_TEMPLATES)
@pytest.mark.parametrize("sel", SELECTORS, ids=["no-selector", "selector"])
def test_every_template_renders_balanced_and_groups_by_target(
        preset: str, key: str, template: str, sel: str) -> None:
    q = render(template, sel=sel, by=BY, window="2m")
    assert "$" not in q
    assert _balanced_reference(q)
    # Every operand that reads a metric is aggregated by the target labels, so the whole
    # expression has exactly one series per target.
    for operand in _top_level_operands(q):
        if re.search(r"[a-zA-Z_:][\w:]*\{", operand):
            assert f"by ({BY}" in operand, operand
    if "rate(" in q:
        assert "[2m]" in q


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_template_parses_with_the_real_promql_parser(tmp_path: Path) -> None:
    rules = []
    for i, p in enumerate(PRESETS.values()):
        for j, t in enumerate([*p.queries.values(), *p.extras.values()]):
            for k, sel in enumerate(SELECTORS):
                rules.append({"record": f"check:r{i}_{j}_{k}",
                              "expr": render(t, sel=sel, by=BY, window="1m")})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "presets", "rules": rules}]}))
    res = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# Names as the engines' sources spell them (see each preset's ``source``).
@pytest.mark.parametrize(("preset", "signal", "needle"), [
    pytest.param("vllm", Signal.QUEUE_DEPTH, "vllm:num_requests_waiting{", id="vllm-waiting"),
    pytest.param("vllm", Signal.RUNNING, "vllm:num_requests_running{", id="vllm-running"),
    pytest.param("vllm", Signal.KV_CACHE_USAGE, "vllm:kv_cache_usage_perc{", id="vllm-kv-new"),
    pytest.param("vllm", Signal.KV_CACHE_USAGE, "or avg by ($by) (vllm:gpu_cache_usage_perc{",
                 id="vllm-kv-fallback"),
    pytest.param("vllm", Signal.REQUEST_RATE, "rate(vllm:time_to_first_token_seconds_count{",
                 id="vllm-rate-from-ttft-count"),
    pytest.param("vllm", Signal.PROMPT_TOKENS_RATE, "rate(vllm:prompt_tokens_total{",
                 id="vllm-prompt"),
    pytest.param("vllm", Signal.TTFT_P95,
                 "histogram_quantile(0.95, sum by ($by, le) (rate("
                 "vllm:time_to_first_token_seconds_bucket{", id="vllm-ttft"),
    pytest.param("sglang", Signal.QUEUE_DEPTH, "sglang:num_queue_reqs{", id="sglang-queue"),
    pytest.param("sglang", Signal.RUNNING, "sglang:num_running_reqs{", id="sglang-running"),
    pytest.param("sglang", Signal.KV_CACHE_USAGE, "sglang:token_usage{", id="sglang-kv"),
    pytest.param("sglang", Signal.GENERATION_TOKENS_RATE, "rate(sglang:generation_tokens_total{",
                 id="sglang-gen"),
    pytest.param("tgi", Signal.QUEUE_DEPTH, "tgi_queue_size{", id="tgi-queue"),
    pytest.param("tgi", Signal.RUNNING, "tgi_batch_current_size{", id="tgi-batch"),
    pytest.param("tgi", Signal.REQUEST_RATE, "rate(tgi_request_count{", id="tgi-count"),
    pytest.param("triton", Signal.QUEUE_DEPTH, "nv_inference_pending_request_count{",
                 id="triton-pending"),
    pytest.param("triton", Signal.REQUEST_RATE, "rate(nv_inference_request_success{",
                 id="triton-success"),
    pytest.param("triton", Signal.TTFT_P50, "nv_inference_first_response_histogram_ms_bucket{",
                 id="triton-first-response"),
    pytest.param("tensorrt-llm", Signal.QUEUE_DEPTH, "trtllm_server_queue_length{",
                 id="trtllm-serve-queue"),
    pytest.param("tensorrt-llm", Signal.TTFT_P99, "trtllm_time_to_first_token_seconds_bucket{",
                 id="trtllm-serve-ttft"),
    pytest.param("tensorrt-llm-triton", Signal.QUEUE_DEPTH,
                 'nv_trt_llm_request_metrics{request_type="waiting",', id="trtllm-waiting"),
    pytest.param("tensorrt-llm-triton", Signal.KV_CACHE_USAGE,
                 'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",',
                 id="trtllm-kv-fraction"),
    pytest.param("dcgm", Signal.GPU_UTILIZATION, "DCGM_FI_DEV_GPU_UTIL{", id="dcgm-util"),
])
def test_presets_use_the_engines_own_metric_names(preset: str, signal: Signal,
                                                  needle: str) -> None:
    assert needle in get_preset(preset).queries[signal]


def test_triton_queue_duration_counter_is_rated_and_divided_by_the_success_rate() -> None:
    q = get_preset("triton").extras["mean_queue_time_s"]
    assert "rate(nv_inference_queue_duration_us{$sel}[$window])" in q
    assert "/ sum by ($by) (rate(nv_inference_request_success{$sel}[$window]))" in q
    assert q.endswith("/ 1e6")  # microseconds to seconds


def test_triton_first_response_quantiles_are_converted_from_milliseconds() -> None:
    for s in (Signal.TTFT_P50, Signal.TTFT_P95, Signal.TTFT_P99):
        assert get_preset("triton").queries[s].endswith(" / 1000")


def test_dcgm_utilisation_percent_becomes_a_fraction() -> None:
    assert get_preset("dcgm").queries[Signal.GPU_UTILIZATION].endswith(" / 100")


@pytest.mark.parametrize(("preset", "absent"), [
    pytest.param("tgi", {Signal.TTFT_P50, Signal.TTFT_P95, Signal.TTFT_P99,
                         Signal.GPU_UTILIZATION}, id="tgi-has-no-ttft-histogram"),
    pytest.param("triton", {Signal.KV_CACHE_USAGE, Signal.PROMPT_TOKENS_RATE},
                 id="triton-has-no-kv-or-tokens"),
    pytest.param("dcgm", set(Signal) - {Signal.GPU_UTILIZATION}, id="dcgm-is-gpu-only"),
    pytest.param("vllm", {Signal.GPU_UTILIZATION}, id="vllm-has-no-gpu-util"),
])
def test_signals_an_engine_does_not_export_are_absent(preset: str,
                                                      absent: set[Signal]) -> None:
    assert not absent & set(get_preset(preset).queries)


def test_every_preset_says_where_its_names_were_checked() -> None:
    for p in PRESETS.values():
        assert re.search(r"[\w-]+/[\w.-]+ \S+", p.source), p.name
        assert re.fullmatch(r"[a-zA-Z_:][\w:]*", p.liveness_metric), p.name


def test_engine_plus_dcgm_adds_gpu_utilisation_and_keeps_the_engines_liveness() -> None:
    p = get_preset("vllm+dcgm")
    assert p.queries[Signal.GPU_UTILIZATION] == PRESETS["dcgm"].queries[Signal.GPU_UTILIZATION]
    assert p.queries[Signal.QUEUE_DEPTH] == PRESETS["vllm"].queries[Signal.QUEUE_DEPTH]
    assert p.liveness_metric == "vllm:num_requests_running"
    assert p.name == "vllm+dcgm"


def test_combining_keeps_the_first_presets_query_where_both_have_one() -> None:
    p = combine(PRESETS["triton"], PRESETS["dcgm"])
    assert "nv_gpu_utilization" in p.queries[Signal.GPU_UTILIZATION]


@pytest.mark.parametrize("name", [
    pytest.param("vllm2", id="unknown"),
    pytest.param("vllm+nope", id="unknown-part"),
    pytest.param("", id="empty"),
])
def test_an_unknown_preset_is_a_spec_error_listing_the_known_ones(name: str) -> None:
    with pytest.raises(SpecError) as err:
        get_preset(name)
    assert err.value.field == "preset"
    assert "sglang" in err.value.allowed and "tensorrt-llm" in err.value.allowed


# --- custom presets -------------------------------------------------------------------

GOOD = "sum by ($by) (my_queue{$sel})"


def test_a_custom_preset_maps_signal_names_to_templates() -> None:
    p = custom_preset({"queue_depth": GOOD,
                       "ttft_p95_s": 'histogram_quantile(0.95, sum by ($by, le) '
                                     '(rate(my_ttft_bucket{job="x",$sel}[$window])))'},
                      liveness_metric="my_queue", notes={"queue_depth": "mine"})
    assert p.queries[Signal.QUEUE_DEPTH] == GOOD
    assert p.notes[Signal.QUEUE_DEPTH] == "mine"
    assert render(p.queries[Signal.TTFT_P95], sel='namespace="a"', by=BY, window="1m") == (
        'histogram_quantile(0.95, sum by (namespace, workload, le) '
        '(rate(my_ttft_bucket{job="x",namespace="a"}[1m])))')


@pytest.mark.parametrize(("queries", "liveness", "field", "hint"), [
    pytest.param({"queue": GOOD}, "q", "queries.queue", "queue_depth", id="unknown-signal"),
    pytest.param({}, "q", "queries", "at least one", id="empty"),
    pytest.param({"queue_depth": "sum by ($by) (q{$sel}"}, "q", "queries.queue_depth",
                 "not closed", id="unclosed-paren"),
    pytest.param({"queue_depth": "sum by ($by) (q{$sel]))"}, "q", "queries.queue_depth",
                 "unexpected", id="mismatched-bracket"),
    pytest.param({"queue_depth": "sum(q{$sel})"}, "q", "queries.queue_depth", "by ($by)",
                 id="no-grouping"),
    pytest.param({"queue_depth": "sum by (namespace) (q{$sel})"}, "q", "queries.queue_depth",
                 "by ($by)", id="hard-coded-grouping"),
    pytest.param({"queue_depth": "sum by ($by) (q{$sel,x=\"a})"}, "q", "queries.queue_depth",
                 "string", id="open-string"),
    pytest.param({"queue_depth": "sum by ($by) (q{$selector})"}, "q", "queries.queue_depth",
                 "$sel, $by and $window", id="unknown-placeholder"),
    pytest.param({"queue_depth": "  "}, "q", "queries.queue_depth", "non-empty", id="blank"),
    pytest.param({"queue_depth": GOOD}, "my queue", "livenessMetric", "bare metric name",
                 id="bad-liveness"),
])
def test_a_bad_custom_preset_names_the_field_and_what_is_allowed(
        queries: dict[str, str], liveness: str, field: str, hint: str) -> None:
    with pytest.raises(SpecError) as err:
        custom_preset(queries, liveness_metric=liveness)
    assert err.value.field == field
    assert hint in err.value.allowed


def test_brackets_inside_string_literals_do_not_count() -> None:
    check_template('sum by ($by) (q{$sel,path="/a(b]{"})')


@given(st.text(alphabet="()[]{}ab", max_size=12))
def test_the_bracket_check_agrees_with_a_reference(inner: str) -> None:
    template = f"sum by ($by) (q{{$sel}}) * count({inner})"
    if _balanced_reference(template):
        check_template(template)
    else:
        with pytest.raises(SpecError):
            check_template(template)
