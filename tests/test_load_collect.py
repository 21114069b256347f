"""``Collector.collect(..., only=True)``: the controller judges only the autoscalers due this
tick. Checked against the slow obvious reference, the unfiltered collect of the same round:
for every asked target the observation is the same, and no other target is judged."""

from __future__ import annotations

import pytest

from autoscaler.metrics.collect import Collector, CollectorConfig, TargetKey
from autoscaler.metrics.presets import get_preset
from tests.support.promfake import MeaningPrometheus

NS = "llm"
AT = 1_000_000.0


def store(rates: dict[str, float], *, up: bool = True, pods: int = 2) -> MeaningPrometheus:
    """Each workload: ``pods`` pods scraped every 15 s up to 1 s before ``AT``, counting
    first tokens at ``rate`` / pods each, an empty queue, and a TTFT histogram whose 0.5-s
    bucket holds 2 of every 3 first tokens."""
    prom = MeaningPrometheus(up=up)
    times = [AT - 1.0 - 15.0 * k for k in range(8)][::-1]
    for wl, rate in rates.items():
        for i in range(pods):
            labels = {"namespace": NS, "workload": wl, "pod": f"{wl}-{i}"}
            per = rate / pods
            prom.add("vllm:time_to_first_token_seconds_count", labels,
                     [(t, 1000.0 + per * t) for t in times])
            prom.add("vllm:num_requests_waiting", labels, [(t, 0.0) for t in times])
            for le, share in (("0.5", 2 / 3), ("+Inf", 1.0)):
                prom.add("vllm:time_to_first_token_seconds_bucket", {**labels, "le": le},
                         [(t, share * per * t) for t in times])
    return prom


@pytest.mark.parametrize(("rates", "asked", "up"), [
    pytest.param({"a": 4.0, "b": 8.0, "c": 2.0}, ["a"], True, id="one-of-three"),
    pytest.param({"a": 4.0, "b": 8.0, "c": 2.0}, ["a", "c"], True, id="two-of-three"),
    pytest.param({"a": 4.0, "b": 8.0}, ["a", "b"], True, id="all"),
    # Asked for but absent from Prometheus: still there, with readings saying missing.
    pytest.param({"a": 4.0, "b": 8.0}, ["b", "gone"], True, id="one-missing"),
    pytest.param({"a": 4.0, "b": 8.0}, [], True, id="none-asked"),
    pytest.param({"a": 4.0, "b": 8.0}, ["a"], False, id="prometheus-down"),
])
def test_only_the_asked_targets_are_judged_as_the_full_round_judges_them(
        rates: dict[str, float], asked: list[str], up: bool) -> None:
    targets = [TargetKey(NS, n) for n in asked]
    cfg = CollectorConfig(preset=get_preset("vllm"), window="1m", max_age_s=60.0)
    full = Collector(store(rates, up=up), cfg).collect(AT, targets)
    only = Collector(store(rates, up=up), cfg).collect(AT, targets, only=True)
    assert set(only.observations) == set(targets)
    for key in targets:
        assert only.observations[key] == full.observations[key], key
    # The reference judges every workload Prometheus knows; the filtered round no more.
    assert set(full.observations) == set(targets) | ({TargetKey(NS, n) for n in rates}
                                                     if up else set())
    assert (only.queries, dict(only.errors)) == (full.queries, dict(full.errors))
