"""Days of a known fleet's history as an OpenMetrics file, for ``promtool tsdb
create-blocks-from openmetrics``: the proof that a reconstruction and a profile fit read
back what was written.

A known rate-level trace is served by the fluid engine with a known profile under a replica
schedule; every ``scrape_s`` each ready pod's exposition is taken from the twin's vLLM
families (``autoscaler.twin.expositions``: same names, labels and TTFT buckets) plus the
vLLM families a fit needs that the twin does not write:

* ``vllm:request_prompt_tokens`` / ``vllm:request_generation_tokens`` histograms (count =
  finished requests, sum = their tokens; every request in the bucket of the mean, as the
  twin does for TGI, because the fluid engine simulates means);
* ``vllm:time_per_output_token_seconds``: one observation per generated token, each the
  profile's decode step time ``step_base_s + step_per_decode_seq_s x running`` at the
  pod's running batch;
* ``vllm:request_prefill_time_seconds``: prompt tokens x ``step_per_prefill_token_s`` per
  request;
* ``vllm:cache_config_info`` (``num_gpu_blocks``, ``block_size``);
* kube-state-metrics ``kube_pod_created`` and ``kube_pod_status_ready_time`` (Unix seconds).

As in vLLM, every request that arrived is in exactly one place at a scrape: waiting
(``vllm:num_requests_waiting``) or counted by the TTFT histogram (its first token came);
arrivals are then first tokens plus queue growth, which a reconstruction must undo. (The
few requests inside their prefill step are in neither: under a second's worth per pod.)
Inside a gap nothing is written (a monitoring outage).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoscaler.sim.fluid_engine import FluidEngine
from autoscaler.sim.profiles import ReplicaProfile
from autoscaler.traces.model import Trace
from autoscaler.twin.expositions import EngineContext, PodView, get_exposition

TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
"""vLLM's build_1_2_5_buckets up to a 10,000-token model length."""
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
PREFILL_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                   50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


@dataclass
class _Pod:
    name: str
    created: float
    ready: float
    counters: dict[str, float] = field(default_factory=dict)
    ttft: np.ndarray | None = None


@dataclass(frozen=True)
class HistorySpec:
    """What to write: whose history, when, how often."""

    trace: Trace
    profile: ReplicaProfile
    start_unix: float
    """Unix seconds of the trace's time 0."""
    replicas: Sequence[tuple[float, int]]
    """(trace seconds, replicas) schedule; the first entry must be at 0."""
    namespace: str = "llm"
    workload: str = "chat"
    scrape_s: float = 60.0
    scrape_offset_s: float = 0.0
    """Scrapes at ``offset + k x scrape_s`` seconds of trace time: a real Prometheus
    scrapes each target at its own phase, not on the grid a range query steps on."""
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    seed: int = 0


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _labels(d: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in d.items())


