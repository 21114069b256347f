"""The fleet replay against a real Prometheus holding days of history.

Two histories: seed 3 over a day and a quarter (replay and profile fit) and seed 0 over 18
hours (replay only), plus two 3-hour workloads scraped off the query grid (every 60 s at
23 s past, every 15 s at 11 s past, read at ``--step auto``), not a week, to keep the unit
tier near a minute of CPU on a shared 2-core machine (measured: 60 s of CPU for the file,
load average 6-8 on 2 cores: writing the samples and promtool's blocks, then 2 x 2 x 4
replays). Two seeds so that a tolerance met is not one seed's luck.
``benchmarks/fleet_replay.py`` prints the same figures for more scrape phases and for 6
days (33 pod starts, enough for the jitter's +/-10%).

Tolerances (stated in the issue): the replay from Prometheus is within 0.5 points of
attainment and 3% of GPU-hours of the replay from the trace; every fitted profile field
within 10% of the true profile, except ``cold_start_jitter_s``: it is estimated from the
spread of the few pods started in the range (8 here), and +/-10% at 90% confidence needs
30 starts, so the fit reports its 90% interval and says it could not be fitted to +/-10%;
the test checks that the interval holds the true value and that the report says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from autoscaler.core.spec import PolicyKind
from autoscaler.fleetdata.fit import ProfileFit, fit_profile
from autoscaler.fleetdata.history import (
    HistoryQuery,
    Reconstruction,
    Target,
    at_scrape_step,
    reconstruct,
)
from autoscaler.fleetdata.openmetrics import HistorySpec, day_schedule, diurnal_trace
from autoscaler.fleetdata.proof import build_tsdb, serve_tsdb
from autoscaler.metrics.source import PrometheusConfig, PrometheusSource
from autoscaler.replaying import (
    Comparison,
    ReplayOptions,
    busiest_rate,
    capacity_for,
    compare,
    default_specs,
)
from autoscaler.sim.profiles import ReplicaProfile, load_profile
from autoscaler.traces.model import Trace
from autoscaler.traces.window import window_trace
from tests.support.promserver import prometheus_binary

pytestmark = pytest.mark.prometheus

DAYS = 1.25


@dataclass(frozen=True)
class History:
    url: str
    trace: Trace
    profile: ReplicaProfile
    query: HistoryQuery
    rec: Reconstruction
    fit: ProfileFit | None
    """None where the fixture does not fit a profile."""


OFF_GRID = {"offset": (60.0, 23.0), "fast": (15.0, 11.0)}
"""The second history's extra workloads: (scrape interval, phase) seconds. Scraped 23 s
past each minute, and every 15 s at 11 s past, as a real Prometheus scrapes each target at
its own phase, not on the range query's grid."""


def _offset_spec(start: float, workload: str = "offset") -> HistorySpec:
    """Workload ``llm/<workload>``: 09:00-12:00 of the seed-0 day (the 10:00 burst
    overloads its 5 replicas), scraped as ``OFF_GRID`` says."""
    day = diurnal_trace(0.75, seed=0)
    scrape, phase = OFF_GRID[workload]
    return HistorySpec(trace=window_trace(day, 9 * 3600.0, 3 * 3600.0),
                       profile=load_profile("llama3-8b-h100"), start_unix=start,
                       replicas=[(0.0, 5)], workload=workload, scrape_s=scrape,
                       scrape_offset_s=phase)


def _history(tmp: Path, *, days: float, seed: int, gap_at_s: float,
             fit: bool, with_offset: bool = False) -> Iterator[History]:
    binary = prometheus_binary()
    promtool = str(Path(binary).with_name("promtool"))
    profile = load_profile("llama3-8b-h100")
    # A 40-minute monitoring outage.
    trace = diurnal_trace(days, seed=seed, gaps=((gap_at_s, gap_at_s + 2400.0),))
    start = (time.time() - days * 86_400 - 7200) // 60 * 60
    spec = HistorySpec(trace=trace, profile=profile, start_unix=start,
                       replicas=day_schedule(days), seed=seed)
    more = tuple(_offset_spec(start, w) for w in OFF_GRID) if with_offset else ()
    data, _ = build_tsdb(spec, tmp, promtool=promtool, more=more)
    with serve_tsdb(data, prometheus=binary) as url:
        src = PrometheusSource(PrometheusConfig(url=url, timeout_s=120))
        q = HistoryQuery(Target("llm", "chat"), start, start + trace.duration_s, 60.0)
        rec = reconstruct(src, q)
        # A different base profile: a field that was not fitted cannot pass by accident.
        fitted = fit_profile(src, q, load_profile("llama3-70b-4xh100")) if fit else None
        src.close()
        yield History(url, trace, profile, q, rec, fitted)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """Seed 3, a day and a quarter, the outage in the evening (19:12)."""
    yield from _history(tmp_path_factory.mktemp("tsdb"), days=DAYS, seed=3,
                        gap_at_s=0.8 * 86_400, fit=True)


