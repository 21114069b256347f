"""The Prometheus edge: PromQL in, numbers out, behind a narrow ``MetricsSource`` protocol.

``PrometheusSource`` wraps ``prometheus-api-client``'s ``PrometheusConnect`` (bearer-token,
basic and TLS/CA-file auth, per-request timeouts) and gives its ``requests`` session a
urllib3 ``Retry`` for bounded retries with exponential backoff on connection errors and on
the statuses a busy or restarting Prometheus answers with (429, 502, 503, 504). A read that
times out is *not* retried: a hung Prometheus (SIGSTOPped, or stuck in a huge query) would
cost the whole timeout again per retry, 3 x 5 s per query where issue 14 measured 15 s a
source. This is the only module that imports ``prometheus_api_client`` (an import-linter
contract keeps it so); the raw JSON rows it returns are typed below (``RawVectorRow``).

Errors are split the way the controller must treat them:

* ``QueryError`` (a ``SpecError``): Prometheus rejected the PromQL itself (HTTP 400
  ``bad_data``). Retrying cannot help; the message names the query and quotes Prometheus'
  parse error.
* ``PrometheusUnavailable`` (a ``TransientError``): connection refused, timeout, 5xx after
  the retries, or an answer that is not Prometheus JSON. The caller holds (never scales
  down) and tries again next cycle.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from autoscaler.errors import SpecError, TransientError

RETRY_STATUSES = (429, 502, 503, 504)
"""HTTP statuses worth retrying: rate limiting and a Prometheus behind a restarting proxy.
Not 500 or 422: those are evaluation errors of the query, the same on every try."""


class RawVectorRow(TypedDict, total=False):
    """One row of an instant query's ``data.result`` as Prometheus sends it."""

    metric: dict[str, str]
    value: tuple[float, str]