def write_history(spec: HistorySpec, path: Path) -> dict[str, float]:
    """Write the OpenMetrics file; return facts about it (samples, pods, cold starts)."""
    tr = spec.trace
    rates = tr.binned_rates(1.0)
    P, Out = tr.token_mix.mean_prompt_tokens, tr.token_mix.mean_output_tokens
    prof = spec.profile
    eng = FluidEngine(prof, rates, prompt_tokens=P, output_tokens=Out, slo_ttft_s=2.0,
                      initial_replicas=0, seed=spec.seed)
    expo = get_exposition("vllm")
    bounds = np.asarray(expo.ttft_bounds_s)
    ctx = EngineContext(model=spec.model, kv_cache_tokens=prof.kv_cache_tokens,
                        max_num_seqs=prof.max_num_seqs, gpus_per_replica=prof.gpus_per_replica,
                        mean_prompt_tokens=P, mean_output_tokens=Out)
    lines: dict[str, list[str]] = {}
    types: dict[str, tuple[str, str]] = {}
    schedule = sorted(spec.replicas)
    pods: dict[int, _Pod] = {}
    last_fleet = {"success": 0.0, "prompt": 0.0, "gen": 0.0, "queue_us": 0.0}
    last_first = last_req = last_ttft_sum = mean_ttft = 0.0
    last_cum = np.zeros(len(bounds) + 1)
    shape = np.zeros(len(bounds) + 1)
    shape[-1] = 1.0
    samples = 0
    n_steps = int((tr.duration_s - spec.scrape_offset_s) // spec.scrape_s)
    si = 0
    waiting_prev = 0.0
    for k in range(n_steps + 1):
        t = spec.scrape_offset_s + k * spec.scrape_s
        eng.advance(t)
        while si < len(schedule) and schedule[si][0] <= t:
            eng.set_target(schedule[si][1], t)
            si += 1
        s = eng.sample(t)
        recs = eng.records()
        ready = [i for i, r in enumerate(recs) if r.ready_at <= t
                 and (r.removal_at is None or r.removal_at > t)]
        for i, r in enumerate(recs):
            if i not in pods:
                pods[i] = _Pod(name=f"{spec.workload}-7d9f8c6b5-{i:05d}",
                               created=spec.start_unix + r.requested_at,
                               ready=spec.start_unix + r.ready_at)
        served = s.first_tokens_total
        # A request counts in the TTFT histogram once it has its first token, as in vLLM,
        # where a request that arrived is either waiting, prefilling, or counted there: so
        # first tokens = arrivals - waiting. The engine's own served total is not that: it
        # also holds the requests still queued behind other prefills, which its waiting
        # gauge reports too (waiting = backlog + that M/D/1 queue), and arrivals = first
        # tokens + queue growth counted them twice (measured before: a burst's busiest
        # minute read 137 req/s for 100, and the minutes after it 0 for 29 as that queue
        # emptied). It also misses requests the fluid engine's under-capacity shortcut
        # drops when a backlog forms inside a stretch (sim/fluid_engine.py: `s.max() <= 0`
        # does not mean no backlog; 145 requests at 10:02 of the seed-0 burst).
        first = max(last_first, s.requests_total - s.waiting)
        d_first = first - last_first
        # This step's first tokens spread over the TTFT buckets of this step's arrivals, so
        # the histogram's count is the first-token counter exactly (scaling the cumulative
        # buckets instead made a bucket fall whenever the served share fell, and clamping
        # it broke the count).
        cum = np.diff(np.concatenate(([0.0], np.asarray(s.ttft_buckets))))
        inc = np.maximum(0.0, cum - last_cum)
        if inc.sum() > 0:
            shape = inc / inc.sum()
        d_hist = d_first * shape
        d_req = s.requests_total - last_req
        if d_req > 0:
            mean_ttft = (s.ttft_sum - last_ttft_sum) / d_req
        d = {"success": served - last_fleet["success"],
             "prompt": s.prompt_tokens_total - last_fleet["prompt"],
             "gen": s.generation_tokens_total - last_fleet["gen"],
             "ttft_sum": d_first * mean_ttft,
             "queue_us": 0.5 * (waiting_prev + s.waiting) * spec.scrape_s * 1e6}
        last_fleet = {"success": served, "prompt": s.prompt_tokens_total,
                      "gen": s.generation_tokens_total,
                      "queue_us": last_fleet["queue_us"] + d["queue_us"]}
        last_first, last_cum = first, np.maximum(cum, last_cum)
        last_req, last_ttft_sum = s.requests_total, s.ttft_sum
        waiting_prev = s.waiting
        R = len(ready)
        if R == 0:
            continue
        run_per = s.running / R
        step_time = prof.step_time_s(max(1, round(run_per)))
        prefill_per_req = P * prof.step_per_prefill_token_s
        views: list[PodView] = []
        extra_counters: list[tuple[_Pod, dict[str, str]]] = []
        for i in ready:
            pod = pods[i]
            c = pod.counters
            for key, v in d.items():
                c[key] = c.get(key, 0.0) + v / R
            c["tpot_sum"] = c.get("tpot_sum", 0.0) + d["gen"] / R * step_time
            c["prefill_sum"] = c.get("prefill_sum", 0.0) + d["success"] / R * prefill_per_req
            pod.ttft = (pod.ttft if pod.ttft is not None else np.zeros_like(d_hist)) + d_hist / R
            labels = {"pod": pod.name, "namespace": spec.namespace, "workload": spec.workload}
            views.append(PodView(
                labels=labels, arrivals=c["success"], success=c["success"],
                prompt_tokens=c["prompt"], generation_tokens=c["gen"], queue_us=c["queue_us"],
                ttft_buckets=tuple(pod.ttft.tolist()), ttft_sum_s=c["ttft_sum"],
                waiting=s.waiting / R, running=run_per,
                kv_usage=0.0 if math.isnan(s.kv_usage) else s.kv_usage, gpu_util=0.0))
            extra_counters.append((pod, labels))
        if any(a <= tr_t < b for a, b in _gap_list(tr) for tr_t in (t,)):
            continue  # a monitoring outage: the engines ran, nobody scraped
        ts = _fmt(spec.start_unix + t)
        for m in expo.families(views, ctx):
            types[m.name] = (m.type, m.documentation)
            out = lines.setdefault(m.name, [])
            for smp in m.samples:
                out.append(f"{smp.name}{{{_labels(dict(smp.labels))}}} {_fmt(smp.value)} {ts}")
                samples += 1
        for pod, labels in extra_counters:
            samples += _extras(lines, types, pod, labels, ctx, prof, step_time,
                               prefill_per_req, ts, spec)
    with path.open("w", encoding="utf-8") as fh:
        for name, rows in lines.items():
            typ, doc = types[name]
            fam = name.removesuffix("_total") if typ == "counter" else name
            fh.write(f"# HELP {fam} {doc}\n# TYPE {fam} {typ}\n")
            fh.write("\n".join(rows))
            fh.write("\n")
        fh.write("# EOF\n")
    colds = [p.ready - p.created for p in pods.values()]
    return {"samples": float(samples), "pods": float(len(pods)),
            "cold_start_min_s": min(colds) if colds else math.nan,
            "cold_start_max_s": max(colds) if colds else math.nan}


def _gap_list(trace: Trace) -> Iterator[tuple[float, float]]:
    yield from trace.gaps


def _hist_lines(name: str, base: dict[str, str], bounds: Sequence[float], mean: float,
                count: float, total: float, ts: str) -> list[str]:
    out = []
    i = next((j for j, b in enumerate(bounds) if mean <= b), len(bounds))
    for j, b in enumerate(bounds):
        v = count if j >= i else 0.0
        out.append(f'{name}_bucket{{{_labels({**base, "le": repr(float(b))})}}} {_fmt(v)} {ts}')
    out.append(f'{name}_bucket{{{_labels({**base, "le": "+Inf"})}}} {_fmt(count)} {ts}')
    out.append(f"{name}_count{{{_labels(base)}}} {_fmt(count)} {ts}")
    out.append(f"{name}_sum{{{_labels(base)}}} {_fmt(total)} {ts}")
    return out


def _extras(lines: dict[str, list[str]], types: dict[str, tuple[str, str]], pod: _Pod,
            labels: dict[str, str], ctx: EngineContext, prof: ReplicaProfile,
            step_time: float, prefill_per_req: float, ts: str, spec: HistorySpec) -> int:
    c = pod.counters
    base = {"model_name": ctx.model, "engine": "0", **labels}
    n = 0
    hists = (
        ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", TOKEN_BUCKETS,
         ctx.mean_prompt_tokens, c["success"], c["prompt"]),
        ("vllm:request_generation_tokens", "Number of generation tokens processed.",
         TOKEN_BUCKETS, ctx.mean_output_tokens, c["success"], c["gen"]),
        ("vllm:time_per_output_token_seconds", "Histogram of time per output token in "
         "seconds.", TPOT_BUCKETS, step_time, c["gen"], c["tpot_sum"]),
        ("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for "
         "request.", PREFILL_BUCKETS, prefill_per_req, c["success"], c["prefill_sum"]),
    )
    for name, doc, bounds, mean, count, total in hists:
        types[name] = ("histogram", doc)
        rows = _hist_lines(name, base, bounds, mean, count, total, ts)
        lines.setdefault(name, []).extend(rows)
        n += len(rows)
    info = {"block_size": str(prof.block_size),
            "num_gpu_blocks": str(prof.num_gpu_blocks),
            "gpu_memory_utilization": "0.9", "cache_dtype": "auto", "engine": "0", **labels}
    types["vllm:cache_config_info"] = ("gauge", "Information of the LLMEngine CacheConfig")
    lines.setdefault("vllm:cache_config_info", []).append(
        f"vllm:cache_config_info{{{_labels(info)}}} 1 {ts}")
    ksm = {"namespace": spec.namespace, "pod": pod.name, "uid": f"uid-{pod.name}"}
    types["kube_pod_created"] = ("gauge", "Unix creation timestamp")
    types["kube_pod_status_ready_time"] = ("gauge", "Readiness achieved time in unix timestamp "
                                           "for a pod.")
    lines.setdefault("kube_pod_created", []).append(
        f"kube_pod_created{{{_labels(ksm)}}} {_fmt(pod.created)} {ts}")
    lines.setdefault("kube_pod_status_ready_time", []).append(
        f"kube_pod_status_ready_time{{{_labels(ksm)}}} {_fmt(pod.ready)} {ts}")
    return n + 3


