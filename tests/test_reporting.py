"""The HTML replay report: numbers behind it, files written, and the page itself in a real
headless Chromium (Debian's package; installed here when missing and we are root, like the
Prometheus the other tests use)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from autoscaler.core.spec import PolicyKind
from autoscaler.replaying import ReplayOptions, compare
from autoscaler.reporting.replay_report import _group, hourly_attainment, write_report
from autoscaler.sim.profiles import load_profile
from autoscaler.traces.synthetic import default_workload
from tests.support.debian import debian_binary


def chromium_binary() -> str:
    return debian_binary("chromium", names=("chromium", "chromium-browser"),
                         skip_env="AUTOSCALER_CHROMIUM", make_target="chromium")


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    # --virtual-time-budget lets the page's scripts (plotly's rendering) run to completion
    # before the DOM is dumped or the screenshot taken, without a wall-clock sleep.
    return subprocess.run(
        [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
         "--hide-scrollbars", "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("values", "k", "how", "expected"), [
    pytest.param([1, 5, 2, 2, 9], 2, "max", [5, 2, 9], id="max-keeps-short-peaks"),
    pytest.param([1, 5, 2, 2, 9], 2, "min", [1, 2, 9], id="min"),
    pytest.param([1, 5, 2, 2, 9], 2, "mean", [3, 2, 9], id="mean-of-partial-group"),
    pytest.param([1, 5], 1, "max", [1, 5], id="no-downsampling"),
])
def test_downsampling(values: list[float], k: int, how: str, expected: list[float]) -> None:
    np.testing.assert_array_equal(_group(np.asarray(values, dtype=float), k, how), expected)


def test_hourly_attainment_is_request_weighted() -> None:
    # Hour 0: 2 bins of 1,800 s: 100 req at 100% and 300 req at 90% -> 370/400 = 92.5%.
    # Hour 1: one bin with no requests -> NaN (not 0, not 100).
    t = np.asarray([0.0, 1800.0, 3600.0])
    rps = np.asarray([100 / 1800, 300 / 1800, 0.0])
    att = np.asarray([1.0, 0.9, np.nan])
    hours, got = hourly_attainment(t, rps, att, 1800.0)
    np.testing.assert_array_equal(hours, [0.0, 1.0])
    assert got[0] == pytest.approx(0.925)
    assert np.isnan(got[1])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    trace = default_workload(seed=1, duration_s=3 * 3600.0)
    trace = type(trace)(**{**trace.__dict__, "gaps": ((4000.0, 4600.0),)})
    decisions: dict[str, list[dict[str, object]]] = {}

    def keep(kind: PolicyKind, t: float, snap: object, d: object) -> None:
        from autoscaler.replaying import decision_record

        rec = decision_record(kind, t, snap, d)  # type: ignore[arg-type]
        if rec["replicas"] != rec["current"]:
            decisions.setdefault(kind.value, []).append(rec)

    comparison = compare(trace, load_profile(), (PolicyKind.HPA, PolicyKind.PREDICTIVE,
                                                 PolicyKind.STATIC),
                         ReplayOptions(engine="fluid"), on_decision=keep)
    out = tmp_path_factory.mktemp("report")
    return write_report(comparison, out, decisions)


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text()
    text = " ".join(page.split())
    # No script or stylesheet from anywhere but the page itself (works offline).
    assert not re.search(r"<script[^>]+src=", page)
    # (plotly.js itself names its CDN for map tiles and MathJax, which these charts never
    # load; what matters is that nothing is fetched to draw them.)
    assert "<link" not in page and "plotly.js v" in page
    for png in ("replicas.png", "comparison.png"):
        data = (report.parent / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # Every column of the summary table, dollars included ($2.5 per GPU-hour).
    for header in ("SLO attainment", "GPU-hours", "cost ($)", "TTFT p50 (s)", "p95 (s)",
                   "p99 (s)", "scale events", "mean replicas", "max replicas"):
        assert f"<th>{header}</th>" in page
    assert "Replay bins are 60 s" in text
    assert "1 collection gap(s)" in text


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    proc = _chromium("--dump-dom", report.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    # Three plotly panels rendered to SVG, and no script error recorded by the page.
    html_tag = re.search(r"<html[^>]*>", dom)
    assert html_tag is not None
    assert 'data-panels="3"' in html_tag.group(0)
    assert 'data-report-errors="0"' in html_tag.group(0), html_tag.group(0)
    assert dom.count('class="main-svg"') >= 3
    for title in ("Comparison", "One panel per policy", "Cost against attainment"):
        assert f"data-panel=\"{title}\"" in dom
    # Small multiples: one subplot title per policy, with the policy's figures.
    for policy in ("hpa", "predictive", "static"):
        assert re.search(rf"{policy}: \d+\.\d\d% attainment", dom)
    # Plain axis labels: no exponent offsets like "+1.405e3".
    assert not re.search(r">[+−-]?\d(\.\d+)?e[+−-]?\d+<", dom)
    shot = tmp_path / "shot.png"
    proc = _chromium("--window-size=1300,2400", f"--screenshot={shot}", report.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one


def _tune_doc() -> dict[str, object]:
    def cand(policy: str, i: int, gpu_h: float, att: float) -> dict[str, object]:
        return {"policy": policy, "index": i, "params": {"target": 0.5 + i / 10},
                "gpu_hours": gpu_h, "attainment": att, "scale_events": 3,
                "ttft_p99_s": 1.0, "mean_replicas": 2.0, "error": None}

    hpa = [cand("hpa", i, 10 + i, a) for i, a in enumerate((0.97, 0.995, 0.9991, 1.0))]
    pred = [cand("predictive", i, 9 + i, a) for i, a in enumerate((0.98, 0.9993, 1.0))]
    pol = {
        "hpa": {"feasible": True, "best": hpa[2], "spec": None, "pareto": hpa,
                "in_sample": {"gpu_hours": 12.0, "attainment": 0.9991, "gpu_vs_oracle": 1.3,
                              "scale_events": 3},
                "held_out": {"gpu_hours": 6.0, "attainment": 0.998, "gpu_vs_oracle": 1.4,
                             "scale_events": 2},
                "degradation": {"attainment_drop": 0.0011}, "trials": 4,
                "feasible_trials": 2, "failed_trials": 0, "candidates": hpa},
        "predictive": {"feasible": True, "best": pred[1], "spec": None, "pareto": pred,
                       "in_sample": {"gpu_hours": 10.0, "attainment": 0.9993,
                                     "gpu_vs_oracle": 1.1, "scale_events": 5},
                       "held_out": None, "degradation": None, "trials": 3,
                       "feasible_trials": 2, "failed_trials": 0, "candidates": pred},
    }
    return {"settings": {"attainment": 0.999, "slo_ttft_s": 2.0}, "budget": 4, "seed": 0,
            "method": "tpe", "trace": {"name": "t", "duration_s": 3600.0, "requests": 10},
            "split": {"holdout": 0.25, "train_s": 2700.0, "held_out_s": 900.0},
            "profile": "p", "capacity_rps": 7.0,
            "oracle": {"in_sample": {"gpu_hours": 9.0, "attainment": 1.0},
                       "held_out": {"gpu_hours": 4.0, "attainment": 1.0}},
            "bound": {"gpu_hours": 8.5, "definition": "fluid lower bound"},
            "policies": pol}


def test_tune_report_names_the_winner_and_renders(tmp_path: Path) -> None:
    from autoscaler.reporting.tune_report import write_tune_report

    index = write_tune_report(_tune_doc(), tmp_path / "tune")
    page = " ".join(index.read_text().split())
    # predictive: 10.0 GPU-h at 99.93% beats hpa's 12.0 at 99.91% (both meet 99.9%).
    assert "Winner: <b>predictive</b>" in page
    assert "predictive ★ winner" in page
    assert "Lower bound: 8.50 GPU-h (fluid lower bound)" in page
    assert (tmp_path / "tune" / "pareto.png").stat().st_size > 10_000
    dom = _chromium("--dump-dom", index.as_uri()).stdout
    tag = re.search(r"<html[^>]*>", dom)
    assert tag is not None and 'data-panels="1"' in tag.group(0)
    assert 'data-report-errors="0"' in tag.group(0)
    # Log axis of the missed share: 1% and 0.1% are both labelled, plainly.
    assert re.search(r">0\.1<", dom) and re.search(r">1<", dom)


@pytest.mark.parametrize(("policy", "kept", "dropped"), [
    pytest.param("kpa", {"kpa", "behavior"}, {"predictive", "metrics", "staticReplicas"},
                 id="kpa"),
    pytest.param("hpa", {"metrics", "behavior"}, {"kpa", "predictive", "staticReplicas"},
                 id="hpa"),
    pytest.param("static", {"staticReplicas"}, {"kpa", "predictive", "metrics"}, id="static"),
    pytest.param("hpa-running", {"metrics", "behavior"},
                 {"kpa", "predictive", "staticReplicas", "keda", "wva"}, id="hpa-running"),
    pytest.param("keda", {"metrics", "keda", "behavior"},
                 {"kpa", "predictive", "staticReplicas", "wva"}, id="keda"),
    pytest.param("wva", {"wva", "behavior"},
                 {"kpa", "predictive", "staticReplicas", "metrics", "keda"}, id="wva"),
])
def test_emitted_spec_keeps_its_policy_sections_and_rounds(
        policy: str, kept: set[str], dropped: set[str]) -> None:
    from autoscaler.cli.tune import tidy_spec

    doc = {"policy": policy, "maxReplicas": 10, "staticReplicas": 3, "metrics": [],
           "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}},
           "kpa": {"targetRps": 0.30000000000000004}, "predictive": {"headroomQuantile": 0.9},
           "keda": {"cooldownPeriod": 300}, "wva": {"kvCacheThreshold": 0.8},
           "capacity": {"requestsPerSecond": 7.123456789, "concurrency": 123456.789}}
    out = tidy_spec(doc)
    assert kept <= set(out) and not (dropped & set(out))
    # Four significant digits, but whole units kept: 7.123456789 -> 7.123;
    # 123,456.789 -> 123,457 (not 123,500: a rounded capacity would change the spec).
    assert out["capacity"] == {"requestsPerSecond": 7.123, "concurrency": 123457.0}
    if policy == "kpa":
        assert out["kpa"]["targetRps"] == 0.3


def test_every_policy_has_its_own_colour() -> None:
    # Four baselines once shared one grey, so their lines could not be told apart.
    from autoscaler.core.spec import PolicyKind
    from autoscaler.reporting.replay_report import color
    names = sorted({p.value for p in PolicyKind} - {"oracle"})  # oracle = hindsight's old name
    assert len({color(n) for n in names}) == len(names)
