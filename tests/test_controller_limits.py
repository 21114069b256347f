"""The controller's own limits (issue 14), each against a fake that misbehaves on purpose:
a TCP server that accepts and never answers, a lease whose renew never returns, a metrics
source that hangs. The same faults are run against the real components in
tests/e2e/test_faults_e2e.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from autoscaler.controller.election import ElectionConfig, LeaseElector
from autoscaler.controller.kube import ApiUnavailable, KubeClient, NotFound, api_client
from autoscaler.controller.main import Health, JsonFormatter
from autoscaler.controller.resource import parse_autoscaler
from autoscaler.controller.settings import Limits, ServingLimits
from autoscaler.errors import SpecError
from autoscaler.metrics.source import PrometheusConfig, PrometheusSource, PrometheusUnavailable
from tests.support.silent import SilentServer, kubeconfig

# --- the API deadline ------------------------------------------------------------------------


def test_a_hung_api_server_costs_one_attempt_not_four(silent: SilentServer,
                                                      tmp_path: Path) -> None:
    # The kubernetes client's urllib3 pool retried 3 times on a read timeout: a hung API
    # server cost 4 attempts (4 x 10 s) per call. Now: one attempt, then ApiUnavailable.
    kube = KubeClient(api_client(str(kubeconfig(tmp_path, silent.port))), timeout_s=0.3)
    with pytest.raises(ApiUnavailable):
        kube.call("GET", "/version")
    assert silent.accepted == 1


@pytest.mark.parametrize("content", [
    pytest.param(None, id="missing file"),
    pytest.param("{not yaml: [", id="malformed"),
    pytest.param("apiVersion: v1\nkind: Config\n", id="no context"),
])
def test_a_bad_kubeconfig_is_a_spec_error_naming_the_file(tmp_path: Path,
                                                          content: str | None) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SpecError) as err:
        api_client(str(path))
    assert err.value.field == "--kubeconfig" and err.value.value == str(path)


# --- the Prometheus deadline -----------------------------------------------------------------


def test_a_hung_prometheus_read_is_not_retried(silent: SilentServer) -> None:
    # retries=2 used to apply to read timeouts too: 3 x the timeout per query (15 s a
    # source in issue 14). Connection errors and 5xx are still retried (test_metrics_*).
    source = PrometheusSource(PrometheusConfig(url=f"http://127.0.0.1:{silent.port}",
                                               timeout_s=0.3, retries=2))
    with pytest.raises(PrometheusUnavailable):
        source.query("up")
    assert silent.accepted == 1


# --- the lease watchdog ----------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class LeaseServer:
    """The Lease API in memory: GET, POST, PUT with resourceVersion checks."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0

    def call(self, method: str, path: str, body: Any = None,
             query: list[tuple[str, str]] | None = None,
             content_type: str = "application/json") -> Any:
        if method == "GET":
            if self.lease is None:
                raise NotFound("no lease", 404)
            return self.lease
        self.rv += 1
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}
        return self.lease


def test_a_leader_stops_acting_at_its_renew_deadline_while_the_renew_hangs() -> None:
    clock = FakeClock()
    elector = LeaseElector(LeaseServer(), ElectionConfig(
        namespace="ns", identity="a", lease_duration_s=15, renew_deadline_s=10.0),
        monotonic=clock)
    assert elector.step(1_000.0) is True
    assert elector.leading()
    # From here every renew hangs: step() is never called again (its thread is stuck in
    # the call). The watchdog reads only the clock.
    clock.t += 9.9
    assert elector.leading()
    clock.t += 0.2  # 10.1 s after the last renew > the 10 s renew deadline
    assert not elector.leading()


def test_the_renew_deadline_counts_from_the_start_of_the_renewing_call() -> None:
    # The renewTime a peer reads is taken before the call; a renew that took 4 s leaves
    # 10 - 4 = 6 s of acting, not 10.
    clock = FakeClock()
    lease = LeaseServer()

    class SlowLease:
        def call(self, method: str, path: str, body: Any = None,
                 query: list[tuple[str, str]] | None = None,
                 content_type: str = "application/json") -> Any:
            if method == "PUT":
                clock.t += 4.0
            return lease.call(method, path, body, query, content_type)

    elector = LeaseElector(SlowLease(), ElectionConfig(namespace="ns", identity="a",
                                                       renew_deadline_s=10.0), monotonic=clock)
    elector.step(1_000.0)  # creates the lease (POST: not slow)
    started = clock.t
    elector.step(1_002.0)  # renews: PUT takes 4 s
    assert clock.t == started + 4.0
    clock.t = started + 9.9
    assert elector.leading()
    clock.t = started + 10.1
    assert not elector.leading()