def diurnal_trace(days: float, *, seed: int = 0, resolution_s: float = 60.0,
                  trough_rps: float = 6.0, peak_rps: float = 30.0,
                  burst_height: float = 2.5, burst_s: float = 600.0,
                  prompt_tokens: float = 1000.0, output_tokens: float = 200.0,
                  gaps: tuple[tuple[float, float], ...] = ()) -> Trace:
    """A known rate-level workload: a daily cosine from ``trough_rps`` (midnight) to
    ``peak_rps`` (noon), +/-15% lognormal noise per bin, and two bursts a day (x
    ``burst_height`` for ``burst_s`` from 10:00 and 15:00) that overload a fixed schedule;
    constant token means."""
    from autoscaler.traces.model import TokenMix

    n = round(days * 86_400 / resolution_s)
    t = (np.arange(n) + 0.5) * resolution_s
    rng = np.random.default_rng(seed)
    mid, amp = (peak_rps + trough_rps) / 2, (peak_rps - trough_rps) / 2
    rate = (mid - amp * np.cos(2 * math.pi * t / 86_400)) * rng.lognormal(0.0, 0.15, n)
    tod = t % 86_400
    for hour in (10, 15):
        inside = (tod >= hour * 3600) & (tod < hour * 3600 + burst_s)
        rate = np.where(inside, rate * burst_height, rate)
    for a, b in gaps:  # a gap has no traffic (the Trace contract), whoever reads it
        rate = np.where((t >= a) & (t < b), 0.0, rate)
    return Trace(name=f"diurnal-{days:g}d-seed{seed}", duration_s=n * resolution_s,
                 rates_rps=rate.astype(np.float64), resolution_s=resolution_s,
                 token_mix=TokenMix(prompt_tokens, output_tokens), gaps=gaps)


def day_schedule(days: float, replicas: tuple[int, int, int, int] = (3, 5, 8, 4)
                 ) -> list[tuple[float, int]]:
    """``replicas[i]`` from 00:00, 06:00, 12:00 and 18:00 every day (a fixed schedule, as
    many fleets run before autoscaling; every step up starts new pods)."""
    out: list[tuple[float, int]] = []
    for d in range(math.ceil(days)):
        out += [(d * 86_400 + i * 6 * 3600.0, r) for i, r in enumerate(replicas)]
    return [(t, r) for t, r in out if t < days * 86_400]
