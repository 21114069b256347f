"""A real Kubernetes control plane on loopback, for the end-to-end tests.

``ControlPlane`` runs etcd, kube-apiserver and kube-controller-manager as child processes,
from binaries that ``cluster/build.sh`` compiles from the pinned Go modules. There is no
kubelet, so pods stay Pending; everything else the autoscaler touches is the real thing:
Deployments, ReplicaSets, the scale subresource, the HPA controller, RBAC with
ServiceAccount tokens, Leases, Events, CRDs and API aggregation (front-proxy certificates
and request-header flags are set up, so an aggregated API server can authenticate the
aggregator).

Everything listens on 127.0.0.1 and lives in one work directory: certificates, etcd data,
kubeconfigs and one log file per process (``log_paths``; ``log_tails()`` for failures).
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.support.certs import CertPair, make_ca, make_leaf, write_key
from tests.support.ports import free_port
from tests.support.procs import die_with_parent

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "cluster" / "build.sh"

# The first address of the service range is the `kubernetes` Service's ClusterIP, which the
# API server's serving certificate must name (10.0.0.0/24 -> 10.0.0.1).
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
FRONT_PROXY_CLIENT_NAME = "front-proxy-client"


# Controllers the autoscaler's tests rely on, and the ones those need to work at all:
# serviceaccount(-token) create the `default` ServiceAccount that pod admission requires;
# root-ca-certificate-publisher writes the kube-root-ca.crt ConfigMap in every namespace;
# clusterrole-aggregation fills the aggregated `admin`/`edit`/`view` ClusterRoles;
# garbage-collector deletes a Deployment's ReplicaSets and Pods with it; namespace-controller
# lets a test delete its namespace. Everything else (nodes, volumes, jobs, ...) stays off to
# spare the two CPU cores.
CONTROLLERS: tuple[str, ...] = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "horizontal-pod-autoscaler-controller",
    "serviceaccount-token-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "garbage-collector-controller",
    "namespace-controller",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached; the message carries logs."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the three executables the control plane runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path

    @classmethod
    def in_dir(cls, bin_dir: Path) -> Binaries:
        return cls(
            etcd=bin_dir / "etcd",
            kube_apiserver=bin_dir / "kube-apiserver",
            kube_controller_manager=bin_dir / "kube-controller-manager",
        )

    def missing(self) -> list[Path]:
        paths = (self.etcd, self.kube_apiserver, self.kube_controller_manager)
        return [path for path in paths if not os.access(path, os.X_OK)]


def binaries_dir() -> Path:
    """Where build.sh puts (or has put) the binaries; it alone knows the version-keyed path."""
    out = subprocess.run(
        [str(BUILD_SCRIPT), "--print-bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def build_binaries(*, timeout_s: float = 3600.0, log_path: Path | None = None) -> Binaries:
    """Run build.sh (a no-op when the binaries exist) and return the binaries it built.

    The build output goes to ``log_path`` when given; its tail is in the error on failure.
    """
    log = log_path or Path(os.devnull)
    with log.open("ab") as sink:
        try:
            subprocess.run(
                [str(BUILD_SCRIPT)],
                check=True,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout_s,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise ControlPlaneError(f"{BUILD_SCRIPT} failed: {exc}\n{_tail(log, 40)}") from exc
    binaries = Binaries.in_dir(binaries_dir())
    if missing := binaries.missing():
        raise ControlPlaneError(f"{BUILD_SCRIPT} succeeded but did not produce {missing}")
    return binaries


# --- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterCerts:
    """Every certificate and key the control plane and its clients use."""

    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    controller_manager: CertPair
    front_proxy_ca: CertPair
    front_proxy_client: CertPair
    service_account_key: Path
    service_account_public_key: Path


def generate_certs(directory: Path) -> ClusterCerts:
    """Create a cluster CA, a front-proxy CA and the leaf certificates signed by them."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_cert, ca_key = make_ca(directory, "ca", "autoscaler-e2e-ca")
    front_ca, front_ca_cert, front_ca_key = make_ca(
        directory, "front-proxy-ca", "autoscaler-e2e-front-proxy-ca"
    )
    apiserver = make_leaf(
        directory,
        "apiserver",
        ca_cert=ca_cert,
        ca_key=ca_key,
        common_name="kube-apiserver",
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ip_addresses=("127.0.0.1", KUBERNETES_SERVICE_IP),
        server=True,
    )
    # O=system:masters is bound to cluster-admin by the bootstrap RBAC policy.
    admin = make_leaf(
        directory,
        "admin",
        ca_cert=ca_cert,
        ca_key=ca_key,
        common_name="kubernetes-admin",
        organizations=("system:masters",),
        client=True,
    )
    # The bootstrap policy binds this user name to system:kube-controller-manager.
    controller_manager = make_leaf(
        directory,
        "controller-manager",
        ca_cert=ca_cert,
        ca_key=ca_key,
        common_name="system:kube-controller-manager",
        client=True,
    )
    # The API server presents this to aggregated API servers; they accept it when it chains
    # to the request-header CA and its CN is in --requestheader-allowed-names.
    front_proxy_client = make_leaf(
        directory,
        "front-proxy-client",
        ca_cert=front_ca_cert,
        ca_key=front_ca_key,
        common_name=FRONT_PROXY_CLIENT_NAME,
        client=True,
    )
    # RSA for the token signer: RS256 is the algorithm every JWT verifier supports.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private = directory / "sa.key"
    write_key(sa_private, sa_key)
    sa_public = directory / "sa.pub"
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ClusterCerts(
        ca=ca,
        apiserver=apiserver,
        admin=admin,
        controller_manager=controller_manager,
        front_proxy_ca=front_ca,
        front_proxy_client=front_proxy_client,
        service_account_key=sa_private,
        service_account_public_key=sa_public,
    )


