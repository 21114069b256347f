"""``autoscaler controller`` as a separate process, as the e2e tests and the closed-loop
benchmark run it: its own log, its own metrics port, leader election on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SA_NAMESPACE, SA_NAME = "inference-autoscaler", "inference-autoscaler-controller"
"""The ServiceAccount deploy/ creates for the controller (and the Lease's namespace)."""


class ControllerProcess:
    """The controller with ``kubeconfig``'s credentials, reading ``prometheus_url``; its
    output in ``workdir/controller-IDENTITY.log``, its /metrics on ``port``."""

    def __init__(self, kubeconfig: Path, prometheus_url: str, identity: str,
                 workdir: Path, *, lease_duration: int = 6,
                 extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.log_path = workdir / f"controller-{identity}.log"
        self.identity = identity
        argv = [sys.executable, "-m", "autoscaler.cli", "controller",
                "--kubeconfig", str(kubeconfig), "--prometheus-url", prometheus_url,
                "--leader-elect", "--lease-namespace", SA_NAMESPACE,
                "--lease-duration", str(lease_duration), "--identity", identity,
                "--metrics-host", "127.0.0.1", "--metrics-port", str(self.port),
                "--tick", "1", "--backfill-seconds", "0", *(extra or [])]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
