"""The round trip behind the fleet-replay claims: a known trace and profile written as days
of vLLM history, loaded into a real Prometheus (``promtool tsdb create-blocks-from
openmetrics``), served on loopback, read back by ``reconstruct`` and ``fit_profile``, and
replayed next to the original. Used by the unit tests and ``benchmarks/fleet_replay.py``.
"""

from __future__ import annotations

import contextlib
import math
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from autoscaler.errors import AutoscalerError
from autoscaler.fleetdata.openmetrics import HistorySpec, write_history


def build_tsdb(spec: HistorySpec, workdir: Path, *, promtool: str = "promtool",
               more: Sequence[HistorySpec] = ()) -> tuple[Path, dict[str, float]]:
    """Write the OpenMetrics file and turn it into TSDB blocks; (data dir, facts of
    ``spec``). ``more`` histories (other workloads) go into the same data directory."""
    data = workdir / "data"
    facts: dict[str, float] = {}
    for i, one in enumerate((spec, *more)):
        om = workdir / f"history-{i}.om"
        got = write_history(one, om)
        facts = facts or got
        proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om),
                               str(data)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise AutoscalerError(f"promtool failed: {proc.stderr.strip()[-500:]}")
        om.unlink()
    return data, facts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_tsdb(data: Path, *, prometheus: str = "prometheus",
               extra_args: Sequence[str] = ()) -> Iterator[str]:
    """A real Prometheus serving ``data`` read-mostly on 127.0.0.1; yields its URL."""
    port = _free_port()
    cfg = data.parent / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 60s}\n", encoding="utf-8")
    log = (data.parent / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
         "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn", *extra_args], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AutoscalerError(f"prometheus exited with {proc.returncode}")
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AutoscalerError("prometheus not ready in 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass(frozen=True)
class PolicyDelta:
    policy: str
    attainment_trace: float
    attainment_prom: float
    gpu_hours_trace: float
    gpu_hours_prom: float

    @property
    def attainment_points(self) -> float:
        """Difference in percentage points (Prometheus minus trace)."""
        return 100.0 * (self.attainment_prom - self.attainment_trace)

    @property
    def gpu_hours_pct(self) -> float:
        if self.gpu_hours_trace <= 0:
            return math.nan
        return 100.0 * (self.gpu_hours_prom / self.gpu_hours_trace - 1.0)


def relative_error_pct(fitted: float, true: float) -> float:
    return math.nan if true == 0 else 100.0 * (fitted / true - 1.0)
