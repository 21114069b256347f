"""Who may call, and the connection-level guards: client certificates (checked by the TLS
handshake against the request-header CA, then the CN here), and uvicorn protocols that add
the ASGI TLS extension, drop connections that do not send a request's headers in time
(slowloris) and refuse connections beyond a cap.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from uvicorn.protocols.http.h11_impl import H11Protocol

from autoscaler.controller.settings import ServingLimits


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Who may call: a client certificate already verified against the request-header CA
    (by the TLS handshake, which requires one) whose CN is in ``allowed_names`` (empty:
    any)."""

    allowed_names: frozenset[str] = frozenset()
    required: bool = True
    """False only for a plain-HTTP listener (the load benchmark): no check at all."""

    def check(self, scope: Mapping[str, Any]) -> tuple[int, str] | None:
        """None when allowed, else (HTTP status, message)."""
        if not self.required:
            return None
        tls = scope.get("extensions", {}).get("tls") or {}
        name = tls.get("client_cert_name")
        if not name:
            return 401, "a client certificate signed by the request-header CA is required"
        cn = common_name(name)
        if self.allowed_names and cn not in self.allowed_names:
            return 403, (f"client certificate CN {cn!r} is not one of the allowed names "
                         f"{sorted(self.allowed_names)}")
        return None


@functools.lru_cache(maxsize=64)
def common_name(rfc4514: str) -> str:
    cns = x509.Name.from_rfc4514_string(rfc4514).get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def _tls_extension(transport: asyncio.Transport) -> dict[str, Any]:
    """The ASGI TLS extension for a connection: the peer certificate as PEM and its name."""
    ssl_object = transport.get_extra_info("ssl_object")
    tls: dict[str, Any] = {"server_cert": None, "client_cert_chain": [],
                           "client_cert_name": None, "client_cert_error": None,
                           "tls_version": None, "cipher_suite": None}
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            cert = x509.load_der_x509_certificate(der)
            tls["client_cert_chain"] = [cert.public_bytes(serialization.Encoding.PEM).decode()]
            tls["client_cert_name"] = cert.subject.rfc4514_string()
    return tls


def _with_tls(app: Any, tls: dict[str, Any]) -> Any:
    async def with_tls(scope: Any, receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})["tls"] = tls
        await app(scope, receive, send)

    return with_tls


if TYPE_CHECKING:
    class _UvicornProtocol(asyncio.Protocol):
        """What the mixin uses of uvicorn's HTTP protocols (h11's and httptools' alike),
        for the type checker only: at run time the mixin sits before one of them in the
        MRO, so ``super()`` reaches the real one."""

        app: Any
        loop: asyncio.AbstractEventLoop
        transport: asyncio.Transport
        cycle: Any
        connections: set[Any]

        def on_response_complete(self) -> None: ...
else:
    _UvicornProtocol = object


class _Guarded(_UvicornProtocol):
    """Mixed in before one of uvicorn's HTTP protocols, adding:

    * the ASGI TLS extension: ``scope["extensions"]["tls"]`` with ``client_cert_chain``
      (PEM) and ``client_cert_name`` (RFC 4514) of the peer certificate, which uvicorn
      does not expose. It is read once per connection (``connection_made`` runs after the
      TLS handshake, when the peer certificate is known) and every request of the
      connection gets the same extension; the wrapped app is otherwise untouched.
    * Connection cap: a connection beyond ``limits.max_connections`` open at once is
      closed as soon as it is made.
    * Header timeout: a connection has ``limits.header_timeout_s`` from connecting (or
      from its previous response) to deliver a request's complete headers, else it is
      closed. uvicorn's own keep-alive timer starts only after a first response, so a
      client that connects and trickles a header a minute stayed open for ever (300 such
      connections in issue 14). The TLS handshake gets the same budget (``server.py``
      passes it as the event loop's ``ssl_handshake_timeout``).
    """

    limits: ServingLimits = ServingLimits()
    _guard_timer: asyncio.TimerHandle | None = None
    _guard_cycle: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.close()
            return
        self._guard_arm()
        self.app = _with_tls(self.app, _tls_extension(transport))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._guard_arm()

    def _guard_arm(self) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
        self._guard_cycle = self.cycle  # headers of a new request replace it
        self._guard_timer = self.loop.call_later(self.limits.header_timeout_s,
                                                 self._guard_expired)

    def _guard_expired(self) -> None:
        self._guard_timer = None
        if self.cycle is self._guard_cycle and not self.transport.is_closing():
            self.transport.close()  # no complete request headers in time


class TLSScopeProtocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with the TLS extension and the guards (``_Guarded``)."""


try:  # uvicorn's C parser (httptools): about half the per-request cost of h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn without its [standard] extras
    FAST_PROTOCOL: type[_Guarded] | None = None
else:
    class TLSScopeHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol with the same TLS extension and guards."""

    FAST_PROTOCOL = TLSScopeHttpToolsProtocol


def guarded(protocol: type[_Guarded], limits: ServingLimits) -> type[asyncio.Protocol]:
    """``protocol`` with these limits (uvicorn instantiates the class it is given)."""
    made: type[asyncio.Protocol] = type(protocol.__name__, (protocol,), {"limits": limits})
    return made
