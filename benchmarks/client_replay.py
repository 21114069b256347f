"""Every public ServeGen client replayed alone: the decision as held-back clients see it.

The goal traces replay the 30 public clients of ``servegen_language_m-small`` together, and
30 clients summed are smoother than any one of them. The held-back traces are single
clients, so this script replays each ``chunk-<id>-trace.csv`` on its own, every policy at
its replay defaults (``autoscaler.replaying.default_specs``), and prints per client and
pooled over the clients:

* the traffic: requests, mean and peak 1-s arrival rate, mean prompt / output tokens;
* per policy: SLO attainment, GPU-hours, GPU-hours over the proven bound, replica starts
  per day, TTFT p99;
* the ceiling: the attainment and GPU-hours of the smallest static fleet whose backlog
  drains within the SLO at every second (``ceiling_replicas``). In the fluid engine a
  larger fleet never meets fewer requests, and this fleet is there before every burst, so
  no policy, however clairvoyant, meets more; it is what the requests need, not what a
  policy could know in time;
* the verdict of issue 13's goal on that client (``goal_verdict``) and the policies no other
  dominates (``pareto_front``).

    PYTHONPATH=. .venv/bin/python benchmarks/client_replay.py [--clients 0,3,7] [--days N]
        [--policies hpa,predictive] [--readme]

``--days N`` (N < 14) replays, per client, its busiest N whole days (most requests), so a
client that is silent for days is measured where it sends traffic; the policies start as
every replay does, sized for the first minutes (``autoscaler.sim.replay``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from _machine import cpu_seconds  # sibling scripts (run as a file)
from _readme import add_readme_flag, publish

from autoscaler.core.spec import PolicyKind, Spec
from autoscaler.replaying import ReplayOptions, capacity_for, default_specs
from autoscaler.sim.fluid_engine import throughput_rps
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.sim.replay import default_decide, lead_time_s, run_loop, set_up, summarize
from autoscaler.sim.result import ReplaySummary
from autoscaler.traces import Trace, load_trace
from autoscaler.traces.servegen import servegen_files

HERE = Path(__file__).resolve().parent
FOLDER = HERE.parent / ".." / "shared" / "traces" / "servegen_language_m-small"
DEFAULT_POLICIES = ("hpa", "hpa-kv", "kpa", "wva", "predictive")
TARGET = 0.99
DAY_S = 86_400.0
ACTUATION_DELAY_S = 2.0
"""``replay``'s default, which ``compare`` uses when no option sets it."""

# A fine log-spaced TTFT histogram pools p99 over clients without keeping every tick.
_EDGES = np.concatenate(([0.0], np.logspace(-3, 4, 1401)))


@dataclass
class Outcome:
    """One policy on one client: the replay's summary and its TTFT histogram."""

    summary: ReplaySummary
    hist: np.ndarray
    """Arrivals per ``_EDGES`` bin, last bin = above 10^4 s or never served."""
    met: float
    """Requests within the SLO."""


@dataclass
class ClientRow:
    cid: int
    days: float
    start_day: int
    requests: float
    mean_rps: float
    peak_rps: float
    """Busiest second."""
    prompt: float
    output: float
    capacity_rps: float
    ceiling_replicas: int
    surge: float
    """``surge_share`` of the requests."""
    outcomes: dict[str, Outcome] = field(default_factory=dict)


# ----------------------------------------------------------------------- verdicts (pure)


def goal_verdict(results: Mapping[str, tuple[float, float]], *, target: float = TARGET,
                 subject: str = "predictive") -> tuple[bool, list[str]]:
    """Issue 13's goal on one trace: ``results`` maps policy -> (attainment, GPU-hours).

    Met when (1) no other policy has both higher attainment and fewer GPU-hours than
    ``subject``, and (2) wherever another reaches ``target``, ``subject`` reaches it too at
    no more GPU-hours. Returns (met, one note per broken clause naming the policies)."""
    att, gpu = results[subject]
    dominated = sorted(n for n, (a, g) in results.items()
                       if n != subject and a > att and g < gpu)
    cheaper = sorted(n for n, (a, g) in results.items()
                     if n != subject and a >= target and (att < target or g < gpu))
    notes = []
    if dominated:
        notes.append("dominated by " + ", ".join(dominated))
    if cheaper:
        notes.append(f"{target:.0%} rule broken by " + ", ".join(cheaper))
    return not notes, notes