# --- health, logs, limits ----------------------------------------------------------------------


def test_healthz_follows_the_loops_progress_not_the_leadership() -> None:
    clock = FakeClock()
    health = Health(stall_s=30.0, clock=clock)
    clock.t += 29.0
    assert health.alive()
    health.tick()
    clock.t += 29.0  # 29 s since the last iteration ended
    assert health.alive()
    clock.t += 2.0  # 31 s
    assert not health.alive()


def test_the_json_log_keeps_extra_fields() -> None:
    record = logging.LogRecord("autoscaler.controller", logging.INFO, __file__, 1,
                               "became leader", None, None)
    record.identity = "pod-a"
    record.cycle_s = 0.25
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "became leader"
    assert doc["identity"] == "pod-a" and doc["cycle_s"] == 0.25
    assert "args" not in doc and "levelno" not in doc


@pytest.mark.parametrize(("kwargs", "flag"), [
    pytest.param({"api_timeout_s": 0.0}, "--api-timeout", id="zero API deadline"),
    pytest.param({"cycle_deadline_s": 40.0}, "--cycle-deadline",
                 id="cycle deadline beyond the liveness threshold"),
    pytest.param({"source_deadline_s": -1.0}, "--source-deadline", id="negative"),
])
def test_limits_out_of_range_name_their_flag(kwargs: dict[str, float], flag: str) -> None:
    with pytest.raises(SpecError) as err:
        Limits(**kwargs)
    assert err.value.field == flag


@pytest.mark.parametrize(("kwargs", "flag"), [
    pytest.param({"header_timeout_s": 0.0}, "--external-metrics-header-timeout", id="timeout"),
    pytest.param({"max_connections": 0}, "--external-metrics-max-connections", id="cap"),
])
def test_serving_limits_out_of_range_name_their_flag(kwargs: dict[str, Any],
                                                     flag: str) -> None:
    with pytest.raises(SpecError) as err:
        ServingLimits(**kwargs)
    assert err.value.field == flag


def test_the_stated_defaults_keep_their_order() -> None:
    # A renew must fail before the 10-s renew deadline; a source round (5-s queries) ends
    # before the cycle stops waiting for it (6 s); a cycle ends before /healthz fails.
    lim = Limits()
    assert lim.api_timeout_s == 5.0 and lim.api_timeout_s < 10.0
    assert lim.prometheus_timeout_s == 5.0 < lim.source_deadline_s == 6.0
    assert lim.source_deadline_s < lim.cycle_deadline_s == 20.0 < lim.liveness_s == 30.0
    serving = ServingLimits()
    assert (serving.header_timeout_s, serving.max_connections) == (10.0, 256)


# --- spec bugs: presets and query overrides ------------------------------------------------------


def cr(source: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": "llm", "name": "chat", "uid": "u", "generation": 1},
            "spec": {"scaleTargetRef": {"name": "chat"}, "minReplicas": 1, "maxReplicas": 4,
                     "capacity": {"requestsPerSecond": 4.0, "concurrency": 24},
                     "metricsSource": source}}


@pytest.mark.parametrize(("source", "field"), [
    pytest.param({"preset": "custom"}, "spec.metricsSource.preset",
                 id="custom is not a preset (the CRD used to advertise it)"),
    pytest.param({"preset": "vllm+nope"}, "spec.metricsSource.preset", id="unknown part"),
    pytest.param({"queries": {"queue_depth": "sum(vllm:num_requests_waiting{$sel})"}},
                 "spec.metricsSource", id="override without by ($by)"),
    pytest.param({"queries": {"queue_depth": "sum by ($by) (x{$sel}"}},
                 "spec.metricsSource", id="override with unbalanced brackets"),
    pytest.param({"queries": {"queue_depth": "sum by ($by) (x{$selector})"}},
                 "spec.metricsSource", id="override with an unknown placeholder"),
])
def test_bad_presets_and_query_overrides_are_spec_errors(source: dict[str, Any],
                                                         field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_autoscaler(cr(source))
    assert err.value.field.startswith(field)


@pytest.mark.parametrize("source", [
    pytest.param({"preset": "vllm+dcgm"}, id="combined presets"),
    pytest.param({"queries": {"queue_depth": "sum by ($by) (my_queue{$sel})"}},
                 id="a checked override"),
])
def test_good_presets_and_overrides_parse(source: dict[str, Any]) -> None:
    assert parse_autoscaler(cr(source)).name == "chat"