# --- kubeconfigs ----------------------------------------------------------------------------


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: Path,
    user: str,
    client_cert: CertPair | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> Path:
    """A one-context kubeconfig authenticating with a client certificate or a bearer token."""
    credentials: dict[str, str] = {}
    if client_cert is not None:
        credentials = {
            "client-certificate": str(client_cert.cert),
            "client-key": str(client_cert.key),
        }
    if token is not None:
        credentials["token"] = token
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {"name": user, "context": {"cluster": "e2e", "user": user, "namespace": namespace}}
        ],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def client_from_kubeconfig(path: Path) -> k8s.ApiClient:
    """A kubernetes ApiClient configured from one kubeconfig file (not from ~/.kube)."""
    api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(path)
    )
    return api


# --- processes ------------------------------------------------------------------------------


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class _Process:
    """One child process with its argv and its log file (appended to across restarts)."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"==== starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    def exit_code(self) -> int | None:
        """None while running (or never started)."""
        return None if self.popen is None else self.popen.poll()

    def stop(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; ``grace_s=0`` kills at once (a crash)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            if grace_s > 0:
                self.popen.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=grace_s)
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
        self.popen = None


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, in ``workdir``.

    Use as a context manager, or call ``start()`` and ``stop()``. ``hpa_sync_period_s`` is
    the HPA controller's loop period (Kubernetes' default is 15 s; tests want it short).
    """

    def __init__(
        self,
        *,
        binaries: Binaries,
        workdir: Path,
        hpa_sync_period_s: float = 2.0,
        start_timeout_s: float = 90.0,
    ) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.hpa_sync_period_s = hpa_sync_period_s
        self.start_timeout_s = start_timeout_s
        self.ports = Ports(
            etcd_client=free_port(),
            etcd_peer=free_port(),
            apiserver=free_port(),
            controller_manager=free_port(),
        )
        self.server_url = f"https://127.0.0.1:{self.ports.apiserver}"
        self.etcd_url = f"http://127.0.0.1:{self.ports.etcd_client}"
        self._certs: ClusterCerts | None = None
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._controller_manager: _Process | None = None

    # -- public API --------------------------------------------------------------------------

    @property
    def certs(self) -> ClusterCerts:
        if self._certs is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._certs

    @property
    def kubeconfig_path(self) -> Path:
        """The admin (system:masters) kubeconfig."""
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_path(self) -> Path:
        """The cluster CA: it signs the API server's serving certificate."""
        return self.certs.ca.cert

    @property
    def log_paths(self) -> dict[str, Path]:
        return {name: self.workdir / f"{name}.log" for name in self._process_names()}

    def start(self) -> None:
        """Start all three processes and return once the cluster can run workloads.

        "Ready" means the API server's /readyz passes and the controller-manager has
        created the `default` ServiceAccount (without it, the ReplicaSet controller's pods
        are refused by admission).
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._certs = generate_certs(self.workdir / "pki")
        write_kubeconfig(
            self.kubeconfig_path,
            server=self.server_url,
            ca_file=self.certs.ca.cert,
            user="kubernetes-admin",
            client_cert=self.certs.admin,
        )
        kcm_kubeconfig = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            server=self.server_url,
            ca_file=self.certs.ca.cert,
            user="system:kube-controller-manager",
            client_cert=self.certs.controller_manager,
            namespace="kube-system",
        )
        self._etcd = _Process("etcd", self._etcd_argv(), self.workdir / "etcd.log")
        self._apiserver = _Process(
            "kube-apiserver", self._apiserver_argv(), self.workdir / "kube-apiserver.log"
        )
        self._controller_manager = _Process(
            "kube-controller-manager",
            self._controller_manager_argv(kcm_kubeconfig),
            self.workdir / "kube-controller-manager.log",
        )
        try:
            self._etcd.start()
            self._wait("etcd /health", self._etcd_healthy, [self._etcd])
            self._apiserver.start()
            self._wait_apiserver_ready()
            self._controller_manager.start()
            self._wait(
                "the controller-manager to create ServiceAccount default/default",
                self._default_service_account_exists,
                [self._apiserver, self._controller_manager],
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process (controller-manager, API server, then etcd). Idempotent."""
        for process in (self._controller_manager, self._apiserver, self._etcd):
            if process is not None:
                process.stop()

    def restart_apiserver(self, *, crash: bool = False) -> None:
        """Stop the API server and start it again on the same port with the same state.

        ``crash=True`` kills it (SIGKILL) instead of a graceful SIGTERM shutdown. Clients
        need no re-configuration: same URL, same CA, and etcd (untouched) keeps every object.
        Returns once /readyz passes again.
        """
        if self._apiserver is None:
            raise ControlPlaneError("the control plane has not been started")
        self._apiserver.stop(grace_s=0 if crash else 15.0)
        self._apiserver.start()
        self._wait_apiserver_ready()

    def api_client(self) -> k8s.ApiClient:
        """A new client authenticated as the cluster admin."""
        return client_from_kubeconfig(self.kubeconfig_path)

    def service_account_token(self, namespace: str, name: str, *, expiration_s: int = 3600) -> str:
        """A real token for ServiceAccount ``namespace/name`` from the TokenRequest API."""
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_s)
        )
        with self.api_client() as api:
            response = k8s.CoreV1Api(api).create_namespaced_service_account_token(
                name, namespace, request
            )
        if response.status is None or not response.status.token:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name} returned no token")
        return response.status.token

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, expiration_s: int = 3600
    ) -> Path:
        """A kubeconfig that authenticates as an existing ServiceAccount with a real token.

        The token is what a pod of that ServiceAccount would get, so RBAC applies exactly as
        in a cluster. The file is ``<workdir>/sa-<namespace>-<name>.kubeconfig``.
        """
        token = self.service_account_token(namespace, name, expiration_s=expiration_s)
        return write_kubeconfig(
            self.workdir / f"sa-{namespace}-{name}.kubeconfig",
            server=self.server_url,
            ca_file=self.certs.ca.cert,
            user=f"system:serviceaccount:{namespace}:{name}",
            token=token,
            namespace=namespace,
        )

    def log_tails(self, lines: int = 40) -> str:
        """The last ``lines`` lines of each process's log, for failure messages."""
        parts = []
        for name, path in self.log_paths.items():
            parts.append(f"---- {name} ({path}), last {lines} lines ----\n{_tail(path, lines)}")
        return "\n".join(parts)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- command lines -------------------------------------------------------------------------

    @staticmethod
    def _process_names() -> tuple[str, ...]:
        return ("etcd", "kube-apiserver", "kube-controller-manager")

    def _etcd_argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            str(self.binaries.etcd),
            "--name=e2e",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e2e={peer}",
            "--initial-cluster-state=new",
            # The data is thrown away after the run: skipping fsync keeps a busy disk (other
            # builds, other tests) from stalling every API write.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        certs = self.certs
        return [
            str(self.binaries.kube_apiserver),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports.apiserver}",
            f"--etcd-servers={self.etcd_url}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--tls-cert-file={certs.apiserver.cert}",
            f"--tls-private-key-file={certs.apiserver.key}",
            f"--client-ca-file={certs.ca.cert}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs.service_account_public_key}",
            f"--service-account-signing-key-file={certs.service_account_key}",
            # API aggregation: the API server proxies to aggregated servers with this client
            # certificate, and publishes the request-header settings (kube-system ConfigMap
            # extension-apiserver-authentication) that those servers check it against.
            f"--requestheader-client-ca-file={certs.front_proxy_ca.cert}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT_NAME}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={certs.front_proxy_client.cert}",
            f"--proxy-client-key-file={certs.front_proxy_client.key}",
            # Resolve an APIService's Service by its ClusterIP/ExternalName, not Endpoints:
            # an ExternalName Service pointing at localhost then reaches a test's server.
            "--enable-aggregator-routing=false",
            # The `kubernetes` Service's Endpoints may not hold a loopback address, so the
            # default reconciler would fail every 10 s; nothing here runs pods that need it.
            "--endpoint-reconciler-type=none",
            # With the default 0 s, the controller-manager's open watches kept a SIGTERMed
            # API server up past 15 s; with a grace period it ends them and exits in ~1 s.
            "--shutdown-watch-termination-grace-period=2s",
            "--profiling=false",
            "--v=1",
        ]

    def _controller_manager_argv(self, kubeconfig: Path) -> list[str]:
        certs = self.certs
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.controller_manager}",
            f"--cert-dir={self.workdir / 'controller-manager-certs'}",
            f"--controllers={','.join(CONTROLLERS)}",
            # Each controller talks to the API server as its own ServiceAccount with the
            # bootstrap RBAC role for it, as in a real cluster (so RBAC gaps show up here).
            "--use-service-account-credentials=true",
            f"--root-ca-file={certs.ca.cert}",
            f"--service-account-private-key-file={certs.service_account_key}",
            f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_period_s:g}s",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]

    # -- readiness -----------------------------------------------------------------------------

    def _wait(
        self, what: str, ready: Callable[[], bool], watched: Sequence[_Process | None]
    ) -> None:
        """Poll ``ready`` until true; fail fast with logs when a watched process exits."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            for process in watched:
                if process is not None and (code := process.exit_code()) is not None:
                    raise ControlPlaneError(
                        f"{process.name} exited with code {code} while waiting for {what}\n"
                        + self.log_tails()
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.start_timeout_s:g} s waiting for {what}\n"
                    + self.log_tails()
                )
            time.sleep(0.25)

    def _wait_apiserver_ready(self) -> None:
        self._wait("kube-apiserver /readyz", self._apiserver_ready, [self._etcd, self._apiserver])

    def _etcd_healthy(self) -> bool:
        return _http_ok(f"{self.etcd_url}/health", context=None)

    def _admin_tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs.ca.cert))
        context.load_cert_chain(str(self.certs.admin.cert), str(self.certs.admin.key))
        return context

    def _apiserver_ready(self) -> bool:
        return _http_ok(f"{self.server_url}/readyz", context=self._admin_tls_context())

    def _default_service_account_exists(self) -> bool:
        return _http_ok(
            f"{self.server_url}/api/v1/namespaces/default/serviceaccounts/default",
            context=self._admin_tls_context(),
        )


def _http_ok(url: str, *, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


# --- aggregated APIs ------------------------------------------------------------------------

APISERVICE = "v1beta1.external.metrics.k8s.io"


def register_apiservice(control_plane: ControlPlane, api_client: k8s.ApiClient,
                        service_ns: str, service: str, port: int) -> Callable[[], None]:
    """Register a server on loopback ``port`` as the cluster's external metrics API: an
    ExternalName Service to localhost and the APIService (CA: the cluster's). Returns the
    clean-up."""
    core = k8s.CoreV1Api(api_client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=service_ns)))
    core.create_namespaced_service(service_ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
        "spec": {"type": "ExternalName", "externalName": "localhost",
                 "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}})
    reg = k8s.ApiregistrationV1Api(api_client)
    reg.create_api_service({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": APISERVICE},
        "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1",
                 "service": {"namespace": service_ns, "name": service, "port": port},
                 "caBundle": base64.b64encode(control_plane.certs.ca.cert.read_bytes()
                                              ).decode(),
                 "groupPriorityMinimum": 100, "versionPriority": 100}})

    def unregister() -> None:
        reg.delete_api_service(APISERVICE)
        core.delete_namespace(service_ns)

    return unregister
