"""``autoscaler twin --kubeconfig``: the twin serving the pods an API server reports Ready.

A fake API server (plain HTTP, a pod list the test changes) stands in for the cluster; the
twin runs as the user runs it, a process. The e2e tier does the same against kube-scheduler
and kwok (tests/e2e/test_kwok_twin.py, through the same ``PodSource`` protocol).
"""

from __future__ import annotations

import http.server
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.twin.pods import ready_by_workload
from tests.support.silent import kubeconfig


def pod(name: str, *, workload: str | None = "chat", phase: str = "Running",
        ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {} if workload is None
                            else {"workload": workload}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(("pods", "want"), [
    pytest.param([pod("chat-a"), pod("chat-b")], {"chat": ["chat-a", "chat-b"]},
                 id="two ready"),
    pytest.param([pod("chat-a"), pod("chat-b", ready=False)], {"chat": ["chat-a"]},
                 id="one still loading"),
    pytest.param([pod("chat-a", deleting=True), pod("chat-b")], {"chat": ["chat-b"]},
                 id="one terminating"),
    pytest.param([pod("chat-a", phase="Pending", ready=False)], {}, id="pending"),
    pytest.param([pod("chat-a", phase="Succeeded")], {}, id="finished, Ready left True"),
    pytest.param([pod("x", workload=None), pod("code-1", workload="code")],
                 {"code": ["code-1"]}, id="unlabelled pods are not ours"),
    pytest.param([pod("chat-b"), pod("chat-a")], {"chat": ["chat-a", "chat-b"]},
                 id="sorted by name"),
])
def test_ready_pods_by_workload(pods: list[dict[str, Any]], want: dict[str, list[str]]
                                ) -> None:
    assert ready_by_workload(pods) == want


class FakeApi:
    """Answers pod LISTs of one namespace with ``self.pods`` (changed by the test); counts
    them and keeps the query strings."""

    def __init__(self, namespace: str) -> None:
        self.pods: list[dict[str, Any]] = []
        self.queries: list[str] = []
        self.failing = False
        """Answer 503, as an API server that is restarting does."""
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path != f"/api/v1/namespaces/{namespace}/pods":
                    self.send_error(404)
                    return
                outer.queries.append(query)
                if outer.failing:
                    self.send_error(503)
                    return
                body = json.dumps({"kind": "PodList", "items": outer.pods}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi("llm")
    yield server
    server.close()


def _twin(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "autoscaler.cli", "twin", "--port", "0",
                             *args], stderr=subprocess.PIPE, text=True)


def _await(what: str, cond: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _served_pods(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return set(re.findall(r'vllm:num_requests_running\{[^}]*pod="([^"]+)"', text))


def test_the_twin_serves_the_ready_pods_of_the_cluster(api: FakeApi, tmp_path: Path) -> None:
    api.pods = [pod("chat-a"), pod("chat-b", ready=False)]
    proc = _twin(["--kubeconfig", str(kubeconfig(tmp_path, api.port)), "--namespace", "llm",
                  "--workload", "chat", "--pod-poll", "0.1"])
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert m, line
        assert "following the Ready pods of llm (label workload)" in line
        port = int(m.group(1))
        # chat-b is loading its model: no series for it, as a PodMonitor would not scrape it.
        _await("chat-a served", lambda: _served_pods(port) == {"chat-a"})
        # chat-b becomes Ready, chat-a is deleted: the twin follows.
        api.pods = [pod("chat-a", deleting=True), pod("chat-b"), pod("chat-c", ready=False)]
        _await("chat-b served alone", lambda: _served_pods(port) == {"chat-b"})
        # An API hiccup is not a scale-in: the pods it knew keep serving.
        api.failing = True
        failed_from = len(api.queries)
        _await("3 failed LISTs", lambda: len(api.queries) >= failed_from + 3)
        assert _served_pods(port) == {"chat-b"}
        assert all(q.startswith("labelSelector=workload") for q in api.queries), api.queries
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("args", "code", "fragment"), [
    pytest.param(["--kubeconfig", "/nonexistent/kubeconfig"], 2, "--kubeconfig",
                 id="missing kubeconfig"),
    pytest.param(["--kubeconfig", "K", "--replicas-file", "r.txt"], 2, "--replicas-file",
                 id="both replica sources"),
    pytest.param(["--kubeconfig", "K", "--pod-label", "a=b"], 2, "--pod-label",
                 id="a selector, not a label key"),
    pytest.param(["--kubeconfig", "K", "--pod-poll", "0"], 2, "--pod-poll", id="poll 0"),
    pytest.param(["--kubeconfig", "DEAD"], 1, "", id="API server unreachable"),
])
def test_a_bad_cluster_option_is_one_line(args: list[str], code: int, fragment: str,
                                          api: FakeApi, tmp_path: Path) -> None:
    good = str(kubeconfig(tmp_path, api.port))
    dead_dir = tmp_path / "dead"
    dead_dir.mkdir()
    api.close()  # only its port is used: nothing listens there now
    dead = str(kubeconfig(dead_dir, api.port))
    args = [{"K": good, "DEAD": dead}.get(a, a) for a in args]
    proc = subprocess.run([sys.executable, "-m", "autoscaler.cli", "twin", "--port", "0",
                           *args], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert fragment in err
