"""The external.metrics.k8s.io server: quantities, selectors, what is served or withheld,
Kubernetes-shaped errors, and client-certificate authentication over real TLS on loopback.

The real aggregator and HPA talking to it are the e2e tier's job
(tests/e2e/test_external_metrics_e2e.py).
"""

from __future__ import annotations

import select
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from autoscaler.controller.external_metrics import (
    DEMAND_RPS,
    DESIRED_REPLICAS,
    FORECAST_RPS,
    METRIC_NAMES,
    Authenticator,
    ExternalMetricsServer,
    SelectorError,
    ServerConfig,
    canonical_quantity,
    create_app,
    milli_units,
    parse_selector,
    quantity,
)
from autoscaler.controller.loop import Outcome
from autoscaler.controller.resource import Mode
from autoscaler.controller.settings import ServingLimits
from autoscaler.core.policies.hpa import usage_milli
from autoscaler.core.types import Decision, Reason
from tests.support.certs import CertPair, issue_certificate, make_ca
from tests.support.ports import free_port

NOW = 1_700_000_000.0
BASE = "/apis/external.metrics.k8s.io/v1beta1"


# --- quantities ---------------------------------------------------------------------------


@pytest.mark.parametrize(("mantissa", "exponent", "expected"), [
    pytest.param(0, -3, "0", id="zero has no suffix"),
    pytest.param(3000, -3, "3", id="whole number: 3000m is 3"),
    pytest.param(1500, -3, "1500m", id="one and a half stays in milli, no decimal point"),
    pytest.param(100, -3, "100m", id="a tenth"),
    pytest.param(1, -3, "1m", id="the smallest milli value"),
    pytest.param(1_500_000, -3, "1500", id="1500 stays 1500, not 1.5k"),
    pytest.param(2_000_000, -3, "2k", id="2000 becomes 2k"),
    pytest.param(15, 11, "1500G", id="1.5e12 is 1500G (exponent lowered to 9)"),
    pytest.param(1, 18, "1E", id="exa"),
    pytest.param(1, 21, "1e21", id="beyond exa: exponent notation"),
    pytest.param(1, -9, "1n", id="nano"),
    pytest.param(1, -10, "100e-12", id="below nano: exponent notation"),
    pytest.param(-1500, -3, "-1500m", id="negative"),
    pytest.param(2**63 - 1, -3, "9223372036854775807m", id="int64 max milli"),
    pytest.param(12_345, 0, "12345", id="no trailing zeros: exponent stays 0"),
])
def test_quantities_are_written_in_canonical_form(mantissa: int, exponent: int,
                                                 expected: str) -> None:
    assert canonical_quantity(mantissa, exponent) == expected


_SUFFIX_EXP = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
               "E": 18}


def reference_canonical(mantissa: int, exponent: int) -> str:
    """Slow and obvious: the value as an exact fraction; the canonical exponent is the
    largest multiple of 3 that still leaves an integer mantissa."""
    value = Fraction(mantissa) * Fraction(10) ** exponent
    if value == 0:
        return "0"
    for e in range(60, -61, -3):
        scaled = value / Fraction(10) ** e
        if scaled.denominator == 1:
            suffix = {v: k for k, v in _SUFFIX_EXP.items()}.get(e, f"e{e}")
            return f"{scaled.numerator}{suffix}"
    raise AssertionError("no exponent found")


def parse_quantity(text: str) -> Fraction:
    """Back from a canonical string to the exact value (the subset we write)."""
    if "e" in text:
        number, exp = text.split("e")
        return Fraction(int(number)) * Fraction(10) ** int(exp)
    if text[-1] in _SUFFIX_EXP and not text[-1].isdigit():
        return Fraction(int(text[:-1])) * Fraction(10) ** _SUFFIX_EXP[text[-1]]
    return Fraction(int(text))