class RawMatrixRow(TypedDict, total=False):
    """One row of a range query's ``data.result``."""

    metric: dict[str, str]
    values: list[tuple[float, str]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant vector: its labels and its (time, value)."""

    labels: Mapping[str, str]
    time: float
    value: float
    """NaN stays NaN here; the collector decides what a NaN means."""


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """One series of a range query: its labels and (time, value) points."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


class MetricsSource(Protocol):
    """What the collector needs from a metrics backend."""

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Evaluate an instant query (at ``at``, Unix seconds, or Prometheus' now)."""
        ...

    def query_range(self, promql: str, start: float, end: float,
                    step_s: float) -> list[RangeSeries]:
        """Evaluate a range query over [start, end] every ``step_s`` seconds."""
        ...

    def query_series(self, promql: str, at: float | None = None) -> list[RangeSeries]:
        """Evaluate an instant query of a range vector (``metric{...}[1m]``): every
        series' raw samples inside the range, with their own timestamps."""
        ...


class QueryError(SpecError):
    """Prometheus rejected a query: the PromQL is wrong, not the server."""

    def __init__(self, query: str, reason: str, *, source: str | None = None) -> None:
        super().__init__("query", query, f"valid PromQL (Prometheus said: {reason})",
                         source=source)
        self.query = query
        self.reason = reason


class PrometheusAuthError(SpecError):
    """Prometheus (or the proxy in front of it) refused our credentials (HTTP 401/403)."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__("prometheus.auth", f"HTTP {status} from {url}",
                         f"credentials Prometheus accepts (it said: {body[:200]})")


class PrometheusUnavailable(TransientError):
    """Prometheus could not answer now (down, slow, overloaded)."""


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    """How to reach Prometheus. Defaults live here, in one place."""

    url: str
    """Base URL, e.g. ``http://127.0.0.1:9090`` or ``https://prometheus.monitoring:9091``."""
    bearer_token: str | None = None
    """Sent as ``Authorization: Bearer ...`` (e.g. a ServiceAccount token)."""
    bearer_token_file: str | None = None
    """Read at each connect, so a rotated projected token is picked up."""
    basic_auth: tuple[str, str] | None = None
    """(user, password)."""
    ca_file: str | None = None
    """CA bundle (PEM) to verify an https server with, instead of the system store."""
    insecure_skip_verify: bool = False
    """Do not verify the server's certificate (testing only)."""
    timeout_s: float = 5.0
    """Per HTTP request, seconds; also sent as Prometheus' own query ``timeout``."""
    retries: int = 2
    """Extra attempts after the first on connection errors and retryable statuses."""
    backoff_s: float = 0.2
    """urllib3 backoff factor: waits 0, 0.4, 0.8, ... s between attempts (first retry is
    immediate in urllib3 2.x; the factor doubles from the second)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra HTTP headers (e.g. ``X-Scope-OrgID`` for Thanos/Cortex/Mimir tenants)."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise SpecError("prometheus.url", self.url, "an http:// or https:// URL")
        if not 0 < self.timeout_s <= 300:
            raise SpecError("prometheus.timeoutSeconds", self.timeout_s, "0 < seconds <= 300")
        if not 0 <= self.retries <= 10:
            raise SpecError("prometheus.retries", self.retries, "0..10")
        if self.backoff_s < 0:
            raise SpecError("prometheus.backoffSeconds", self.backoff_s, ">= 0")
        if self.bearer_token and self.basic_auth:
            raise SpecError("prometheus.auth", "bearer token and basic auth",
                            "at most one of bearerToken(File) and basicAuth")


def _to_float(raw: str) -> float:
    # Prometheus encodes values as strings: "1.5", "NaN", "+Inf", "-Inf".
    return float(raw)


class PrometheusSource:
    """``MetricsSource`` over the Prometheus HTTP API."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        self.queries_sent = 0
        """Queries (instant + range) sent so far, for the per-cycle figures."""
        self._lock = threading.Lock()
        headers = dict(config.headers)
        self._headers = headers
        self._refresh_token()
        session = requests.Session()
        session.verify = (config.ca_file if config.ca_file
                          else not config.insecure_skip_verify)
        retry = Retry(total=config.retries, connect=config.retries, read=0,
                      status=config.retries, backoff_factor=config.backoff_s,
                      status_forcelist=RETRY_STATUSES, allowed_methods=("GET", "POST"),
                      raise_on_status=False)
        self._client = PrometheusConnect(
            url=config.url.rstrip("/"), headers=self._headers, retry=retry,
            auth=config.basic_auth, session=session, timeout=config.timeout_s)

    def _refresh_token(self) -> None:
        # Re-read per query: a projected ServiceAccount token is rotated on disk (hourly by
        # default) and a token read once at start-up would expire under us.
        token = self.config.bearer_token
        if self.config.bearer_token_file:
            try:
                with open(self.config.bearer_token_file, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError as exc:
                raise SpecError("prometheus.bearerTokenFile", self.config.bearer_token_file,
                                f"a readable file ({exc.strerror})") from exc
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._client._session.close()

    def _call(self, promql: str, fn: Any, *args: Any, **kwargs: Any) -> list[Any]:
        with self._lock:
            self.queries_sent += 1
        if self.config.bearer_token_file:
            self._refresh_token()
        try:
            result: list[Any] = fn(*args, **kwargs)
            return result
        except PrometheusApiClientException as exc:
            status, body = _parse_failure(str(exc))
            if status == 400:
                raise QueryError(promql, body) from exc
            if status in (401, 403):
                raise PrometheusAuthError(self.config.url, status, body) from exc
            raise PrometheusUnavailable(
                f"Prometheus at {self.config.url} answered HTTP {status} to {promql!r}: "
                f"{body}") from exc
        except requests.exceptions.SSLError as exc:
            raise PrometheusUnavailable(
                f"TLS to {self.config.url} failed (check caFile): {exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.config.url} unreachable: {type(exc).__name__}") from exc
        except (ValueError, KeyError) as exc:  # not Prometheus JSON
            raise PrometheusUnavailable(
                f"{self.config.url} did not answer like Prometheus: {exc}") from exc

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        params = {"timeout": f"{self.config.timeout_s:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        rows: list[RawVectorRow] = self._call(promql, self._client.custom_query, promql,
                                              params=params)
        out: list[Sample] = []
        for row in rows:
            if "value" not in row:  # a scalar/string result has no per-series labels
                raise QueryError(promql, "the query must return an instant vector")
            t, v = row["value"]
            out.append(Sample(labels=row.get("metric", {}), time=float(t), value=_to_float(v)))
        return out

    def query_series(self, promql: str, at: float | None = None) -> list[RangeSeries]:
        params = {"timeout": f"{self.config.timeout_s:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        rows = self._call(promql, self._client.custom_query, promql, params=params)
        out: list[RangeSeries] = []
        for row in rows:
            if "values" not in row:
                raise QueryError(promql, "the query must return a range vector")
            out.append(RangeSeries(labels=row.get("metric", {}), points=tuple(
                (float(t), _to_float(v)) for t, v in row["values"])))
        return out

    def query_range(self, promql: str, start: float, end: float,
                    step_s: float) -> list[RangeSeries]:
        rows: list[RawMatrixRow] = self._call(
            promql, self._client.custom_query_range, promql,
            datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC),
            f"{step_s:g}", params={"timeout": f"{self.config.timeout_s:g}s"})
        return [RangeSeries(labels=row.get("metric", {}),
                            points=tuple((float(t), _to_float(v)) for t, v in row["values"]))
                for row in rows]


def _parse_failure(message: str) -> tuple[int, str]:
    """(status, Prometheus' error text) from the client's exception message, which reads
    ``HTTP Status Code 400 (b'{"status":"error","errorType":"bad_data","error":"..."}')``."""
    status = 0
    head = message.removeprefix("HTTP Status Code ")
    digits = head.split(" ", 1)[0]
    if digits.isdigit():
        status = int(digits)
    start, end = message.find("{"), message.rfind("}")
    if start >= 0 and end > start:
        raw = message[start:end + 1]
        try:
            doc = json.loads(raw.encode().decode("unicode_escape"))
            return status, str(doc.get("error", raw))
        except (ValueError, UnicodeDecodeError):
            return status, raw
    return status, message

