"""Metric presets: the real metric names each serving engine exports, as PromQL templates.

A preset maps each ``Signal`` the core understands to one PromQL template that returns one
series *per target* for all targets at once: every template aggregates ``by ($by)``, the
labels that identify a target (``namespace`` and the workload label), so a control cycle
costs one query per signal however many targets there are (1,000 targets are still ~10
queries, not 10,000).

Templates use ``string.Template`` placeholders, because PromQL is full of braces:

* ``$sel``: the label matchers inside a selector's braces (``namespace=~"a|b"``), may be empty
  (``metric{}`` is valid PromQL when the metric name is given). A template may put its own
  matchers first, ``metric{request_type="waiting",$sel}``: PromQL accepts the trailing comma
  that an empty ``$sel`` leaves;
* ``$by``: the grouping labels, ``namespace, workload`` by default;
* ``$window``: the range of ``rate()``, e.g. ``1m``.

Each preset also names a *liveness* gauge: ``max by ($by) (timestamp(gauge{$sel}))`` gives
the newest sample time per target (staleness) and ``count by ($by) (gauge{$sel})`` the
number of pods reporting (partial results).

Every metric name below was checked against the engine's own source; ``Preset.source`` says
which file at which version, ``Preset.notes`` what a query converts. A signal an engine does
not export is absent from its preset (absent is never zero). ``get_preset("vllm+dcgm")``
combines an engine preset with the GPU-only DCGM preset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from string import Template

from autoscaler.core.types import Signal
from autoscaler.errors import SpecError


@dataclass(frozen=True, slots=True)
class Preset:
    """The PromQL of one serving engine (or a fully custom set)."""

    name: str
    description: str
    queries: Mapping[Signal, str]
    """Signal -> PromQL template (placeholders ``$sel``, ``$by``, ``$window``)."""
    liveness_metric: str
    """A per-pod gauge every replica exports while it runs (staleness and pod count)."""
    source: str = ""
    """Where the metric names were checked (engine source file and version)."""
    notes: Mapping[Signal, str] = field(default_factory=dict)
    """Per-signal remarks shown by ``autoscaler metrics show`` (e.g. a counter that is
    rated, a unit conversion)."""
    extras: Mapping[str, str] = field(default_factory=dict)
    """Informational templates the core does not consume (e.g. Triton's mean queue time),
    name -> PromQL template with the same placeholders, shown by ``metrics show``."""


def render(template: str, *, sel: str, by: str, window: str) -> str:
    """Fill a template; a placeholder the template does not know is a spec error."""
    try:
        return Template(template).substitute(sel=sel, by=by, window=window)
    except (KeyError, ValueError) as exc:
        raise SpecError("query", template, "a PromQL template using only $sel, $by and "
                        "$window (write $$ for a literal dollar)") from exc


_QUANTILE_PREFIX = "histogram_quantile("


def split_quantile(text: str) -> tuple[float, str] | None:
    """``(q, X)`` when ``text`` is exactly ``histogram_quantile(q, X)``: a quantile the live
    collector derives from the buckets it fetches (``X``, shared by p50, p95 and p99), so it
    knows which bucket each quantile fell in. None for anything else (``... / 1000``, a
    custom expression): Prometheus computes it, and the bucket is unknown."""
    stripped = text.strip()
    if not stripped.startswith(_QUANTILE_PREFIX) or not stripped.endswith(")"):
        return None
    head, sep, rest = stripped.removeprefix(_QUANTILE_PREFIX).partition(",")
    inner = rest.strip()[:-1].strip()
    try:
        q = float(head)
    except ValueError:
        return None
    if not (sep and inner and 0 <= q <= 1 and _balanced(inner)):
        return None
    return q, inner


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _quantile(q: float, histogram: str, *, extra: str = "", scale: str = "") -> str:
    """``histogram_quantile`` over the per-target sum of bucket rates. ``extra`` are matchers
    put before ``$sel``; ``scale`` a suffix such as `` / 1000`` for a unit conversion."""
    matchers = f"{extra},$sel" if extra else "$sel"
    return (f"histogram_quantile({q}, sum by ($by, le) "
            f"(rate({histogram}_bucket{{{matchers}}}[$window]))){scale}")


def _quantiles(histogram: str, *, extra: str = "", scale: str = "") -> dict[Signal, str]:
    return {
        Signal.TTFT_P50: _quantile(0.5, histogram, extra=extra, scale=scale),
        Signal.TTFT_P95: _quantile(0.95, histogram, extra=extra, scale=scale),
        Signal.TTFT_P99: _quantile(0.99, histogram, extra=extra, scale=scale),
    }


def _sum(metric: str, extra: str = "") -> str:
    matchers = f"{extra},$sel" if extra else "$sel"
    return f"sum by ($by) ({metric}{{{matchers}}})"


def _rate(metric: str, extra: str = "") -> str:
    matchers = f"{extra},$sel" if extra else "$sel"
    return f"sum by ($by) (rate({metric}{{{matchers}}}[$window]))"


VLLM = Preset(
    name="vllm",
    description="vLLM (V1 engine) /metrics",
    queries={
        Signal.QUEUE_DEPTH: _sum("vllm:num_requests_waiting"),
        Signal.RUNNING: _sum("vllm:num_requests_running"),
        Signal.CONCURRENCY: (f"{_sum('vllm:num_requests_waiting')} + "
                             f"{_sum('vllm:num_requests_running')}"),
        # vLLM 0.9 renamed gpu_cache_usage_perc to kv_cache_usage_perc and kept the old name
        # as a deprecated alias; `or` takes the new name per target and falls back to the
        # old one where only that exists (vLLM < 0.9).
        Signal.KV_CACHE_USAGE: ("avg by ($by) (vllm:kv_cache_usage_perc{$sel}) or "
                                "avg by ($by) (vllm:gpu_cache_usage_perc{$sel})"),
        # vLLM counts no arrivals. The TTFT histogram's count grows when a request gets its
        # first token; vllm:request_success_total only when it *finishes*, an end-to-end
        # latency (tens of seconds for long outputs) later. The TTFT count is therefore the
        # closer arrival proxy: equal to arrivals while the fleet keeps up, lagging them
        # under a backlog, which queue_depth then shows.
        Signal.REQUEST_RATE: _rate("vllm:time_to_first_token_seconds_count"),
        Signal.PROMPT_TOKENS_RATE: _rate("vllm:prompt_tokens_total"),
        Signal.GENERATION_TOKENS_RATE: _rate("vllm:generation_tokens_total"),
        **_quantiles("vllm:time_to_first_token_seconds"),
    },
    liveness_metric="vllm:num_requests_running",
    source=("vllm-project/vllm vllm/v1/metrics/loggers.py @ 005a810bc40f "
            "(PrometheusStatLogger; labels model_name, engine)"),
    notes={
        Signal.REQUEST_RATE: "rate of the TTFT histogram count: requests that got a first "
                             "token (vLLM has no arrival counter)",
        Signal.KV_CACHE_USAGE: "kv_cache_usage_perc (vLLM >= 0.9), else the deprecated "
                               "gpu_cache_usage_perc; both are fractions 0..1",
    },
    extras={
        "mean_queue_time_s": ("sum by ($by) (rate(vllm:request_queue_time_seconds_sum{$sel}"
                              "[$window])) / sum by ($by) (rate("
                              "vllm:request_queue_time_seconds_count{$sel}[$window]))"),
    },
)

SGLANG = Preset(
    name="sglang",
    description="SGLang runtime /metrics (--enable-metrics)",
    queries={
        Signal.QUEUE_DEPTH: _sum("sglang:num_queue_reqs"),
        Signal.RUNNING: _sum("sglang:num_running_reqs"),
        Signal.CONCURRENCY: (f"{_sum('sglang:num_queue_reqs')} + "
                             f"{_sum('sglang:num_running_reqs')}"),
        Signal.KV_CACHE_USAGE: "avg by ($by) (sglang:token_usage{$sel})",
        # Like vLLM: sglang:num_requests_total grows when a request finishes; the TTFT
        # histogram count when it gets its first token, the earlier of the two.
        Signal.REQUEST_RATE: _rate("sglang:time_to_first_token_seconds_count"),
        Signal.PROMPT_TOKENS_RATE: _rate("sglang:prompt_tokens_total"),
        Signal.GENERATION_TOKENS_RATE: _rate("sglang:generation_tokens_total"),
        **_quantiles("sglang:time_to_first_token_seconds"),
    },
    liveness_metric="sglang:num_running_reqs",
    source=("sgl-project/sglang python/sglang/srt/metrics/collector.py @ 00ae9c1590d2 "
            "(SchedulerMetricsCollector, TokenizerMetricsCollector; label model_name)"),
    notes={
        Signal.KV_CACHE_USAGE: "sglang:token_usage: used KV-pool tokens / pool size, 0..1",
        Signal.REQUEST_RATE: "rate of the TTFT histogram count (first tokens)",
        Signal.PROMPT_TOKENS_RATE: "counted when a request finishes",
        Signal.TTFT_P95: "default TTFT buckets 0.1 .. 400 s (18 bounds): quantiles below "
                         "0.1 s read as at most 0.1 s",
    },
)

TGI = Preset(
    name="tgi",
    description="Hugging Face text-generation-inference router /metrics",
    queries={
        Signal.QUEUE_DEPTH: _sum("tgi_queue_size"),
        Signal.RUNNING: _sum("tgi_batch_current_size"),
        Signal.CONCURRENCY: f"{_sum('tgi_queue_size')} + {_sum('tgi_batch_current_size')}",
        # Tokens reserved by the running batch over the shard's token budget: the KV share.
        Signal.KV_CACHE_USAGE: ("avg by ($by) (tgi_batch_current_max_tokens{$sel} / "
                                "tgi_batch_max_total_tokens{$sel})"),
        # tgi_request_count grows on arrival (before validation): a true arrival counter.
        Signal.REQUEST_RATE: _rate("tgi_request_count"),
        Signal.PROMPT_TOKENS_RATE: _rate("tgi_request_input_length_sum"),
        Signal.GENERATION_TOKENS_RATE: _rate("tgi_request_generated_tokens_sum"),
    },
    liveness_metric="tgi_queue_size",
    source=("huggingface/text-generation-inference router/src/server.rs, "
            "backends/v3/src/{queue,backend,lib}.rs @ db931fcf42da (v3.3.7+; "
            "metrics-exporter-prometheus 0.15: counters keep their name, no _total)"),
    notes={
        Signal.REQUEST_RATE: "tgi_request_count is incremented on arrival",
        Signal.KV_CACHE_USAGE: "tgi_batch_current_max_tokens / tgi_batch_max_total_tokens",
        Signal.PROMPT_TOKENS_RATE: "rate of the input-length histogram's _sum (recorded "
                                   "at validation, i.e. on arrival)",
        Signal.GENERATION_TOKENS_RATE: "rate of the generated-tokens histogram's _sum "
                                       "(recorded when a request finishes)",
    },
    extras={
        # TGI has no TTFT histogram; its queue-duration histogram is the wait before the
        # first batch (buckets 1.5e-4 x 1.5^k s). It is not TTFT (prefill comes on top).
        "queue_p95_s": _quantile(0.95, "tgi_request_queue_duration"),
    },
)

_TRITON_QUEUE_MEAN = (
    "sum by ($by) (rate(nv_inference_queue_duration_us{$sel}[$window])) / "
    "sum by ($by) (rate(nv_inference_request_success{$sel}[$window])) / 1e6")

TRITON = Preset(
    name="triton",
    description="NVIDIA Triton Inference Server /metrics (port 8002)",
    queries={
        Signal.QUEUE_DEPTH: _sum("nv_inference_pending_request_count"),
        Signal.REQUEST_RATE: _rate("nv_inference_request_success"),
        Signal.GPU_UTILIZATION: "avg by ($by) (nv_gpu_utilization{$sel})",
        # Only with --metrics-config histogram_latencies=true, for decoupled (streaming)
        # models; default buckets 100, 500, 2000, 5000 ms, so quantiles are coarse.
        **_quantiles("nv_inference_first_response_histogram_ms", scale=" / 1000"),
    },
    liveness_metric="nv_inference_pending_request_count",
    source=("triton-inference-server/core src/metrics.cc, src/metric_model_reporter.{cc,h}, "
            "src/constants.h @ 73aad7c3348d (labels model, version)"),
    notes={
        Signal.REQUEST_RATE: "nv_inference_request_success counts requests at completion",
        Signal.GPU_UTILIZATION: "nv_gpu_utilization is already a fraction 0..1 (per GPU)",
        Signal.TTFT_P95: "nv_inference_first_response_histogram_ms / 1000; opt-in "
                         "(histogram_latencies=true), buckets 100/500/2000/5000 ms",
    },
    extras={
        # nv_inference_queue_duration_us is a cumulative counter of queue microseconds:
        # its rate over the rate of successes is the mean queue time per request.
        "mean_queue_time_s": _TRITON_QUEUE_MEAN,
    },
)

TENSORRT_LLM = Preset(
    name="tensorrt-llm",
    description="TensorRT-LLM trtllm-serve /prometheus/metrics",
    queries={
        Signal.QUEUE_DEPTH: _sum("trtllm_server_queue_length"),
        Signal.RUNNING: _sum("trtllm_num_active_requests"),
        Signal.CONCURRENCY: (f"{_sum('trtllm_server_queue_length')} + "
                             f"{_sum('trtllm_num_active_requests')}"),
        Signal.KV_CACHE_USAGE: "avg by ($by) (trtllm_kv_cache_utilization{$sel})",
        Signal.REQUEST_RATE: _rate("trtllm_request_success_total"),
        Signal.PROMPT_TOKENS_RATE: _rate("trtllm_prompt_tokens_total"),
        **_quantiles("trtllm_time_to_first_token_seconds"),
    },
    liveness_metric="trtllm_num_active_requests",
    source=("NVIDIA/TensorRT-LLM tensorrt_llm/metrics/collector.py (newest stored version, "
            "metric_prefix 'trtllm_'; labels model_name, engine_type)"),
    notes={
        Signal.REQUEST_RATE: "trtllm_request_success_total and every per-request histogram "
                             "are recorded when a request finishes",
        Signal.KV_CACHE_USAGE: "usedNumBlocks / maxNumBlocks (needs enable_iter_perf_stats)",
    },
)

TENSORRT_LLM_TRITON = Preset(
    name="tensorrt-llm-triton",
    description="TensorRT-LLM behind Triton (tensorrtllm_backend custom metrics)",
    queries={
        Signal.QUEUE_DEPTH: _sum("nv_trt_llm_request_metrics", 'request_type="waiting"'),
        Signal.RUNNING: _sum("nv_trt_llm_request_metrics", 'request_type="scheduled"'),
        Signal.CONCURRENCY: _sum("nv_trt_llm_request_metrics", 'request_type="active"'),
        Signal.KV_CACHE_USAGE: ('avg by ($by) (nv_trt_llm_kv_cache_block_metrics'
                                '{kv_cache_block_type="fraction",$sel})'),
        Signal.REQUEST_RATE: _rate("nv_inference_request_success", 'model="tensorrt_llm"'),
        Signal.PROMPT_TOKENS_RATE: _rate("nv_llm_input_token_len_sum",
                                         'response_metric_type="total_input_tokens"'),
        Signal.GENERATION_TOKENS_RATE: _rate("nv_llm_output_token_len_sum",
                                             'response_metric_type="total_output_tokens"'),
        Signal.GPU_UTILIZATION: "avg by ($by) (nv_gpu_utilization{$sel})",
    },
    liveness_metric="nv_inference_pending_request_count",
    source=("NVIDIA/TensorRT-LLM triton_backend/inflight_batcher_llm/src/"
            "custom_metrics_reporter/custom_metrics_reporter.cc @ 0d5352f5fc5f, plus "
            "triton-inference-server/core src/metrics.cc @ 73aad7c3348d"),
    notes={
        Signal.REQUEST_RATE: 'nv_inference_request_success{model="tensorrt_llm"}: only the '
                             "TRT-LLM model of the ensemble, so requests are not counted "
                             "once per ensemble step",
        Signal.CONCURRENCY: 'request_type="active": requests the executor holds',
        Signal.KV_CACHE_USAGE: 'kv_cache_block_type="fraction": used / max blocks',
    },
    extras={"mean_queue_time_s": _TRITON_QUEUE_MEAN},
)

DCGM = Preset(
    name="dcgm",
    description="NVIDIA dcgm-exporter GPU metrics only (combine: --preset vllm+dcgm)",
    queries={
        # DCGM_FI_DEV_GPU_UTIL is a percent 0..100, per GPU.
        Signal.GPU_UTILIZATION: "avg by ($by) (DCGM_FI_DEV_GPU_UTIL{$sel}) / 100",
    },
    liveness_metric="DCGM_FI_DEV_GPU_UTIL",
    source=("NVIDIA/dcgm-exporter etc/default-counters.csv @ d5e5f510a1b6 (4.5.3-4.8.2; "
            "labels gpu, UUID, device, modelName, Hostname; pod, namespace, container with "
            "the Kubernetes pod mapping)"),
    notes={
        Signal.GPU_UTILIZATION: "DCGM_FI_DEV_GPU_UTIL / 100 (percent to fraction); its "
                                "pod/namespace labels name the GPU's pod, the workload label "
                                "must come from relabelling",
    },
)

PRESETS: dict[str, Preset] = {
    p.name: p for p in (VLLM, SGLANG, TGI, TRITON, TENSORRT_LLM, TENSORRT_LLM_TRITON, DCGM)}


def get_preset(name: str) -> Preset:
    """A built-in preset by name, or several joined by ``+`` (``vllm+dcgm``): the first one
    gives the liveness gauge, later ones add the signals the earlier ones lack."""
    parts = [p.strip() for p in name.split("+")]
    found: list[Preset] = []
    for part in parts:
        try:
            found.append(PRESETS[part])
        except KeyError:
            raise SpecError("preset", name, f"one of {', '.join(sorted(PRESETS))}, or "
                            "several joined by '+' (vllm+dcgm)") from None
    return found[0] if len(found) == 1 else combine(*found)


def combine(first: Preset, *more: Preset) -> Preset:
    """``first`` with the signals only ``more`` have (``first`` wins where both have one)."""
    queries: dict[Signal, str] = dict(first.queries)
    notes: dict[Signal, str] = dict(first.notes)
    extras: dict[str, str] = dict(first.extras)
    for p in more:
        for signal, template in p.queries.items():
            if signal not in queries:
                queries[signal] = template
                if signal in p.notes:
                    notes[signal] = p.notes[signal]
        for key, template in p.extras.items():
            extras.setdefault(key, template)
    presets = (first, *more)
    return Preset(
        name="+".join(p.name for p in presets),
        description=" + ".join(p.description for p in presets),
        queries=queries, liveness_metric=first.liveness_metric,
        source="; ".join(p.source for p in presets if p.source),
        notes=notes, extras=extras,
    )


# --- custom presets -------------------------------------------------------------------

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PAIRS = {")": "(", "]": "[", "}": "{"}


def check_template(template: str, *, field_name: str = "query") -> None:
    """Reject a template that cannot give one series per target: unknown placeholders,
    unbalanced ``()[]{}`` (outside string literals), or no ``by ($by ...)`` grouping.

    This is a syntax screen, not a PromQL parser: Prometheus still has the last word, and
    the collector names the query when it refuses one.
    """
    if not isinstance(template, str) or not template.strip():
        raise SpecError(field_name, template, "a non-empty PromQL template")
    try:
        render(template, sel="", by="namespace, workload", window="1m")
    except SpecError as exc:
        raise SpecError(field_name, template, exc.allowed) from exc
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(template):
        if quote is not None:  # inside "..." or '...' or `...`: brackets do not count
            if escaped:
                escaped = False
            elif ch == "\\" and quote != "`":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}" and (not stack or stack.pop() != _PAIRS[ch]):
            raise SpecError(field_name, template,
                            f"balanced brackets (unexpected {ch!r} at offset {i})")
    if quote is not None:
        raise SpecError(field_name, template, f"closed string literals (open {quote})")
    if stack:
        raise SpecError(field_name, template, f"balanced brackets ({stack[-1]!r} not closed)")
    if not re.search(r"\bby\s*\(\s*\$(\{by\}|by\b)", template):
        raise SpecError(field_name, template, "a query that aggregates `by ($by)` (one "
                        "series per target; $by is the target's grouping labels)")


def custom_preset(
    queries: Mapping[str, str],
    *,
    liveness_metric: str,
    name: str = "custom",
    description: str = "custom PromQL",
    source: str = "",
    notes: Mapping[str, str] | None = None,
) -> Preset:
    """A preset from a mapping of signal name (``queue_depth``, ``ttft_p95_s``, ...) to a
    PromQL template. Every name and template is checked; the first problem is a
    ``SpecError`` naming ``queries.<signal>``."""
    allowed = ", ".join(s.value for s in Signal)
    if not queries:
        raise SpecError("queries", dict(queries), f"at least one of {allowed}")
    out: dict[Signal, str] = {}
    for key, template in queries.items():
        try:
            signal = Signal(key)
        except ValueError:
            raise SpecError(f"queries.{key}", key, f"a signal name: {allowed}") from None
        check_template(template, field_name=f"queries.{key}")
        out[signal] = template
    if not isinstance(liveness_metric, str) or not _METRIC_NAME.fullmatch(liveness_metric):
        raise SpecError("livenessMetric", liveness_metric,
                        "a bare metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) of a per-pod gauge")
    note_map: dict[Signal, str] = {}
    for key, text in (notes or {}).items():
        try:
            note_map[Signal(key)] = text
        except ValueError:
            raise SpecError(f"notes.{key}", key, f"a signal name: {allowed}") from None
    return Preset(name=name, description=description, queries=out,
                  liveness_metric=liveness_metric, source=source, notes=note_map)