@given(st.integers(min_value=-(2**70), max_value=2**70), st.integers(min_value=-25, max_value=25))
def test_canonical_quantities_match_the_slow_reference_and_round_trip(mantissa: int,
                                                                      exponent: int) -> None:
    text = canonical_quantity(mantissa, exponent)
    assert text == reference_canonical(mantissa, exponent)
    assert parse_quantity(text) == Fraction(mantissa) * Fraction(10) ** exponent


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(3.0, "3", id="an integer count"),
    pytest.param(1.1004, "1100m", id="truncated to milli, as prometheus-adapter does"),
    pytest.param(0.0009, "0", id="below one milli is zero"),
    pytest.param(2.5e12, "2500G", id="large"),
    pytest.param(1e30, "9223372036854775807m", id="clamped to int64 milli"),
    pytest.param(float("nan"), None, id="NaN is not servable"),
    pytest.param(float("inf"), None, id="infinity is not servable"),
])
def test_samples_become_milli_quantities(value: float, expected: str | None) -> None:
    assert quantity(value) == expected


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_served_milli_units_are_what_the_replay_hpa_reads(value: float) -> None:
    # The replay's hpa policy models prometheus-adapter's conversion; serving the same
    # integers keeps the real HPA and the replay on the same arithmetic.
    assert milli_units(value) == usage_milli(value)


# --- selectors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "labels", "matches"), [
    pytest.param("", {"autoscaler": "a"}, True, id="empty selects everything"),
    pytest.param("autoscaler=chat", {"autoscaler": "chat"}, True, id="equality"),
    pytest.param("autoscaler==chat", {"autoscaler": "chat"}, True, id="double equals"),
    pytest.param("autoscaler=chat", {"autoscaler": "code"}, False, id="equality, other"),
    pytest.param("autoscaler!=chat", {"autoscaler": "code"}, True, id="inequality"),
    pytest.param("autoscaler!=chat", {}, True, id="inequality holds without the label"),
    pytest.param("autoscaler in (a, b)", {"autoscaler": "b"}, True, id="set membership"),
    pytest.param("autoscaler in (a,b)", {"autoscaler": "c"}, False, id="not in the set"),
    pytest.param("autoscaler notin (a,b)", {"autoscaler": "c"}, True, id="notin"),
    pytest.param("autoscaler", {"autoscaler": "x"}, True, id="exists"),
    pytest.param("!autoscaler", {"autoscaler": "x"}, False, id="does not exist"),
    pytest.param("autoscaler=chat,mode=Metrics", {"autoscaler": "chat", "mode": "Shadow"},
                 False, id="every term must hold"),
    pytest.param("app.kubernetes.io/name=x", {"app.kubernetes.io/name": "x"}, True,
                 id="prefixed key"),
])
def test_selectors_match_like_kubernetes(text: str, labels: dict[str, str],
                                         matches: bool) -> None:
    assert all(r.matches(labels) for r in parse_selector(text)) is matches


@pytest.mark.parametrize("text", [
    pytest.param("=chat", id="no key"),
    pytest.param("autoscaler=chat,", id="trailing comma"),
    pytest.param("autoscaler in a,b", id="set without parentheses"),
    pytest.param("autoscaler in ()", id="empty set"),
    pytest.param("autoscaler=" + "x" * 64, id="value longer than 63"),
    pytest.param("autoscaler=-chat", id="value starting with a dash"),
    pytest.param("auto scaler=chat", id="space inside a key"),
    pytest.param("autoscaler in (a,b", id="unclosed set"),
])
def test_malformed_selectors_are_rejected(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


class CountingStr(str):
    """A selector that counts the characters copied out of it by slicing."""

    copied = 0

    def __getitem__(self, key: Any) -> str:
        out = str.__getitem__(self, key)
        CountingStr.copied += len(out)
        return out


def parse_cost(text: str) -> int:
    """Operations ``parse_selector`` spends on ``text``: Python lines run inside the selector
    module plus characters copied out of the input (the old parser's ``text[pos:]`` per
    token, invisible to line counting, made it quadratic)."""
    lines = 0
    module = parse_selector.__code__.co_filename

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if frame.f_code.co_filename != module:
            return None
        if event == "line":
            lines += 1
        return tracer

    CountingStr.copied = 0
    sys.settrace(tracer)
    try:
        parse_selector(CountingStr(text))
    finally:
        sys.settrace(None)
    return lines + CountingStr.copied


_words = st.text(alphabet="abcxyz019", min_size=1, max_size=8)
_terms = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", _words, _words),
    st.builds(lambda k, v: f"{k} != {v}", _words, _words),
    st.builds(lambda k, vs: f"{k} in ({', '.join(vs)})", _words,
              st.lists(_words, min_size=1, max_size=4)),
    st.builds(lambda k: f"!{k}", _words),
    _words,
)


