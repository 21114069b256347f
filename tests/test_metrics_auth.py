"""The Prometheus source's authentication against real servers on loopback: Prometheus' own
TLS and basic auth (its ``--web.config.file``), and a bearer-token proxy in front of it, the
way kube-rbac-proxy guards Prometheus in many clusters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from autoscaler.metrics.source import (
    PrometheusAuthError,
    PrometheusConfig,
    PrometheusSource,
    PrometheusUnavailable,
)
from tests.support.certs import issue_certificate, make_ca
from tests.support.promserver import DelayProxy, PrometheusServer

pytestmark = pytest.mark.prometheus
USER, PASSWORD = "autoscaler", "s3cret"


def _cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM paths."""
    ca, _, _ = make_ca(tmp, "ca", "test-ca")
    server = issue_certificate(tmp, "server", ca=ca, common_name="prometheus",
                               ip_addresses=("127.0.0.1",), server=True)
    return ca.cert, server.cert, server.key


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, Path]]:
    tmp = tmp_path_factory.mktemp("tls")
    ca, cert, key = _cert(tmp)
    web = tmp / "web.yml"
    web.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
        "basic_auth_users": {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()},
    }))
    prom = PrometheusServer([], web_config=str(web), tls_ca=str(ca),
                            basic_auth=(USER, PASSWORD)).start()
    yield prom, ca
    prom.cleanup()


def test_tls_with_the_ca_file_and_basic_auth_answers(
        secured: tuple[PrometheusServer, Path]) -> None:
    prom, ca = secured
    source = PrometheusSource(PrometheusConfig(url=prom.url, ca_file=str(ca),
                                               basic_auth=(USER, PASSWORD)))
    assert source.query("vector(1)")[0].value == 1.0


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    pytest.param({"basic_auth": (USER, "wrong")}, PrometheusAuthError, "HTTP 401",
                 id="a wrong password is an auth error, not an outage"),
    pytest.param({}, PrometheusAuthError, "HTTP 401", id="no credentials is an auth error"),
    pytest.param({"use_ca": False, "basic_auth": (USER, PASSWORD)}, PrometheusUnavailable,
                 "caFile", id="an unknown CA fails TLS and says to check caFile"),
])
def test_refused_connections_say_why(secured: tuple[PrometheusServer, Path],
                                     kwargs: dict[str, object], error: type[Exception],
                                     words: str) -> None:
    prom, ca = secured
    use_ca = kwargs.pop("use_ca", True)
    config = PrometheusConfig(url=prom.url, ca_file=str(ca) if use_ca else None, retries=0,
                              **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=words):
        PrometheusSource(config).query("vector(1)")


def test_a_bearer_token_file_is_sent_and_reread_when_rotated(tmp_path: Path) -> None:
    prom = PrometheusServer([]).start()
    proxy = DelayProxy(prom.url, 0.0, require_bearer="token-1")
    try:
        token = tmp_path / "token"
        token.write_text("token-1\n")
        source = PrometheusSource(PrometheusConfig(url=proxy.url, bearer_token_file=str(token),
                                                   retries=0))
        assert source.query("vector(2)")[0].value == 2.0
        proxy.require_bearer = "token-2"  # the proxy now wants the rotated token
        with pytest.raises(PrometheusAuthError):
            source.query("vector(2)")
        token.write_text("token-2\n")  # the kubelet rotates the projected token on disk
        assert source.query("vector(2)")[0].value == 2.0
    finally:
        proxy.stop()
        prom.cleanup()
