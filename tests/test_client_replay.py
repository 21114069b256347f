"""``benchmarks/client_replay.py``: the goal's verdict per client, its ceiling and onset
figures, and a small end-to-end run on two clients."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import client_replay as cr

VERDICTS = [
    pytest.param({"hpa": (0.95, 10.0), "predictive": (0.96, 9.0)}, True, [],
                 id="predictive higher and cheaper: met"),
    pytest.param({"hpa": (0.97, 9.0), "predictive": (0.96, 10.0)}, False,
                 ["dominated by hpa"], id="higher attainment for fewer GPU-h: dominated"),
    pytest.param({"hpa": (0.96, 9.0), "predictive": (0.96, 10.0)}, True, [],
                 id="equal attainment, fewer GPU-h: not dominated"),
    pytest.param({"hpa": (0.992, 10.0), "predictive": (0.995, 12.0)}, False,
                 ["99% rule broken by hpa"], id="both at 99 %, the baseline cheaper"),
    pytest.param({"hpa": (0.992, 12.0), "predictive": (0.989, 10.0)}, False,
                 ["99% rule broken by hpa"], id="the baseline at 99 %, predictive below"),
    pytest.param({"hpa": (0.992, 12.0), "predictive": (0.990, 12.0)}, True, [],
                 id="predictive at 99 % for the same GPU-h: met"),
    pytest.param({"kpa": (0.995, 5.0), "wva": (0.80, 1.0), "predictive": (0.90, 6.0)},
                 False, ["dominated by kpa", "99% rule broken by kpa"],
                 id="both clauses broken, one note each"),
]


@pytest.mark.parametrize(("results", "met", "notes"), VERDICTS)
def test_the_goal_verdict_follows_the_issues_rule(results: dict[str, tuple[float, float]],
                                                  met: bool, notes: list[str]) -> None:
    assert cr.goal_verdict(results) == (met, notes)


def test_the_front_keeps_every_policy_no_other_beats_on_both() -> None:
    results = {"a": (0.99, 10.0), "b": (0.95, 5.0), "c": (0.94, 6.0), "d": (0.985, 11.0)}
    # c is beaten by b (higher, cheaper); d by a; a and b trade attainment for GPU-h.
    assert cr.pareto_front(results) == ["a", "b"]


def _slow_ceiling(arrivals: np.ndarray, mu: float, room: float) -> int:
    """Obviously correct: try 1, 2, 3, ... replicas, run the queue second by second."""
    r = 1
    while True:
        backlog, ok = 0.0, True
        for a in arrivals:
            backlog = max(0.0, backlog + a - r * mu)
            ok = ok and backlog <= r * mu * room + 1e-9
        if ok:
            return r
        r += 1


@pytest.mark.parametrize(("arrivals", "mu", "room", "replicas"), [
    # 1 replica leaves 300 - 60.7 = 239.3 queued against 60.7 x 1.98 = 120.2 of room;
    # 2 leave 178.6 against 240.4.
    pytest.param([300.0], 60.7, 1.98, 2, id="one second of 300 at 60.7 req/s: 2"),
    # 45 req/s for 100 s: 2 x 17.2 = 34.4 queues 10.6 more each second (1,060 after
    # 100 s), 3 x 17.2 = 51.6 never queues.
    pytest.param([45.0] * 100, 17.2, 2.0, 3, id="sustained 45 req/s at 17.2: 3"),
    # Two seconds of 200: R mu = c leaves 400 - 2c after the second, room 2c: c >= 100.
    pytest.param([200.0, 200.0, 0.0, 0.0], 50.0, 2.0, 2, id="two seconds of 200 at 50: 2"),
    pytest.param([0.0] * 10, 50.0, 2.0, 1, id="silence: at least 1"),
])
def test_the_ceiling_is_the_smallest_static_fleet_that_drains_every_second_in_time(
        arrivals: list[float], mu: float, room: float, replicas: int) -> None:
    a = np.asarray(arrivals)
    got = cr.ceiling_replicas(a, np.full(len(a), mu), np.full(len(a), room))
    assert got == replicas == _slow_ceiling(a, mu, room)


def test_the_ceiling_matches_a_slow_reference_on_random_bursts() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        a = rng.negative_binomial(0.3, 0.3 / (0.3 + 20.0), size=300).astype(float)
        mu, room = float(rng.uniform(5, 60)), float(rng.uniform(0.5, 3))
        assert cr.ceiling_replicas(a, np.full(300, mu), np.full(300, room)) == \
            _slow_ceiling(a, mu, room)


def test_surge_share_counts_what_waits_past_the_slo_before_new_replicas_can_serve(
        ) -> None:
    # An hour of silence, then 5 minutes at 45 req/s on replicas of 17.2 req/s: a fleet
    # of 1 queues 27.8 more each second, past 2 s of wait from t* = 2 x 17.2 / 27.8 =
    # 1.24 s, so seconds 2..136 of 137 count: 135 x 45 = 6,075 of 13,500 requests.
    rates = np.concatenate([np.zeros(3600), np.full(300, 45.0)])
    assert cr.surge_share(rates, 17.2, 137.0, 2.0) == pytest.approx(6075.0 / 13500.0)
    # A flat load never surges past twice its own last hour.
    assert cr.surge_share(np.full(7200, 45.0), 17.2, 137.0, 2.0) == 0.0
    # Doubling is within the reference fleet's headroom: 20 -> 40 req/s on 17.2 holds
    # ceil(2 x 20 / 17.2) = 3 replicas, 51.6 req/s.
    step = np.concatenate([np.full(3600, 20.0), np.full(600, 40.0)])
    assert cr.surge_share(step, 17.2, 137.0, 2.0) == 0.0
    # A second surge within the hour, to a load already seen, is no surge.
    twice = np.concatenate([np.zeros(3600), np.full(300, 45.0), np.zeros(600),
                            np.full(300, 45.0)])
    assert cr.surge_share(twice, 17.2, 137.0, 2.0) == pytest.approx(6075.0 / 27000.0)


def test_pooled_quantiles_come_from_the_histogram() -> None:
    hist = np.zeros(len(cr._EDGES))
    # 99 arrivals in the bin just above 0.5 s, 1 never served (the last bin).
    k = int(np.searchsorted(cr._EDGES, 0.5))
    hist[k] = 99.0
    hist[-1] = 1.0
    assert cr.hist_quantile(hist, 0.5) == pytest.approx(0.5, rel=0.02)
    assert cr.hist_quantile(hist, 0.99) == pytest.approx(0.5, rel=0.02)
    assert cr.hist_quantile(hist, 0.995) == math.inf


def _folder(root: Path) -> Path:
    folder = root / "sg"
    folder.mkdir()
    # Client 0 steady at 5 req/s (Gamma shape 1: Poisson); client 2 silent but for one
    # hour at 40 req/s; one day each.
    steady = [f"{i * 600},5.0,1.0,Gamma,1.0,0.2" for i in range(144)]
    burst = [f"{i * 600},40.0,2.0,Gamma,0.25,0.1" if 60 <= i < 66 else f"{i * 600},0,0,,0,0"
             for i in range(144)]
    (folder / "chunk-0-trace.csv").write_text("\n".join(steady) + "\n")
    (folder / "chunk-2-trace.csv").write_text("\n".join(burst) + "\n")
    return folder


def test_two_clients_one_day_two_policies_give_a_row_each_and_the_pooled_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path)
    assert cr.main(["--folder", str(folder), "--days", "1", "--policies",
                    "hpa,predictive"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    clients = [r.split(" | ")[0].removeprefix("| ") for r in rows]
    assert clients[1:3] == ["0", "2"]  # after the header row
    # 5 req/s x 86,400 s = 432,000 requests (Poisson: sd 657, so 1 % is > 6 sd).
    requests = float(rows[1].split(" | ")[2].replace(",", ""))
    assert requests == pytest.approx(432_000, rel=0.01)
    pooled = [r.split(" | ")[0].removeprefix("| ") for r in rows[3:]]
    assert pooled[1:] == ["hpa", "predictive", "ceiling"]
    assert "Goal met on" in out and "of 2 clients" in out


def test_unknown_clients_and_policies_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path)
    assert cr.main(["--folder", str(folder), "--clients", "1"]) == 2
    assert "no chunk-1-trace.csv" in capsys.readouterr().err
    assert cr.main(["--folder", str(folder), "--policies", "hpa,nope"]) == 2
    assert "nope is not one of" in capsys.readouterr().err
    assert cr.main(["--folder", str(folder), "--days", "0"]) == 2
    assert cr.main(["--folder", str(folder), "--clients", "0,x"]) == 2
    assert "expected ids like 0,3,7" in capsys.readouterr().err