def pareto_front(results: Mapping[str, tuple[float, float]]) -> list[str]:
    """Policies that no other beats on both attainment (higher) and GPU-hours (fewer)."""
    return sorted(n for n, (a, g) in results.items()
                  if not any(a2 > a and g2 < g for m, (a2, g2) in results.items() if m != n))


def hist_quantile(hist: np.ndarray, q: float) -> float:
    """Quantile of a ``_EDGES`` histogram (upper edge of the bin it falls in; inf past the
    last edge). Resolution: bins are 1.2 % wide."""
    total = float(hist.sum())
    if total <= 0:
        return math.nan
    k = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    return float(_EDGES[k + 1]) if k + 1 < len(_EDGES) else math.inf


SURGE_HEADROOM = 2.0
"""The reference reactive fleet of ``surge_share`` holds this many times the last hour's
busiest-minute load (a policy at 50 % utilisation); no default policy holds more."""


def surge_share(rates_1s: np.ndarray, capacity_rps: float, lead_s: float, slo_s: float,
                memory_s: float = 3600.0) -> float:
    """Share of requests that even a generous reactive fleet misses in a surge: a fleet of
    max(1, ceil(``SURGE_HEADROOM`` x the last hour's busiest minute / capacity)) replicas,
    whose new replicas arrive ``lead_s`` after the surge (cold start, a sync period and
    the actuation delay). A minute m whose mean rate L exceeds that fleet's capacity C
    queues (L - C) more each second, so from t* = SLO x C / (L - C) seconds into it every
    arrival waits past the SLO until replicas arrive (FIFO); the arrivals of
    [start(m) + ceil(t*), start(m) + lead) count. A rough floor on a reactive policy's
    miss, not a bound (the drain after the lead time is not counted).

    Worked: an hour of silence, then 45 req/s on replicas of 17.2 req/s: the fleet is 1
    replica, t* = 2 x 17.2 / 27.8 = 1.24 s, so seconds 2..136: 135 x 45 = 6,075 of the
    5 minutes' 13,500 requests, 45 %."""
    n = len(rates_1s)
    total = float(rates_1s.sum())
    if n == 0 or total <= 0:
        return 0.0
    m = n // 60
    minute = rates_1s[: m * 60].reshape(m, 60).mean(axis=1)
    back = max(1, round(memory_s / 60.0))
    lead = round(lead_s)
    exposed = 0.0
    covered_to = 0
    for i in range(1, m):
        held = max(1.0, math.ceil(SURGE_HEADROOM * float(minute[max(0, i - back):i].max())
                                  / capacity_rps - 1e-9))
        cap = held * capacity_rps
        if minute[i] > cap:
            t_star = math.ceil(slo_s * cap / (float(minute[i]) - cap) - 1e-9)
            lo, hi = max(i * 60 + t_star, covered_to), min(n, i * 60 + lead)
            if hi > lo:
                exposed += float(rates_1s[lo:hi].sum())
                covered_to = hi
    return exposed / total


def drains_within(arrivals: np.ndarray, mu: np.ndarray, replicas: int,
                  room_s: np.ndarray) -> bool:
    """Whether a fixed fleet of ``replicas`` keeps every tick's backlog drainable within
    ``room_s`` (the SLO less an idle replica's TTFT): the fluid engine's FIFO queue
    (Lindley, B_k = S_k - min(0, min_j<=k S_j) for S the running sum of arrivals less
    capacity) read at each tick's end, as the engine reads its last arrival."""
    cap = replicas * mu
    s = np.cumsum(arrivals - cap)
    backlog = s - np.minimum(0.0, np.minimum.accumulate(s))
    return bool(np.all(backlog <= cap * room_s + 1e-9))


