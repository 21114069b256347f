"""Fixtures for the end-to-end tier: a real control plane shared by the whole session.

Every test under tests/e2e/ is marked ``e2e``. The binaries are built on first use (a cold
build takes minutes; later runs reuse .cache/k8s/). A build or start-up failure is a test
error, not a skip: only ``AUTOSCALER_E2E=0`` skips the tier, for machines without Go.
Run the tier in one process (no ``-n``): each xdist worker would start its own cluster.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.e2e.kube import Binaries, ControlPlane, binaries_dir, build_binaries
from tests.e2e.kwok_cluster import kwok_cluster  # noqa: F401 - session fixture, registered once
from tests.support.wait import wait_until

HERE = Path(__file__).resolve().parent

_startup: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs a real Kubernetes control plane")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, not only this directory's.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager on loopback, for the session."""
    if os.environ.get("AUTOSCALER_E2E") == "0":
        pytest.skip("AUTOSCALER_E2E=0: the real control plane tier is switched off")
    # pytest keeps the last few base temp dirs, so the logs of a failed run stay readable.
    workdir = tmp_path_factory.mktemp("control-plane")
    binaries = Binaries.in_dir(binaries_dir())
    if binaries.missing():
        started = time.monotonic()
        binaries = build_binaries(log_path=workdir / "build.log")
        _startup["build"] = f"built the binaries in {time.monotonic() - started:.0f} s"
    plane = ControlPlane(binaries=binaries, workdir=workdir)
    started = time.monotonic()
    plane.start()
    _startup["start"] = f"started in {time.monotonic() - started:.1f} s; logs in {workdir}"
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    """An admin client for the session's control plane."""
    with control_plane.api_client() as api:
        yield api


@pytest.fixture
def namespace(api_client: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller empties it)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(api_client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    # Pods are refused until the namespace's "default" ServiceAccount exists (the
    # ReplicaSet controller then backs off). The serviceaccount controller creates it,
    # but right after an API-server restart (an earlier test) its watch can lag for
    # tens of seconds: give it 5 s, then create it as it would.
    def has_default() -> bool:
        return bool(core.list_namespaced_service_account(
            name, field_selector="metadata.name=default").items)

    try:
        wait_until(f"the default ServiceAccount of {name}", has_default, timeout_s=5)
    except AssertionError:
        try:
            core.create_namespaced_service_account(
                name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="default")))
        except ApiException as exc:
            if exc.status != 409:  # created by the controller in between: fine
                raise
    yield name
    core.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of the control plane's logs to every failing e2e test's report."""
    report = yield
    plane = getattr(item, "funcargs", {}).get("control_plane")
    if report.failed and isinstance(plane, ControlPlane):
        report.sections.append(("control plane logs", plane.log_tails()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _startup:
        terminalreporter.write_line("e2e control plane: " + "; ".join(_startup.values()))