@pytest.fixture(scope="module")
def history_seed0(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """A second seed (the benchmark's), cheaper: 18 hours (both bursts and every step of
    the schedule but the second midnight), the outage over the 18:00 scale-down, so the
    step before it and the pods removed at it are read across a gap."""
    yield from _history(tmp_path_factory.mktemp("tsdb0"), days=0.75, seed=0,
                        gap_at_s=18 * 3600.0, fit=False, with_offset=True)


def _fit(h: History) -> ProfileFit:
    assert h.fit is not None
    return h.fit


def test_reconstruction_keeps_the_gap_and_the_token_means(history: History) -> None:
    rec = history.rec
    (a, b), = history.trace.gaps
    # The outage is found, to the step (the step after it spans it, hence one more).
    assert any(g0 <= a + 60 and g1 >= b for g0, g1 in rec.trace.gaps), rec.trace.gaps
    assert rec.trace.token_mix.mean_prompt_tokens == pytest.approx(1000.0, rel=1e-3)
    assert rec.trace.token_mix.mean_output_tokens == pytest.approx(200.0, rel=1e-3)
    assert rec.pods_seen >= 8  # 3 at midnight, +2 at 06:00, +3 at 12:00, more next day


POLICIES = (PolicyKind.HPA, PolicyKind.KPA, PolicyKind.PREDICTIVE, PolicyKind.STATIC)
_REPLAYS: dict[str, tuple[Comparison, Comparison]] = {}


def _replays(which: str, request: pytest.FixtureRequest) -> tuple[Comparison, Comparison]:
    """(replay of the trace, replay of its reconstruction), once per history."""
    if which not in _REPLAYS:
        h: History = request.getfixturevalue(which)
        opts = ReplayOptions(engine="fluid", seed=0, max_replicas=20)
        _REPLAYS[which] = (compare(h.trace, h.profile, POLICIES, opts),
                           compare(h.rec.trace, h.profile, POLICIES, opts))
    return _REPLAYS[which]


# Both seeds, every policy. Two predictive misses were fixed this round, each by a change
# elsewhere: seed 0 (-6.0% GPU-h over 18 h: a ramp from zero read at the replay's start;
# the pods present at the start now served before the trace) and seed 3 (-4.2%, which
# appeared when scale-ups on lower bounds merged and went when the capacity learner stopped
# forgetting an overload on its own tail; where the two replays parted was not traced).
#
# Seed 3 was a known miss from the ambiguous-TTFT change (bucket) until the start-up
# interval fix: -3.34 % GPU-h (95.14 against 98.43). The trace's replay reads its first
# rate at 60 s, and the trend forecaster's p90 over so few samples was wide (11.8 req/s on
# a 4.8 mean at 165 s) and asked for a second replica; at 2 replicas of ~3 req/s each the
# learner cannot probe (PROBE_MIN_LOAD x 12.1 = 6.05 req/s per replica), so the estimate
# stayed at the prior's 12.1 and the plan kept 2 for most of two hours. Now, until the
# lead-time errors calibrate, the interval starts replicas only as far as measured errors
# support it (``LeadErrors.supported_peak``): 95.33 against 95.14 GPU-h (-0.20 %),
# attainment equal. A policy that misses on a seed goes here, with where the replays part.
_KNOWN_MISS: set[tuple[str, PolicyKind]] = set()


@pytest.mark.parametrize(("which", "kind"), [
    pytest.param(which, kind, id=f"{which}-{kind.value}",
                 marks=([pytest.mark.xfail(strict=True, reason="see _KNOWN_MISS")]
                        if (which, kind) in _KNOWN_MISS else []))
    for which in ("history", "history_seed0") for kind in POLICIES])
def test_replay_from_prometheus_matches_replay_from_the_trace(
        which: str, kind: PolicyKind, request: pytest.FixtureRequest) -> None:
    """Every policy that missed before (hpa -0.83 pt, kpa -1.38 pt, predictive -0.64 pt,
    static +33% GPU-h on seed 0) within +/-0.5 points and +/-3% GPU-hours, on two seeds."""
    ref, got = _replays(which, request)
    a, b = ref.results[kind].summary, got.results[kind].summary
    assert abs(100 * (b.slo_attainment - a.slo_attainment)) <= 0.5, (kind, a, b)
    assert abs(b.gpu_hours / a.gpu_hours - 1) <= 0.03, (kind, a, b)


@pytest.mark.parametrize("which", ["history", "history_seed0"])
def test_the_static_fleet_is_sized_on_the_same_busiest_minute(
        which: str, request: pytest.FixtureRequest) -> None:
    ref, got = _replays(which, request)
    # The static fleet is sized on the same busiest minute (not an overstated one).
    assert got.specs[PolicyKind.STATIC].static_replicas == \
        ref.specs[PolicyKind.STATIC].static_replicas
    # The workload is not trivially easy: some policy misses the SLO somewhere.
    assert min(r.summary.slo_attainment for r in ref.results.values()) < 0.999


def _off_grid(h: History, workload: str) -> tuple[HistorySpec, Reconstruction]:
    spec = _offset_spec(h.query.start, workload)
    q = HistoryQuery(Target("llm", workload), spec.start_unix,
                     spec.start_unix + spec.trace.duration_s, 60.0)
    src = PrometheusSource(PrometheusConfig(url=h.url, timeout_s=120))
    q, _ = at_scrape_step(src, q)  # --step auto
    rec = reconstruct(src, q)
    src.close()
    return spec, rec


@pytest.mark.parametrize("workload", list(OFF_GRID))
def test_samples_off_the_query_grid_read_back_at_their_own_times(
        history_seed0: History, workload: str) -> None:
    """Scrapes 23 s past the minute, or every 15 s at 11 s past, read by a real Prometheus
    at ``--step auto``: the step is the scrape interval, read from the samples; every bin of
    the reconstruction is the trace's requests between two scrapes (the cumulative trace at
    the scrape times), and the trace starts on the scrape phase (37 s, or 4 s, before the
    range). Before, every minute's requests were placed 37 s late, and 15-s scrapes were
    read as 60-s bins."""
    scrape, phase = OFF_GRID[workload]
    spec, rec = _off_grid(history_seed0, workload)
    assert rec.step_s == scrape
    assert rec.start_unix == pytest.approx(spec.start_unix + phase - scrape, abs=1e-3)
    got = rec.trace.rates_rps
    assert got is not None
    rates = spec.trace.rates_rps
    assert rates is not None
    edges = np.arange(len(rates) + 1) * 60.0
    cum = np.concatenate(([0.0], np.cumsum(rates * 60.0)))
    origin = rec.start_unix - spec.start_unix
    want = np.diff(np.interp(origin + np.arange(len(got) + 1) * scrape, edges, cum)) / scrape
    known = ~rec.trace.gap_mask(scrape)[:len(got)]
    # Only the first minutes are missing (before a pod reported twice).
    assert known.sum() >= len(got) - round(300 / scrape), rec.trace.gaps
    np.testing.assert_allclose(got[known], want[known], rtol=1e-6)


@pytest.mark.parametrize("workload", list(OFF_GRID))
def test_static_on_the_busiest_five_minutes_does_not_depend_on_the_scrape_phase(
        history_seed0: History, workload: str) -> None:
    """The busiest single minute read from scrapes off the grid is lower than the trace's
    (this window holds the seed-0 minute of 100.2 req/s that 23-s-late scrapes read as 90.3:
    ``replaying.busiest_rate``), a replica of 12.1 req/s fewer; the busiest 5 minutes move
    by at most their bound, 2 x (scrape x the largest minute-to-minute step / 4) / 300 s,
    and size the same fleet."""
    spec, rec = _off_grid(history_seed0, workload)
    profile = load_profile("llama3-8b-h100")
    opts = ReplayOptions(engine="fluid", max_replicas=20, static_window_s=300.0)
    cap = capacity_for(spec.trace, profile, opts.slo_ttft_s)
    a = default_specs(spec.trace, profile, cap, opts)[PolicyKind.STATIC].static_replicas
    b = default_specs(rec.trace, profile, cap, opts)[PolicyKind.STATIC].static_replicas
    assert a == b
    rates = spec.trace.rates_rps
    assert rates is not None
    bound = 2 * OFF_GRID[workload][0] * float(np.max(np.abs(np.diff(rates)))) / 4 / 300.0
    assert abs(busiest_rate(rec.trace, 300.0) - busiest_rate(spec.trace, 300.0)) <= bound


@pytest.mark.parametrize(("field", "tolerance"), [
    pytest.param("step_base_s", 0.10, id="step-base"),
    pytest.param("step_per_decode_seq_s", 0.10, id="decode-per-seq"),
    pytest.param("step_per_prefill_token_s", 0.10, id="prefill-per-token"),
    pytest.param("num_gpu_blocks", 0.10, id="kv-blocks"),
    pytest.param("block_size", 0.0, id="kv-block-size"),
    pytest.param("cold_start_s", 0.10, id="cold-start"),
    # The bursts overload the fixed schedule: the running batch plateaus at the limit.
    pytest.param("max_num_seqs", 0.10, id="max-num-seqs-from-saturation"),
])
def test_profile_fit_recovers_the_twin_profile(history: History, field: str,
                                               tolerance: float) -> None:
    f = _fit(history).fields[field]
    true = float(getattr(history.profile, field))
    assert f.fitted, f.how
    assert abs(float(f.value) / true - 1) <= tolerance, (field, f.value, true, f.quality)


def test_cold_start_jitter_from_few_pods_is_reported_with_its_interval(
        history: History) -> None:
    """A day and a quarter starts only a handful of pods: the jitter cannot be fitted to
    +/-10% from them (30 starts would be needed), and the fit says so, with a 90% interval
    that holds the true value."""
    f = _fit(history).fields["cold_start_jitter_s"]
    true = history.profile.cold_start_jitter_s
    assert f.fitted
    assert f.quality["jitter_low_s"] <= true <= f.quality["jitter_high_s"], f.quality
    starts = int(f.quality["pods"])
    assert starts < 30
    assert f"could not be fitted to +/-10% with {starts} starts" in f.warning


def test_unfittable_fields_are_reported_with_the_default_kept(history: History) -> None:
    base = load_profile("llama3-70b-4xh100")
    for field in ("gpus_per_replica", "gpu_hour_cost", "max_num_batched_tokens"):
        f = _fit(history).fields[field]
        assert not f.fitted
        assert f.value == getattr(base, field)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", *args],
                          capture_output=True, text=True, timeout=600)


