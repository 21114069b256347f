"""The /metrics exposition of each serving engine, as the twin writes it.

For each preset the twin exports the families that preset queries (plus the engine's
neighbours of them), with the engine's own names, types, label names and histogram bucket
bounds, checked in the same source files as ``autoscaler.metrics.presets`` names. Every
series also carries ``pod``, ``namespace`` and ``workload`` so that a Prometheus scraping
with ``honor_labels: true`` groups it by target.

Families are built as ``prometheus_client`` ``Metric`` objects (what a custom Collector
yields) and written by ``render_text``. Not ``generate_latest``: that one always adds
``_total`` to a counter's name on its ``# TYPE`` line, while Triton (prometheus-cpp) and TGI
(metrics-rs) export counters without the suffix (``nv_inference_request_success``,
``tgi_request_count``), and the exposition must be the engine's.

Simplifications, by design: TTFT histograms are re-binned exactly into the engine's bounds
from the fluid engine's per-tick TTFT; token-length histograms put every request in the
bucket of the mean token count (the fluid engine simulates means); ``_created`` series that
prometheus_client engines add are left out.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString as _untyped_go_float

from autoscaler.errors import SpecError
from autoscaler.sim.fleet import TTFT_BUCKETS_S

Labels = dict[str, str]

_go_float = cast(Callable[[float], str], _untyped_go_float)
"""prometheus_client's number format (``1.0``, ``1.234567e+06``, ``+Inf``), untyped there."""

