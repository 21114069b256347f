"""The stock HPA between our decision and the scale (Metrics mode), as the replay runs it,
and the ``autoscaler replay`` flags that replay a live setup as it runs (loop timings,
``--via-hpa``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.cli import main
from autoscaler.cli.common import load_spec_input
from autoscaler.core import decide as core_decide
from autoscaler.core.types import Decision, Reason, Snapshot, State
from autoscaler.errors import SpecError
from autoscaler.sim.profiles import load_profile
from autoscaler.sim.replay import replay
from autoscaler.twin.stock_hpa import VALUE, StockHpa, check_period, wrap_decide


@pytest.mark.parametrize(("hpa", "served", "current", "ready", "want"), [
    # AverageValue 1 on our count N at R replicas: ratio N / R, tolerance [0.9, 1.1].
    pytest.param(StockHpa(2.0), 8, 7, 7, 8, id="8 at 7: ratio 1.14, applied"),
    pytest.param(StockHpa(2.0), 3, 7, 7, 3, id="3 at 7: ratio 0.43, applied"),
    pytest.param(StockHpa(2.0), 9, 10, 10, 10, id="9 at 10: ratio 0.9, inside, held"),
    pytest.param(StockHpa(2.0), 11, 10, 10, 10, id="11 at 10: ratio 1.1, inside, held"),
    pytest.param(StockHpa(2.0), 12, 10, 10, 12, id="12 at 10: ratio 1.2, applied"),
    pytest.param(StockHpa(2.0, tolerance=0.0), 11, 10, 10, 11, id="tolerance 0: 11 at 10"),
    # AverageValue 2: ceil(usage / target) = ceil(9 / 2) = 5 (ratio 9 / (2 x 3) = 1.5).
    pytest.param(StockHpa(2.0, target=2.0), 9, 3, 3, 5, id="AverageValue 2: ceil(9/2)"),
    # Value 6 with 6 replicas, 3 ready: ratio 8 / 6 = 1.33, ceil(1.33 x 3 ready) = 4.
    pytest.param(StockHpa(2.0, target_type=VALUE, target=6.0), 8, 6, 3, 4,
                 id="Value: ratio times ready, fewer than current"),
    # Value 6, served 6.5: ratio 1.083, inside: the current 6, whatever is ready.
    pytest.param(StockHpa(2.0, target_type=VALUE, target=6.0), 6.5, 6, 2, 6,
                 id="Value: inside the tolerance"),
    # Milli-units: 1.1004 truncates to 1100 m, ratio 1.1 against Value 1: inside.
    pytest.param(StockHpa(2.0, target_type=VALUE, target=1.0), 1.1004, 1, 1, 1,
                 id="Value: milli-units truncate into the tolerance"),
    pytest.param(StockHpa(2.0), 30, 8, 8, 20, id="clamped to the spec's maxReplicas 20"),
    pytest.param(StockHpa(2.0), 0, 3, 3, 1, id="clamped to minReplicas 1"),
    pytest.param(StockHpa(2.0, max_replicas=6), 9, 4, 4, 6, id="the HPA's own maxReplicas"),
])
def test_one_hpa_sync_writes_what_the_hpa_arithmetic_gives(
        hpa: StockHpa, served: float, current: int, ready: int, want: int) -> None:
    assert hpa.proposal(served, current, ready, max_replicas=20) == want


@pytest.mark.parametrize(("hpa", "read"), [
    # Decisions every 1 s at 1, 2, ..., 8; the HPA syncs every 2 s.
    pytest.param(StockHpa(2.0, offset_s=0.0), [2, 4, 6, 8], id="syncs at 0, 2, 4 ..."),
    pytest.param(StockHpa(2.0, offset_s=1.0), [1, 3, 5, 7], id="syncs at 1, 3, 5 ..."),
    pytest.param(StockHpa(2.0, offset_s=0.4), [2, 4, 6, 8], id="syncs at 0.4, 2.4 ..."),
    pytest.param(StockHpa(2.0, offset_s=1.6), [1, 3, 5, 7], id="syncs at 1.6, 3.6 ..."),
    pytest.param(StockHpa(1.0), [1, 2, 3, 4, 5, 6, 7, 8], id="every decision"),
    pytest.param(StockHpa(4.0, offset_s=3.0), [3, 7], id="every 4 s from 3"),
])
def test_each_hpa_sync_reads_the_newest_decision(hpa: StockHpa, read: list[int]) -> None:
    assert [t for t in range(1, 9) if hpa.reads_at(float(t), 1.0)] == read


def _fake_policy(counts: list[int], valid: bool = True) -> Any:
    """Decides ``counts`` in turn; each call returns a new State (so we see it carried)."""
    calls: list[State] = []

    def decide(snap: Snapshot, state: State, spec: Any, now: float
               ) -> tuple[Decision, State]:
        n = counts[len(calls)]
        calls.append(state)
        new = State(recommendations=(*state.recommendations, (now, n)))
        return Decision(replicas=n, reason=Reason.DESIRED_WITHIN_RANGE, message="m",
                        valid=valid), new

    decide.calls = calls  # type: ignore[attr-defined]
    return decide


class _Spec:
    sync_period_s = 1.0
    max_replicas = 10


def test_between_hpa_syncs_the_count_holds_and_our_policy_still_runs() -> None:
    inner = _fake_policy([5, 6, 7, 7])
    step = wrap_decide(inner, StockHpa(2.0))
    state, current, got = State(), 4, []
    for t in (1.0, 2.0, 3.0, 4.0):
        d, state = step(Snapshot(current_replicas=current, ready_replicas=current), state,
                        _Spec(), t)  # type: ignore[arg-type]
        got.append(d.replicas)
        current = d.replicas
    # t=1: served 5, no sync reads it: hold 4. t=2: the sync at 2 reads 6 (6/4 = 1.5).
    # t=3: hold 6. t=4: served 7 at 6 replicas, ratio 1.17: 7.
    assert got == [4, 6, 6, 7]
    assert len(inner.calls) == 4  # our policy decided every period
    assert [n for _, n in state.recommendations] == [5, 6, 7, 7]  # and its state carried


def test_a_withheld_value_leaves_the_count_alone() -> None:
    step = wrap_decide(_fake_policy([9], valid=False), StockHpa(1.0))
    d, _ = step(Snapshot(current_replicas=4, ready_replicas=4), State(), _Spec(),
                1.0)  # type: ignore[arg-type]
    assert not d.valid and d.replicas == 9  # passed on: the loop's guard holds at 4


@pytest.mark.parametrize(("kwargs", "field"), [
    pytest.param({"sync_period_s": 0.0}, "hpa.syncPeriodSeconds", id="sync 0"),
    pytest.param({"sync_period_s": 2.0, "offset_s": 2.0}, "hpa.offsetSeconds",
                 id="offset not below the sync period"),
    pytest.param({"sync_period_s": 2.0, "tolerance": 1.0}, "hpa.tolerance", id="tolerance 1"),
    pytest.param({"sync_period_s": 2.0, "target_type": "Utilization"}, "hpa.target.type",
                 id="Utilization"),
    pytest.param({"sync_period_s": 2.0, "target": 0.0}, "hpa.target", id="target 0"),
])
def test_a_bad_hpa_names_its_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        StockHpa(**kwargs)
    assert info.value.field == field


def test_an_hpa_period_must_be_a_whole_number_of_sync_periods() -> None:
    check_period(StockHpa(2.0), _Spec())  # type: ignore[arg-type]
    with pytest.raises(SpecError) as info:
        check_period(StockHpa(1.5), _Spec(), "--via-hpa")  # type: ignore[arg-type]
    assert info.value.field == "--via-hpa"


# --- through a replay --------------------------------------------------------------------

SPEC: dict[str, Any] = {
    "policy": "hpa", "minReplicas": 1, "maxReplicas": 10, "syncPeriodSeconds": 1,
    "metrics": [{"metric": "request_rate", "target": {"type": "AverageValue", "value": 10}}],
    "capacity": {"requestsPerSecond": 10, "concurrency": 64},
    "coldStartSeconds": 6, "maxMetricAgeSeconds": 4,
    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 20}},
}


def _files(tmp_path: Path) -> tuple[Path, Path]:
    """A 120-s rate-level trace (a ramp 5 -> 60 -> 20 req/s, 1-s steps) and the spec."""
    rates = [5 + 55 * t / 60 if t < 60 else 60 - 40 * (t - 60) / 60 for t in range(120)]
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({
        "format": "autoscaler-fleet-trace/v1", "name": "ramp", "step_s": 1.0,
        "duration_s": 120.0, "rates_rps": rates, "gaps": [],
        "token_mix": {"mean_prompt_tokens": 1000.0, "mean_output_tokens": 200.0}}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    return trace, spec


LOOP = ["--scrape-interval", "1", "--rate-window", "4", "--actuation-delay", "1.125",
        "--initial-replicas", "2"]


@pytest.mark.parametrize("hpa", [None, StockHpa(2.0, offset_s=1.0)],
                         ids=["Scale mode", "Metrics mode via a 2-s HPA"])
def test_the_loop_flags_replay_exactly_what_the_api_replays(
        tmp_path: Path, hpa: StockHpa | None) -> None:
    trace_path, spec_path = _files(tmp_path)
    argv = ["replay", "--trace", str(trace_path), "--spec", str(spec_path), "--policies",
            "hpa", "--engine", "fluid", "--no-progress", "--json", str(tmp_path / "r.json"),
            "--decisions", str(tmp_path / "d.jsonl"), *LOOP]
    if hpa is not None:
        argv += ["--via-hpa", "2", "--via-hpa-offset", "1"]
    assert main(argv) == 0
    cli = [json.loads(line)["replicas"] for line in (tmp_path / "d.jsonl").open()]
    gpu_h = json.loads((tmp_path / "r.json").read_text())["results"][0]["gpu_hours"]

    # The reference: replay() called directly with the same values.
    from autoscaler.fleetdata.tracefile import load_trace_file

    seen: list[int] = []
    result = replay(load_trace_file(trace_path), load_spec_input(str(spec_path)),
                    load_profile("llama3-8b-h100"), engine="fluid", initial_replicas=2,
                    scrape_interval_s=1.0, rate_window_s=4.0, actuation_delay_s=1.125,
                    on_decision=lambda t, s, d: seen.append(d.replicas),
                    decide=None if hpa is None else wrap_decide(core_decide, hpa))
    assert cli == seen
    assert gpu_h == pytest.approx(result.summary.gpu_hours, rel=1e-12)
    assert len(cli) == 120  # one decision per 1-s sync period
    if hpa is not None:
        # Only the HPA's syncs (at 1, 3, 5 ... s) move the count.
        moved = [t for t in range(1, len(cli)) if cli[t] != cli[t - 1]]
        assert moved and all(t % 2 == 0 for t in moved), moved  # index t = decision t+1


def test_the_default_replay_is_unchanged_by_the_new_flags_being_absent(
        tmp_path: Path) -> None:
    trace_path, spec_path = _files(tmp_path)
    base = ["replay", "--trace", str(trace_path), "--spec", str(spec_path), "--policies",
            "hpa", "--engine", "fluid", "--no-progress"]
    assert main([*base, "--json", str(tmp_path / "a.json")]) == 0
    # The replay's own defaults, written out: a 1-s sync period scrapes every min(15, 1) s,
    # a 60-s rate window, a 2-s actuation delay.
    assert main([*base, "--json", str(tmp_path / "b.json"), "--scrape-interval", "1",
                 "--rate-window", "60", "--actuation-delay", "2"]) == 0
    a = json.loads((tmp_path / "a.json").read_text())["results"][0]
    b = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert (a["gpu_hours"], a["slo_attainment"]) == (b["gpu_hours"], b["slo_attainment"])


@pytest.mark.parametrize(("args", "fragment"), [
    pytest.param(["--scrape-interval", "0"], "--scrape-interval", id="scrape 0"),
    pytest.param(["--scrape-interval", "5000"], "--scrape-interval", id="scrape too long"),
    pytest.param(["--rate-window", "-1"], "--rate-window", id="window negative"),
    pytest.param(["--scrape-interval", "2", "--rate-window", "3"], "--rate-window",
                 id="window under two scrapes"),
    pytest.param(["--rate-window", "1.5"], "--rate-window",
                 id="window under two scrapes of the default 1 s (the sync period)"),
    pytest.param(["--actuation-delay", "-0.5"], "--actuation-delay", id="delay negative"),
    pytest.param(["--initial-replicas", "1.5"], "--initial-replicas", id="replicas 1.5"),
    pytest.param(["--initial-replicas", "11"], "--initial-replicas", id="above maxReplicas"),
    pytest.param(["--via-hpa", "0"], "--via-hpa", id="hpa sync 0"),
    pytest.param(["--via-hpa", "2", "--via-hpa-offset", "2"], "--via-hpa-offset",
                 id="hpa offset not below its sync"),
    pytest.param(["--via-hpa", "2", "--via-hpa-tolerance", "1"], "--via-hpa-tolerance",
                 id="tolerance 1"),
    pytest.param(["--via-hpa", "1.5"], "--via-hpa", id="hpa sync not a whole number of syncs"),
])
def test_a_bad_loop_flag_is_one_line_naming_it_and_exit_code_two(
        tmp_path: Path, args: list[str], fragment: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    trace_path, spec_path = _files(tmp_path)
    code = main(["replay", "--trace", str(trace_path), "--spec", str(spec_path),
                 "--policies", "hpa", "--engine", "fluid", "--no-progress", *args])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and "Traceback" not in err, err