def test_cli_export_fit_and_replay_read_back(history: History, tmp_path: Path) -> None:
    q = history.query
    rng = ["--prometheus", history.url, "--target", "llm/chat", "--start", f"{q.start:.0f}",
           "--end", f"{q.end:.0f}"]
    out = tmp_path / "fleet.json.gz"
    proc = _cli("trace", "export", *rng, "--out", str(out), "--anonymise")
    assert proc.returncode == 0, proc.stderr
    assert "collection gap" in proc.stdout
    prof = tmp_path / "fitted.yaml"
    proc = _cli("profile", "fit", *rng, "--out", str(prof), "--json", str(tmp_path / "f.json"))
    assert proc.returncode == 0, proc.stderr
    fit = json.loads((tmp_path / "f.json").read_text())
    assert fit["fields"]["num_gpu_blocks"]["fitted"] is True
    assert "# default:" in prof.read_text()  # unfitted fields are marked in the file
    assert "# imprecise: could not be fitted" in prof.read_text()
    assert "could not be fitted" in fit["fields"]["cold_start_jitter_s"]["warning"]
    assert "IMPRECISE: could not be fitted to +/-10%" in proc.stdout
    proc = _cli("replay", "--trace", str(out), "--profile", str(prof), "--policies", "hpa",
                "--engine", "fluid", "--json", "-", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["results"][0]["policy"] == "hpa"
    assert doc["trace"]["requests"] == pytest.approx(history.rec.trace.request_count, rel=1e-6)