@settings(max_examples=25, deadline=None, phases=(Phase.explicit, Phase.generate))
@given(st.lists(_terms, min_size=1, max_size=6))
def test_selector_parsing_is_linear_in_the_selector_length(terms: list[str]) -> None:
    # The same terms repeated 8 and 32 times: 4 x the length must cost at most 4 x the
    # operations, plus 25% for constant overheads (a quadratic parser costs 16 x).
    small, large = ",".join(terms * 8), ",".join(terms * 32)
    assert len(large) == 4 * len(small) + 3
    assert parse_cost(large) <= 1.25 * 4 * parse_cost(small)


# --- the app ------------------------------------------------------------------------------


def outcome(name: str, *, namespace: str = "ml", mode: Mode = Mode.METRICS, desired: int = 3,
            valid: bool = True, at: float = NOW, forecast: float | None = 12.5,
            demand: float | None = 10.0) -> Outcome:
    decision = Decision(replicas=desired, reason=Reason.DESIRED_WITHIN_RANGE, message="m",
                        valid=valid, forecast_rps=forecast, demand_rps=demand)
    return Outcome(namespace, name, mode, 2, desired, decision.reason.value, valid, False,
                   decision, at)


class Outcomes:
    """A fake of the controller's outcome cache that the test fills."""

    def __init__(self, *items: Outcome) -> None:
        self.items = {(o.namespace, o.name): o for o in items}

    def __call__(self) -> dict[tuple[str, str], Outcome]:
        return dict(self.items)


def client(*items: Outcome, now: float = NOW, max_age_s: float = 45.0) -> TestClient:
    app = create_app(Outcomes(*items), auth=Authenticator(required=False),
                     max_age_s=max_age_s, clock=lambda: now)
    return TestClient(app)


def test_discovery_documents_describe_the_group_and_every_metric() -> None:
    c = client()
    groups = c.get("/apis").json()
    assert groups["kind"] == "APIGroupList"
    (group,) = groups["groups"]
    assert group == c.get("/apis/external.metrics.k8s.io").json() | {}
    assert group["name"] == "external.metrics.k8s.io"
    assert group["preferredVersion"] == {"groupVersion": "external.metrics.k8s.io/v1beta1",
                                         "version": "v1beta1"}
    resources = c.get(BASE).json()
    assert (resources["kind"], resources["groupVersion"]) == (
        "APIResourceList", "external.metrics.k8s.io/v1beta1")
    assert {r["name"] for r in resources["resources"]} == set(METRIC_NAMES)
    assert all(r["namespaced"] and r["verbs"] == ["get"] for r in resources["resources"])