def ceiling_replicas(arrivals: np.ndarray, mu: np.ndarray, room_s: np.ndarray,
                     most: int = 4096) -> int:
    """The smallest static fleet that ``drains_within`` the SLO at every tick (at most
    ``most``), by bisection (more replicas never hold a longer backlog).

    Worked: one second of 300 arrivals on replicas of 60.7 req/s with 1.98 s of room
    after the idle TTFT: 1 replica leaves 239.3 queued against 120.2 of room, 2 leave
    178.6 against 240.4: 2."""
    if drains_within(arrivals, mu, 1, room_s):
        return 1
    lo, hi = 1, 2
    while hi < most and not drains_within(arrivals, mu, hi, room_s):
        lo, hi = hi, min(most, 2 * hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if drains_within(arrivals, mu, mid, room_s):
            hi = mid
        else:
            lo = mid
    return hi


# ----------------------------------------------------------------------- replays


def busiest_start_day(path: Path, days: int) -> int:
    """First day of the client's busiest ``days`` whole days (most requests)."""
    means = load_trace(path, bursts=False)  # 600-s window means: cheap, no draws
    assert means.rates_rps is not None and means.resolution_s is not None
    per_day = round(DAY_S / means.resolution_s)
    n_days = len(means.rates_rps) // per_day
    if days >= n_days:
        return 0
    daily = means.rates_rps[: n_days * per_day].reshape(n_days, per_day).sum(axis=1)
    sums = np.convolve(daily, np.ones(days), mode="valid")
    return int(np.argmax(sums))


def replay_policy(trace: Trace, spec: Spec, profile: ReplicaProfile) -> Outcome:
    """``autoscaler.replaying.compare``'s replay of one policy, keeping the fluid engine's
    per-tick TTFT (for the pooled p99) that the summary drops."""
    scrape = min(15.0, spec.sync_period_s)
    setup = set_up(trace, spec, profile, engine="fluid", seed=0, scrape_interval_s=scrape,
                   actuation_delay_s=ACTUATION_DELAY_S)
    loop = run_loop(setup, spec, default_decide(trace, spec, profile, ACTUATION_DELAY_S),
                    scrape_interval_s=scrape, rate_window_s=60.0,
                    actuation_delay_s=ACTUATION_DELAY_S, metrics_outage=trace.gaps)
    result = summarize(trace, spec, profile, setup, loop)
    fl = setup.fluid
    assert fl is not None
    ttft = np.where(np.isfinite(fl.ttft), fl.ttft, 1e9)
    hist, _ = np.histogram(np.minimum(ttft, 1e9), bins=np.append(_EDGES, 2e9),
                           weights=fl.arrivals)
    return Outcome(result.summary, hist, float(np.dot(fl.arrivals, fl.met)))


def run_client(path: Path, cid: int, policies: Sequence[str], profile: ReplicaProfile,
               days: int | None, ceiling: bool) -> ClientRow:
    start_day = 0 if days is None else busiest_start_day(path, days)
    trace = load_trace(path, start_s=start_day * DAY_S,
                       duration_s=None if days is None else days * DAY_S)
    options = ReplayOptions()
    capacity = capacity_for(trace, profile, options.slo_ttft_s)
    specs = default_specs(trace, profile, capacity, options)
    rates = trace.binned_rates(1.0)
    p, o = trace.token_means_at(np.arange(len(rates)) + 0.5)
    busy = rates > 0
    w = rates[busy]
    mu = throughput_rps(profile, p, o)
    idle_ttft = (np.ceil(p / profile.max_num_batched_tokens) * profile.step_base_s
                 + p * profile.step_per_prefill_token_s)
    n_ceiling = ceiling_replicas(rates, mu, options.slo_ttft_s - idle_ttft)
    row = ClientRow(
        cid=cid, days=trace.duration_s / DAY_S, start_day=start_day,
        requests=float(rates.sum()), mean_rps=float(rates.mean()),
        peak_rps=float(rates.max()),
        prompt=float(np.dot(w, p[busy]) / w.sum()) if w.size else math.nan,
        output=float(np.dot(w, o[busy]) / w.sum()) if w.size else math.nan,
        capacity_rps=capacity.requests_per_second, ceiling_replicas=n_ceiling,
        surge=surge_share(rates, capacity.requests_per_second,
                          lead_time_s(specs[PolicyKind.HPA], profile, ACTUATION_DELAY_S),
                          options.slo_ttft_s))
    for name in policies:
        row.outcomes[name] = replay_policy(trace, specs[PolicyKind(name)], profile)
    if ceiling:
        static = replace(specs[PolicyKind.STATIC], static_replicas=n_ceiling,
                         max_replicas=max(n_ceiling, specs[PolicyKind.STATIC].max_replicas))
        row.outcomes["ceiling"] = replay_policy(trace, static, profile)
    return row


# ----------------------------------------------------------------------- tables


def _att(x: float) -> str:
    return f"{x:.2%}" if math.isfinite(x) else "-"


def _p99(x: float) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "never served"
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def _verdict_cell(results: Mapping[str, tuple[float, float]]) -> str:
    if "predictive" not in results:
        return "-"
    ok, notes = goal_verdict(results)
    return "met" if ok else "; ".join(notes)


def client_table(rows: Sequence[ClientRow], policies: Sequence[str]) -> str:
    """One line per client: traffic, the ceiling, each policy's attainment / GPU-h."""
    head = ["client", "days", "requests", "mean / peak 1-s req/s", "prompt / output tok",
            "1 replica req/s", "surge share", "ceiling att. / GPU-h (R)"]
    head += [f"{p} att. / GPU-h" for p in policies] + ["goal (issue 13)", "front"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        results = {n: (o.summary.slo_attainment, o.summary.gpu_hours)
                   for n, o in r.outcomes.items() if n != "ceiling"}
        ceil = r.outcomes.get("ceiling")
        cells = [str(r.cid),
                 f"{r.days:g}" + (f" from day {r.start_day}" if r.start_day else ""),
                 f"{r.requests:,.0f}", f"{r.mean_rps:.2f} / {r.peak_rps:,.0f}",
                 f"{r.prompt:,.0f} / {r.output:,.0f}", f"{r.capacity_rps:.1f}",
                 f"{r.surge:.2%}",
                 (f"{_att(ceil.summary.slo_attainment)} / {ceil.summary.gpu_hours:,.1f} "
                  f"({r.ceiling_replicas})" if ceil else f"({r.ceiling_replicas})")]
        cells += [f"{_att(r.outcomes[p].summary.slo_attainment)} / "
                  f"{r.outcomes[p].summary.gpu_hours:,.1f}" for p in policies]
        cells += [_verdict_cell(results), ", ".join(pareto_front(results))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pooled_table(rows: Sequence[ClientRow], policies: Sequence[str]) -> str:
    """Per policy over every client: requests met / requests, GPU-hours, x bound, starts
    per day, TTFT p99 of the pooled requests, clients at >= 99 %."""
    names = [*policies, *(["ceiling"] if rows and "ceiling" in rows[0].outcomes else [])]
    head = ["policy", "attainment (pooled)", "GPU-h", "GPU-h / bound", "starts/day",
            "TTFT p99 s (pooled)", "p95", "clients >= 99 %", "worst client"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total = sum(r.requests for r in rows)
    span_days = sum(r.days for r in rows)
    for n in names:
        outs = [r.outcomes[n] for r in rows]
        met = sum(o.met for o in outs)
        gpu = sum(o.summary.gpu_hours for o in outs)
        bound = sum(o.summary.bound_gpu_hours for o in outs
                    if math.isfinite(o.summary.bound_gpu_hours))
        starts = sum(o.summary.replica_starts for o in outs)
        hist = np.sum([o.hist for o in outs], axis=0)
        ok = sum(1 for o in outs if o.summary.slo_attainment >= TARGET)
        worst = min(rows, key=lambda r: r.outcomes[n].summary.slo_attainment)
        lines.append(
            f"| {n} | {_att(met / total if total else math.nan)} | {gpu:,.1f} | "
            f"{gpu / bound if bound > 0 else math.nan:.2f} | "
            f"{starts / span_days if span_days else 0.0:.1f} | "
            f"{_p99(hist_quantile(hist, 0.99))} | {_p99(hist_quantile(hist, 0.95))} | "
            f"{ok} of {len(rows)} | {worst.cid}: "
            f"{_att(worst.outcomes[n].summary.slo_attainment)} |")
    return "\n".join(lines)


def goal_count(rows: Iterable[ClientRow]) -> tuple[int, int]:
    done = [_verdict_cell({n: (o.summary.slo_attainment, o.summary.gpu_hours)
                           for n, o in r.outcomes.items() if n != "ceiling"}) for r in rows]
    judged = [v for v in done if v != "-"]
    return sum(1 for v in judged if v == "met"), len(judged)


# ----------------------------------------------------------------------- main


def _ids(text: str) -> list[int] | None:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=FOLDER)
    ap.add_argument("--clients", default=None, help="chunk ids, e.g. 0,3,7 (default: all)")
    ap.add_argument("--days", type=int, default=None,
                    help="replay each client's busiest N whole days (default: all 14)")
    ap.add_argument("--policies", default=",".join(DEFAULT_POLICIES))
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the static ceiling fleet's replay")
    add_readme_flag(ap)
    args = ap.parse_args(argv)
    if args.days is not None and args.days < 1:
        print(f"client_replay.py: --days {args.days}: expected a whole number >= 1",
              file=sys.stderr)
        return 2
    files = {int(f.name.split("-")[1]): f for f in servegen_files(args.folder)}
    wanted = sorted(files) if args.clients is None else _ids(args.clients)
    if wanted is None:
        print(f"client_replay.py: --clients {args.clients!r}: expected ids like 0,3,7",
              file=sys.stderr)
        return 2
    missing = [c for c in wanted if c not in files]
    if missing or not wanted:
        print(f"client_replay.py: --clients: no chunk-{missing[0] if missing else '?'}"
              f"-trace.csv in {args.folder}", file=sys.stderr)
        return 2
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    known = {k.value for k in PolicyKind}
    bad = [p for p in policies if p not in known]
    if bad or not policies:
        print(f"client_replay.py: --policies: {bad[0] if bad else '(empty)'} is not one of "
              f"{', '.join(sorted(known))}", file=sys.stderr)
        return 2
    profile = load_profile()
    cpu0, load0, wall0 = cpu_seconds(), os.getloadavg()[0], time.perf_counter()
    rows = []
    for cid in wanted:
        t = cpu_seconds()
        rows.append(run_client(files[cid], cid, policies, profile, args.days,
                               not args.no_ceiling))
        print(f"client {cid}: {cpu_seconds() - t:.0f} CPU s", file=sys.stderr, flush=True)
    met, judged = goal_count(rows)
    load1 = os.getloadavg()
    span = "all 14 days" if args.days is None else f"each client's busiest {args.days} days"
    text = "\n".join([
        f"Each client alone ({span}), every policy at its replay defaults; cells are SLO "
        f"attainment / GPU-hours. Ceiling: the smallest static fleet (R replicas) whose backlog "
        f"drains within the SLO at every second. Goal met on {met} of {judged} clients.", "",
        client_table(rows, policies), "", "Pooled over these clients:", "",
        pooled_table(rows, policies), "",
        f"Measured by `benchmarks/client_replay.py"
        f"{'' if args.days is None else f' --days {args.days}'}"
        f"{'' if args.clients is None else f' --clients {args.clients}'}"
        f"{'' if args.policies == ','.join(DEFAULT_POLICIES) else f' --policies {args.policies}'}`"
        f" in {time.perf_counter() - wall0:,.0f} s wall, {cpu_seconds() - cpu0:,.0f} CPU s, "
        f"on a shared {os.cpu_count()}-core machine (load average {load0:.1f} at the start, "
        f"{load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f} at the end)."])
    publish("client_replay", text, readme=args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
