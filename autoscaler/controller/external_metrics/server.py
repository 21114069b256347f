"""The server's lifecycle: uvicorn in a daemon thread, TLS with client certificates
required, and the connection limits of ``ServingLimits``."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI

from autoscaler.controller.external_metrics.app import OutcomeSource, create_app
from autoscaler.controller.external_metrics.names import DEFAULT_MAX_AGE_S
from autoscaler.controller.external_metrics.tls import (
    FAST_PROTOCOL,
    Authenticator,
    TLSScopeProtocol,
    guarded,
)
from autoscaler.controller.settings import ServingLimits


@dataclass(frozen=True, slots=True)
class ServerConfig:
    port: int
    host: str = "0.0.0.0"
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    """The request-header (front-proxy) CA; client certificates must chain to it (the TLS
    handshake refuses a client without one)."""
    allowed_names: tuple[str, ...] = ()
    max_age_s: float = DEFAULT_MAX_AGE_S
    insecure_plain_http: bool = False
    """Serve plain HTTP with no authentication: for the loopback load benchmark only."""
    limits: ServingLimits = field(default_factory=ServingLimits)


def uvicorn_config(app: FastAPI, cfg: ServerConfig) -> uvicorn.Config:
    if cfg.insecure_plain_http:
        return uvicorn.Config(app, host=cfg.host, port=cfg.port,
                              http=guarded(TLSScopeProtocol, cfg.limits),
                              log_level="warning", access_log=False, lifespan="off")
    if not (cfg.cert_file and cfg.key_file and cfg.client_ca_file):
        raise ValueError("the external metrics server needs a serving certificate, its key "
                         "and the request-header client CA")
    return uvicorn.Config(app, host=cfg.host, port=cfg.port,
                          http=guarded(FAST_PROTOCOL or TLSScopeProtocol, cfg.limits),
                          loop="auto",  # uvloop when installed
                          ssl_certfile=cfg.cert_file, ssl_keyfile=cfg.key_file,
                          ssl_ca_certs=cfg.client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED,
                          log_level="warning", access_log=False, lifespan="off")


def _loop_factory(config: uvicorn.Config, handshake_timeout_s: float
                  ) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvicorn's event loop class (uvloop when installed), with every TLS listener's
    handshake bounded: uvicorn passes no ``ssl_handshake_timeout``, and the default is 60 s
    per connection."""
    base_factory = config.get_loop_factory() or asyncio.new_event_loop
    base: type[Any] = type(base_factory())

    class HandshakeBounded(base):  # type: ignore[misc]
        async def create_server(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", handshake_timeout_s)
            return await super().create_server(*args, **kwargs)

    return HandshakeBounded


class ExternalMetricsServer:
    """uvicorn in a daemon thread; ``stop()`` ends it."""

    def __init__(self, outcomes: OutcomeSource, cfg: ServerConfig, *,
                 clock: Callable[[], float] = time.time) -> None:
        auth = Authenticator(frozenset(cfg.allowed_names), required=not cfg.insecure_plain_http)
        self.app = create_app(outcomes, auth=auth, max_age_s=cfg.max_age_s, clock=clock)
        self.config = uvicorn_config(self.app, cfg)
        self.server = uvicorn.Server(self.config)
        self._loop_factory = _loop_factory(self.config, cfg.limits.header_timeout_s)
        # uvicorn installs no signal handlers off the main thread: SIGTERM stays the
        # controller's.
        self.thread = threading.Thread(target=self._run, daemon=True, name="external-metrics")

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=self._loop_factory) as runner:
            runner.run(self.server.serve())

    def start(self, timeout_s: float = 10.0) -> ExternalMetricsServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the external metrics server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