def test_the_openapi_documents_describe_the_metric_path() -> None:
    c = client()
    path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"
    v2 = c.get("/openapi/v2").json()
    assert v2["swagger"] == "2.0" and path in v2["paths"]
    ref = v2["paths"][path]["get"]["responses"]["200"]["schema"]["$ref"]
    assert ref.removeprefix("#/definitions/") in v2["definitions"]
    discovery = c.get("/openapi/v3").json()
    (url,) = [p["serverRelativeURL"] for p in discovery["paths"].values()]
    v3 = c.get(url).json()  # the ?hash= query is accepted
    assert v3["openapi"].startswith("3.") and path in v3["paths"]
    schema = v3["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert schema["schema"]["$ref"].removeprefix("#/components/schemas/") in \
        v3["components"]["schemas"]
    assert c.get("/openapi/v3/apis/other/v1").status_code == 404


def test_a_metric_is_served_per_autoscaler_with_its_labels() -> None:
    c = client(outcome("chat", desired=7), outcome("code", desired=2))
    body = c.get(f"{BASE}/namespaces/ml/{DESIRED_REPLICAS}",
                 params={"labelSelector": "autoscaler=chat"}).json()
    assert (body["kind"], body["apiVersion"]) == ("ExternalMetricValueList",
                                                  "external.metrics.k8s.io/v1beta1")
    (item,) = body["items"]
    assert item == {"metricName": DESIRED_REPLICAS,
                    "metricLabels": {"autoscaler": "chat", "mode": "Metrics"},
                    "timestamp": "2023-11-14T22:13:20Z", "value": "7"}


def test_without_a_selector_every_autoscaler_of_the_namespace_is_listed() -> None:
    c = client(outcome("chat"), outcome("code"), outcome("other", namespace="elsewhere"))
    items = c.get(f"{BASE}/namespaces/ml/{DESIRED_REPLICAS}").json()["items"]
    assert [i["metricLabels"]["autoscaler"] for i in items] == ["chat", "code"]


@pytest.mark.parametrize(("metric", "expected"), [
    pytest.param(FORECAST_RPS, "12500m", id="forecast 12.5 rps"),
    pytest.param(DEMAND_RPS, "10", id="demand 10 rps"),
])
def test_forecast_and_demand_are_served_as_quantities(metric: str, expected: str) -> None:
    (item,) = client(outcome("chat")).get(f"{BASE}/namespaces/ml/{metric}").json()["items"]
    assert item["value"] == expected


@pytest.mark.parametrize(("served", "metric"), [
    pytest.param(outcome("chat", at=NOW - 46), DESIRED_REPLICAS, id="older than max age"),
    pytest.param(outcome("chat", valid=False), DESIRED_REPLICAS, id="invalid decision"),
    pytest.param(outcome("chat", mode=Mode.SCALE), DESIRED_REPLICAS,
                 id="scale mode writes its own scale"),
    pytest.param(outcome("chat", forecast=None), FORECAST_RPS, id="no forecast"),
    pytest.param(outcome("chat", demand=float("nan")), DEMAND_RPS, id="NaN demand"),
])
def test_stale_or_unusable_values_are_withheld_never_served_as_zero(served: Outcome,
                                                                   metric: str) -> None:
    body = client(served).get(f"{BASE}/namespaces/ml/{metric}").json()
    assert body["items"] == []


def test_a_value_just_inside_the_max_age_is_served() -> None:
    items = client(outcome("chat", at=NOW - 44)).get(
        f"{BASE}/namespaces/ml/{DESIRED_REPLICAS}").json()["items"]
    assert [i["value"] for i in items] == ["3"]


@pytest.mark.parametrize(("path", "code", "reason"), [
    pytest.param(f"{BASE}/namespaces/ml/no_such_metric", 404, "NotFound", id="unknown metric"),
    pytest.param(f"{BASE}/namespaces/ml/{DESIRED_REPLICAS}?labelSelector=autoscaler%20in",
                 400, "BadRequest", id="bad selector"),
])
def test_errors_are_kubernetes_status_objects(path: str, code: int, reason: str) -> None:
    r = client(outcome("chat")).get(path)
    assert r.status_code == code
    body = r.json()
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert (body["code"], body["reason"]) == (code, reason)
    assert body["message"]


def test_keda_reads_the_decision_as_json() -> None:
    r = client(outcome("chat", desired=5)).get("/keda/ml/chat")
    assert r.status_code == 200
    assert r.json() == {"desiredReplicas": 5, "forecastRps": 12.5, "demandRps": 10.0,
                        "timestamp": "2023-11-14T22:13:20Z"}


@pytest.mark.parametrize(("served", "code"), [
    pytest.param(outcome("chat", at=NOW - 100), 503, id="stale"),
    pytest.param(outcome("chat", valid=False), 503, id="invalid"),
    pytest.param(outcome("other"), 404, id="unknown autoscaler"),
])
def test_keda_gets_an_error_instead_of_a_withheld_value(served: Outcome, code: int) -> None:
    r = client(served).get("/keda/ml/chat")
    assert r.status_code == code and r.json()["kind"] == "Status"


# --- TLS and client certificates ----------------------------------------------------------


def _leaf(directory: Path, name: str, ca: CertPair, cn: str, *, server: bool
          ) -> tuple[str, str]:
    pair = issue_certificate(directory, name, ca=ca, common_name=cn, server=server,
                             client=not server,
                             dns_names=("localhost",) if server else (),
                             ip_addresses=("127.0.0.1",) if server else ())
    return str(pair.cert), str(pair.key)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("pki")
    serving_ca, front_ca, other_ca = (make_ca(d, f"{n}-ca", n)[0]
                                      for n in ("serving", "front-proxy", "other"))
    cert, key = _leaf(d, "server", serving_ca, "metrics", server=True)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ExternalMetricsServer(Outcomes(outcome("chat", desired=4)), ServerConfig(
        port=port, host="127.0.0.1", cert_file=cert, key_file=key,
        client_ca_file=str(front_ca.cert), allowed_names=("front-proxy-client",),
        limits=ServingLimits(header_timeout_s=HEADER_TIMEOUT_S)), clock=lambda: NOW).start()
    yield {"url": f"https://127.0.0.1:{port}", "ca": str(serving_ca.cert), "port": port,
           "files": (cert, key, str(front_ca.cert)),
           "allowed": _leaf(d, "allowed", front_ca, "front-proxy-client", server=False),
           "wrong_name": _leaf(d, "wrong", front_ca, "someone-else", server=False),
           "keda": _leaf(d, "keda", front_ca, "keda-operator", server=False),
           "other_ca": _leaf(d, "other", other_ca, "front-proxy-client", server=False)}
    server.stop()


def _get(srv: dict[str, Any], path: str, cert: tuple[str, str] | None) -> httpx.Response:
    ctx = ssl.create_default_context(cafile=srv["ca"])
    if cert is not None:
        ctx.load_cert_chain(*cert)
    with httpx.Client(verify=ctx, timeout=5) as c:
        return c.get(srv["url"] + path)


@pytest.mark.parametrize(("who", "code"), [
    pytest.param("wrong_name", 403, id="front-proxy CA but a CN not allowed: 403"),
    pytest.param("allowed", 200, id="the aggregator's certificate: 200"),
])
def test_only_the_front_proxy_certificate_with_an_allowed_name_is_served(
        tls_server: dict[str, Any], who: str | None, code: int) -> None:
    r = _get(tls_server, f"{BASE}/namespaces/ml/{DESIRED_REPLICAS}",
             tls_server[who] if who else None)
    assert r.status_code == code
    if code == 200:
        assert [i["value"] for i in r.json()["items"]] == ["4"]
    else:
        assert r.json()["kind"] == "Status" and r.json()["code"] == code


@pytest.mark.parametrize("who", [
    pytest.param("other_ca", id="a certificate from another CA"),
    pytest.param(None, id="no certificate: required at the TLS layer"),
])
def test_the_handshake_refuses_a_client_without_a_certificate_from_the_ca(
        tls_server: dict[str, Any], who: str | None) -> None:
    for path in (BASE, "/keda/ml/chat"):
        with pytest.raises(httpx.HTTPError):
            _get(tls_server, path, tls_server[who] if who else None)


def test_keda_needs_a_certificate_from_the_ca_but_not_an_allowed_name(
        tls_server: dict[str, Any]) -> None:
    r = _get(tls_server, "/keda/ml/chat", tls_server["keda"])
    assert r.status_code == 200 and r.json()["desiredReplicas"] == 4


# --- connection limits: slowloris and floods -----------------------------------------------

HEADER_TIMEOUT_S = 1.0
MAX_CONNS = 20
SLOWLORIS = 300


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except (BlockingIOError, TimeoutError):
        return False


def _wait_all_closed(socks: list[Any], timeout_s: float) -> int:
    """How many of ``socks`` the server had closed when all were, or the deadline passed."""
    for s in socks:
        s.setblocking(False)
    open_ = list(socks)
    deadline = time.monotonic() + timeout_s
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(open_, [], [], 0.2)
        for s in readable:
            if _closed_by_peer(s):
                open_.remove(s)
    return len(socks) - len(open_)


def test_300_slowloris_connections_are_dropped_after_the_header_timeout(
        tls_server: dict[str, Any]) -> None:
    # Raw TCP: 300 connections that start a TLS handshake they never finish (a ClientHello
    # prefix) and so never send an HTTP header. Each must be closed by the server once the
    # header timeout (1 s here) has passed, and the server must still serve afterwards.
    socks = []
    for _ in range(SLOWLORIS):
        s = socket.create_connection(("127.0.0.1", tls_server["port"]))
        s.sendall(b"\x16\x03\x01")
        socks.append(s)
    started = time.monotonic()
    try:
        # Generous: the assertion is that they are dropped at all (they used to stay open
        # for ever), not how fast (a figure, printed for docs/faults.md).
        closed = _wait_all_closed(socks, timeout_s=30 * HEADER_TIMEOUT_S)
    finally:
        for s in socks:
            s.close()
    print(f"\nFIGURE slowloris: {closed} of {SLOWLORIS} connections closed by the server "
          f"{time.monotonic() - started:.1f} s after opening "
          f"(header timeout {HEADER_TIMEOUT_S:g} s)")
    assert closed == SLOWLORIS
    r = _get(tls_server, f"{BASE}/namespaces/ml/{DESIRED_REPLICAS}", tls_server["allowed"])
    assert r.status_code == 200


def test_a_client_that_completes_tls_but_trickles_its_headers_is_dropped(
        tls_server: dict[str, Any]) -> None:
    ctx = ssl.create_default_context(cafile=tls_server["ca"])
    ctx.load_cert_chain(*tls_server["allowed"])
    with socket.create_connection(("127.0.0.1", tls_server["port"])) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /apis HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        tls.settimeout(30 * HEADER_TIMEOUT_S)
        try:
            data = tls.recv(4096)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
    assert data == b""  # closed by the server, no response


def test_connections_beyond_the_cap_are_closed_on_arrival(tls_server: dict[str, Any]) -> None:
    cert, key, client_ca = tls_server["files"]
    port = free_port()
    # A header timeout far longer than the test: only the cap closes connections here.
    server = ExternalMetricsServer(Outcomes(), ServerConfig(
        port=port, host="127.0.0.1", cert_file=cert, key_file=key, client_ca_file=client_ca,
        limits=ServingLimits(header_timeout_s=600, max_connections=MAX_CONNS))).start()
    ctx = ssl.create_default_context(cafile=tls_server["ca"])
    ctx.load_cert_chain(*tls_server["allowed"])
    held = []
    try:
        for _ in range(MAX_CONNS + 5):
            raw = socket.create_connection(("127.0.0.1", port))
            held.append(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
        # The first 20 are served; the 5 beyond the cap were closed as soon as they were
        # made, so they answer nothing.
        request = b"GET /apis HTTP/1.1\r\nHost: x\r\n\r\n"
        answered = 0
        for tls in held:
            try:
                tls.sendall(request)
                tls.settimeout(10)
                answered += tls.recv(12).startswith(b"HTTP/1.1 200")
            except (OSError, ssl.SSLError):
                pass
    finally:
        for tls in held:
            tls.close()
        server.stop()
    assert answered == MAX_CONNS


def test_the_tls_server_refuses_to_start_without_its_files() -> None:
    with pytest.raises(ValueError, match="serving certificate"):
        ExternalMetricsServer(Outcomes(), ServerConfig(port=0, cert_file=None))


# --- deploy/ ------------------------------------------------------------------------------

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _docs(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def test_the_apiservice_points_at_the_controller_services_https_port() -> None:
    (api,) = _docs(DEPLOY / "external-metrics" / "apiservice.yaml")
    assert api["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    assert (api["spec"]["group"], api["spec"]["version"]) == ("external.metrics.k8s.io",
                                                              "v1beta1")
    services = {d["metadata"]["name"]: d for d in _docs(DEPLOY / "controller.yaml")
                if d["kind"] == "Service"}
    ref = api["spec"]["service"]
    service = services[ref["name"]]
    assert service["metadata"]["namespace"] == ref["namespace"]
    ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert ports[ref["port"]] == "https"
    assert api["spec"]["insecureSkipTLSVerify"] is False


def test_the_aggregated_server_rbac_binds_exactly_the_two_standard_roles() -> None:
    docs = _docs(DEPLOY / "external-metrics" / "rbac.yaml")
    refs = {(d["kind"], d["metadata"].get("namespace"), d["roleRef"]["kind"],
             d["roleRef"]["name"]) for d in docs}
    assert refs == {
        ("ClusterRoleBinding", None, "ClusterRole", "system:auth-delegator"),
        ("RoleBinding", "kube-system", "Role", "extension-apiserver-authentication-reader")}
    for d in docs:
        assert d["subjects"] == [{"kind": "ServiceAccount",
                                  "name": "inference-autoscaler-controller",
                                  "namespace": "inference-autoscaler"}]


def test_the_external_metrics_kustomization_lists_its_files() -> None:
    import yaml

    kust = yaml.safe_load((DEPLOY / "external-metrics" / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == ["apiservice.yaml", "rbac.yaml"]


def test_the_example_hpa_lands_on_our_count() -> None:
    (hpa,) = _docs(DEPLOY / "examples" / "hpa-external.yaml")
    (metric,) = hpa["spec"]["metrics"]
    ext = metric["external"]
    assert ext["metric"]["name"] == DESIRED_REPLICAS
    assert ext["metric"]["selector"] == {"matchLabels": {"autoscaler": "chat"}}
    assert ext["target"] == {"type": "AverageValue", "averageValue": "1"}
    assert {hpa["spec"]["behavior"][side]["tolerance"] for side in ("scaleUp", "scaleDown")
            } == {"0"}


def test_the_keda_example_reads_the_keda_endpoint() -> None:
    docs = {d["kind"]: d for d in _docs(DEPLOY / "examples" / "keda-scaledobject.yaml")}
    obj, auth = docs["ScaledObject"], docs["TriggerAuthentication"]
    (trigger,) = obj["spec"]["triggers"]
    # A client certificate is required at the TLS layer: the trigger presents one.
    assert trigger["metadata"]["authMode"] == "tls"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {p["parameter"] for p in auth["spec"]["secretTargetRef"]} == {"cert", "key", "ca"}
    meta = trigger["metadata"]
    assert trigger["type"] == "metrics-api" and trigger["metricType"] == "AverageValue"
    assert meta["valueLocation"] == "desiredReplicas" and meta["targetValue"] == "1"
    path = "/" + meta["url"].split("/", 3)[3]
    ns, name = obj["metadata"]["namespace"], obj["spec"]["scaleTargetRef"]["name"]
    assert path == f"/keda/{ns}/{name}"
    # The path really is served, and returns the field the example reads.
    body = client(outcome(name, namespace=ns, desired=6)).get(path).json()
    assert body[meta["valueLocation"]] == 6


def test_the_cluster_published_request_header_settings_are_read(tmp_path: Path) -> None:
    from autoscaler.controller.external_metrics import AUTH_CONFIGMAP, request_header_auth

    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    asked: list[str] = []

    def get(path: str) -> dict[str, Any]:
        asked.append(path)
        return {"data": {"requestheader-client-ca-file": pem,
                         "requestheader-allowed-names": '["front-proxy-client"]'}}

    path, names = request_header_auth(get, str(tmp_path))
    assert asked == [AUTH_CONFIGMAP]
    assert Path(path).read_text() == pem and names == ("front-proxy-client",)
    with pytest.raises(ValueError, match="requestheader-client-ca-file"):
        request_header_auth(lambda _p: {"data": {}}, str(tmp_path))
