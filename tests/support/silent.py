"""A server that accepts and never answers (a hung API server or Prometheus), and a
kubeconfig pointing at it. The ``silent`` fixture (tests/conftest.py) starts one per test."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path


class SilentServer:
    """Accepts TCP connections and reads what is sent, never answering: a hung API server
    or Prometheus. Counts the connections, i.e. the attempts a client made."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for c in self._held:
            c.close()
        self.sock.close()


def kubeconfig(tmp_path: Path, port: int) -> Path:
    """A kubeconfig in ``tmp_path`` pointing a token user at http://127.0.0.1:``port``."""
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    return path