SGLANG_TTFT_BUCKETS_S: tuple[float, ...] = (
    0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
"""sglang:time_to_first_token_seconds default bounds (TokenizerMetricsCollector)."""
TRITON_FIRST_RESPONSE_BUCKETS_MS: tuple[float, ...] = (100, 500, 2000, 5000)
"""nv_inference_first_response_histogram_ms default bounds (metric_model_reporter.h)."""
TRTLLM_TOKEN_LEN_BUCKETS: tuple[float, ...] = (10.0, 50.0, 100.0, 500.0, 1000.0)
"""nv_llm_input_token_len / nv_llm_output_token_len bounds (custom_metrics_reporter.cc)."""
TGI_MAX_INPUT_TOKENS = 4096
TGI_MAX_TOTAL_TOKENS = 8192
"""TGI's token-length buckets are 100 equal steps up to these launcher settings."""
TRTLLM_TOKENS_PER_BLOCK = 64


@dataclass(frozen=True, slots=True)
class EngineContext:
    """What the exposition needs from the replica profile and the workload."""

    model: str
    kv_cache_tokens: int
    max_num_seqs: int
    gpus_per_replica: int
    mean_prompt_tokens: float
    mean_output_tokens: float


@dataclass(frozen=True, slots=True)
class PodView:
    """One ready pod's exported values at the time of a scrape."""

    labels: Labels
    """``pod``, ``namespace``, ``workload``."""
    arrivals: float
    success: float
    prompt_tokens: float
    generation_tokens: float
    queue_us: float
    ttft_buckets: tuple[float, ...]
    """Non-cumulative counts per bound of the exposition's TTFT bounds, then +Inf."""
    ttft_sum_s: float
    waiting: float
    running: float
    kv_usage: float
    gpu_util: float


def _labels(*parts: Labels) -> Labels:
    out: Labels = {}
    for p in parts:
        out.update(p)
    return out


def _simple(name: str, doc: str, typ: str, pods: Sequence[PodView], const: Labels,
            value: Callable[[PodView], float]) -> Metric:
    m = Metric(name, doc, typ)
    for pv in pods:
        m.add_sample(name, _labels(const, pv.labels), float(value(pv)))
    return m


def _histogram(name: str, doc: str, pods: Sequence[PodView], const: Labels,
               bounds: Sequence[float],
               buckets: Callable[[PodView], Sequence[float]],
               total: Callable[[PodView], float]) -> Metric:
    """``buckets`` gives non-cumulative counts per bound plus +Inf; written cumulative."""
    m = Metric(name, doc, "histogram")
    les = [_go_float(b) for b in bounds] + ["+Inf"]
    for pv in pods:
        base = _labels(const, pv.labels)
        cum = 0.0
        for le, c in zip(les, buckets(pv), strict=True):
            cum += c
            m.add_sample(name + "_bucket", _labels(base, {"le": le}), cum)
        m.add_sample(name + "_count", base, cum)
        m.add_sample(name + "_sum", base, float(total(pv)))
    return m


def _one_bucket(bounds: Sequence[float], value: float,
                count: Callable[[PodView], float]) -> Callable[[PodView], list[float]]:
    """All of a pod's observations in the bucket holding ``value`` (the mean)."""
    i = next((j for j, b in enumerate(bounds) if value <= b), len(bounds))

    def f(pv: PodView) -> list[float]:
        out = [0.0] * (len(bounds) + 1)
        out[i] = count(pv)
        return out

    return f


def _ttft(pv: PodView) -> tuple[float, ...]:
    return pv.ttft_buckets


# --- engines ------------------------------------------------------------------------------

def _vllm(pods: Sequence[PodView], ctx: EngineContext) -> list[Metric]:
    c = {"model_name": ctx.model, "engine": "0"}
    return [
        _simple("vllm:num_requests_running", "Number of requests in model execution batches.",
                "gauge", pods, c, lambda p: p.running),
        _simple("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                "gauge", pods, c, lambda p: p.waiting),
        _simple("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage."
                "DEPRECATED: Use vllm:kv_cache_usage_perc instead.", "gauge", pods, c,
                lambda p: p.kv_usage),
        _simple("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                "gauge", pods, c, lambda p: p.kv_usage),
        _simple("vllm:prompt_tokens_total", "Number of prefill tokens processed.", "counter",
                pods, c, lambda p: p.prompt_tokens),
        _simple("vllm:generation_tokens_total", "Number of generation tokens processed.",
                "counter", pods, c, lambda p: p.generation_tokens),
        _simple("vllm:request_success_total", "Count of successfully processed requests.",
                "counter", pods, _labels(c, {"finished_reason": "stop"}), lambda p: p.success),
        _histogram("vllm:time_to_first_token_seconds",
                   "Histogram of time to first token in seconds.", pods, c, TTFT_BUCKETS_S,
                   _ttft, lambda p: p.ttft_sum_s),
    ]


def _sglang(pods: Sequence[PodView], ctx: EngineContext) -> list[Metric]:
    c = {"model_name": ctx.model}
    return [
        _simple("sglang:num_running_reqs", "The number of running requests.", "gauge", pods, c,
                lambda p: p.running),
        _simple("sglang:num_queue_reqs", "The number of requests in the waiting queue.",
                "gauge", pods, c, lambda p: p.waiting),
        _simple("sglang:token_usage", "The token usage.", "gauge", pods, c,
                lambda p: p.kv_usage),
        _simple("sglang:prompt_tokens_total", "Number of prefill tokens processed.", "counter",
                pods, c, lambda p: p.prompt_tokens),
        _simple("sglang:generation_tokens_total", "Number of generation tokens processed.",
                "counter", pods, c, lambda p: p.generation_tokens),
        _simple("sglang:num_requests_total", "Number of requests processed.", "counter", pods,
                c, lambda p: p.success),
        _histogram("sglang:time_to_first_token_seconds",
                   "Histogram of time to first token in seconds.", pods, c,
                   SGLANG_TTFT_BUCKETS_S, _ttft, lambda p: p.ttft_sum_s),
    ]


def _tgi(pods: Sequence[PodView], ctx: EngineContext) -> list[Metric]:
    c: Labels = {}
    in_bounds = [TGI_MAX_INPUT_TOKENS / 100.0 * (i + 1) for i in range(100)]
    out_bounds = [TGI_MAX_TOTAL_TOKENS / 100.0 * (i + 1) for i in range(100)]
    prompt, output = ctx.mean_prompt_tokens, ctx.mean_output_tokens
    return [
        _simple("tgi_queue_size", "Current queue size", "gauge", pods, c, lambda p: p.waiting),
        _simple("tgi_batch_current_size", "Current batch size", "gauge", pods, c,
                lambda p: p.running),
        _simple("tgi_batch_current_max_tokens", "Maximum tokens for the current batch",
                "gauge", pods, c, lambda p: round(p.kv_usage * ctx.kv_cache_tokens)),
        _simple("tgi_batch_max_total_tokens", "Maximum amount of tokens in total.", "gauge",
                pods, c, lambda p: ctx.kv_cache_tokens),
        _simple("tgi_request_count", "Total number of requests", "counter", pods, c,
                lambda p: p.arrivals),
        _simple("tgi_request_success", "Number of successful requests", "counter", pods, c,
                lambda p: p.success),
        _histogram("tgi_request_input_length", "Input token length per request", pods, c,
                   in_bounds, _one_bucket(in_bounds, prompt, lambda p: p.arrivals),
                   lambda p: p.arrivals * prompt),
        _histogram("tgi_request_generated_tokens", "Generated tokens per request", pods, c,
                   out_bounds, _one_bucket(out_bounds, output, lambda p: p.success),
                   lambda p: p.generation_tokens),
    ]


def _gpu_uuid(pod: str, gpu: int) -> str:
    h = hashlib.sha1(f"{pod}/{gpu}".encode()).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _nv_gpu_utilization(pods: Sequence[PodView], ctx: EngineContext) -> Metric:
    m = Metric("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", "gauge")
    for pv in pods:
        for g in range(ctx.gpus_per_replica):
            m.add_sample("nv_gpu_utilization",
                         _labels({"gpu_uuid": _gpu_uuid(pv.labels["pod"], g)}, pv.labels),
                         pv.gpu_util)
    return m


def _triton_core(pods: Sequence[PodView], ctx: EngineContext, c: Labels,
                 with_histogram: bool) -> list[Metric]:
    out = [
        _simple("nv_inference_request_success",
                "Number of successful inference requests, all batch sizes", "counter", pods,
                c, lambda p: p.success),
        _simple("nv_inference_request_failure",
                "Number of failed inference requests, all batch sizes", "counter", pods, c,
                lambda p: 0.0),
        _simple("nv_inference_count",
                "Number of inferences performed (does not include cached requests)",
                "counter", pods, c, lambda p: p.success),
        _simple("nv_inference_queue_duration_us",
                "Cumulative inference queuing duration in microseconds (includes cached "
                "requests)", "counter", pods, c, lambda p: p.queue_us),
        _simple("nv_inference_pending_request_count",
                "Instantaneous number of pending requests awaiting execution per-model.",
                "gauge", pods, c, lambda p: p.waiting),
    ]
    if with_histogram:
        out.append(_histogram(
            "nv_inference_first_response_histogram_ms",
            "Duration from request to first response in milliseconds", pods, c,
            TRITON_FIRST_RESPONSE_BUCKETS_MS, _ttft, lambda p: p.ttft_sum_s * 1000.0))
    out.append(_nv_gpu_utilization(pods, ctx))
    return out


def _triton(pods: Sequence[PodView], ctx: EngineContext) -> list[Metric]:
    return _triton_core(pods, ctx, {"model": ctx.model, "version": "1"}, True)


def _trtllm_serve(pods: Sequence[PodView], ctx: EngineContext) -> list[Metric]:
    c = {"model_name": ctx.model, "engine_type": "trtllm"}
    return [
        _simple("trtllm_server_queue_length", "Number of queued requests.", "gauge", pods, c,
                lambda p: p.waiting),
        _simple("trtllm_num_active_requests", "Number of active requests in the batch.",
                "gauge", pods, c, lambda p: p.running),
        _simple("trtllm_kv_cache_utilization", "KV cache utilization", "gauge", pods, c,
                lambda p: p.kv_usage),
        _simple("trtllm_request_success_total", "Count of successfully processed requests.",
                "counter", pods, _labels(c, {"finished_reason": "stop"}), lambda p: p.success),
        _simple("trtllm_prompt_tokens_total", "Total prompt tokens processed.", "counter",
                pods, c, lambda p: p.prompt_tokens),
        _histogram("trtllm_time_to_first_token_seconds",
                   "Histogram of time to first token in seconds.", pods, c, TTFT_BUCKETS_S,
                   _ttft, lambda p: p.ttft_sum_s),
    ]


def _trtllm_triton(pods: Sequence[PodView], ctx: EngineContext) -> list[Metric]:
    c = {"model": "tensorrt_llm", "version": "1"}
    max_blocks = ctx.kv_cache_tokens // TRTLLM_TOKENS_PER_BLOCK
    req = Metric("nv_trt_llm_request_metrics", "TRT LLM request metrics", "gauge")
    kv = Metric("nv_trt_llm_kv_cache_block_metrics", "TRT LLM KV cache block metrics", "gauge")
    for pv in pods:
        base = _labels(c, pv.labels)
        for kind, v in (("active", pv.waiting + pv.running), ("max", ctx.max_num_seqs),
                        ("scheduled", pv.running), ("context", 0.0), ("waiting", pv.waiting)):
            req.add_sample(req.name, _labels(base, {"request_type": kind}), float(v))
        used = round(pv.kv_usage * max_blocks)
        for kind, v in (("max", max_blocks), ("free", max_blocks - used), ("used", used),
                        ("tokens_per", TRTLLM_TOKENS_PER_BLOCK), ("reused", 0),
                        ("fraction", used / max_blocks if max_blocks else 0.0)):
            kv.add_sample(kv.name, _labels(base, {"kv_cache_block_type": kind}), float(v))
    prompt, output = ctx.mean_prompt_tokens, ctx.mean_output_tokens
    b = TRTLLM_TOKEN_LEN_BUCKETS
    return [
        req, kv,
        _histogram("nv_llm_input_token_len", "TRT LLM response metrics", pods,
                   _labels(c, {"response_metric_type": "total_input_tokens"}), b,
                   _one_bucket(b, prompt, lambda p: p.success), lambda p: p.prompt_tokens),
        _histogram("nv_llm_output_token_len", "TRT LLM response metrics", pods,
                   _labels(c, {"response_metric_type": "total_output_tokens"}), b,
                   _one_bucket(b, output, lambda p: p.success), lambda p: p.generation_tokens),
        *_triton_core(pods, ctx, c, False),
    ]


def _dcgm(pods: Sequence[PodView], ctx: EngineContext) -> list[Metric]:
    m = Metric("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "gauge")
    for pv in pods:
        for g in range(ctx.gpus_per_replica):
            m.add_sample(m.name, _labels(
                {"gpu": str(g), "UUID": _gpu_uuid(pv.labels["pod"], g), "device": f"nvidia{g}",
                 "modelName": "NVIDIA H100 80GB HBM3", "Hostname": pv.labels["pod"],
                 "container": "server"}, pv.labels), float(round(pv.gpu_util * 100.0)))
    return [m]


@dataclass(frozen=True, slots=True)
class Exposition:
    """One engine's /metrics: its TTFT bounds (seconds) and its family builder."""

    name: str
    ttft_bounds_s: tuple[float, ...]
    build: Callable[[Sequence[PodView], EngineContext], list[Metric]]
    with_dcgm: bool = False

    def families(self, pods: Sequence[PodView], ctx: EngineContext) -> list[Metric]:
        out = self.build(pods, ctx)
        if self.with_dcgm:
            out.extend(_dcgm(pods, ctx))
        return out


EXPOSITIONS: dict[str, Exposition] = {
    "vllm": Exposition("vllm", TTFT_BUCKETS_S, _vllm),
    "sglang": Exposition("sglang", SGLANG_TTFT_BUCKETS_S, _sglang),
    # TGI has no TTFT histogram; the twin still bins TTFT (for /truth) in vLLM's bounds.
    "tgi": Exposition("tgi", TTFT_BUCKETS_S, _tgi),
    "triton": Exposition("triton", tuple(b / 1000.0 for b in TRITON_FIRST_RESPONSE_BUCKETS_MS),
                         _triton),
    "tensorrt-llm": Exposition("tensorrt-llm", TTFT_BUCKETS_S, _trtllm_serve),
    "tensorrt-llm-triton": Exposition("tensorrt-llm-triton", TTFT_BUCKETS_S, _trtllm_triton),
}


def get_exposition(preset: str) -> Exposition:
    """The exposition for a preset name; ``<engine>+dcgm`` adds DCGM's GPU gauge."""
    parts = [p.strip() for p in preset.split("+")]
    dcgm = parts[1:] == ["dcgm"]
    if parts[0] not in EXPOSITIONS or (len(parts) > 1 and not dcgm):
        raise SpecError("preset", preset, f"one of {', '.join(sorted(EXPOSITIONS))}, "
                        "optionally with +dcgm")
    e = EXPOSITIONS[parts[0]]
    return Exposition(preset, e.ttft_bounds_s, e.build, with_dcgm=dcgm)


# --- text format --------------------------------------------------------------------------

@functools.lru_cache(maxsize=1 << 16)
def _label_pair(k: str, v: str) -> str:
    """``k="v"`` with the value escaped. Cached: the same pod, model and ``le`` values come
    back on every line, and a 1,000-target scrape has ~10^5 lines."""
    v = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return f'{k}="{v}"'


def render_text(metrics: Iterable[Metric]) -> str:
    """Prometheus text format 0.0.4, names exactly as given (see the module docstring)."""
    out: list[str] = []
    for m in metrics:
        doc = m.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {m.name} {doc}\n# TYPE {m.name} {m.type}\n")
        for s in m.samples:
            if s.labels:
                lab = ",".join([_label_pair(k, v) for k, v in s.labels.items()])
                out.append(f"{s.name}{{{lab}}} {_go_float(s.value)}\n")
            else:
                out.append(f"{s.name} {_go_float(s.value)}\n")
    return "".join(out)
