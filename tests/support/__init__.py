"""What tests and benchmarks share: real servers, fakes, drivers, a PKI and small waits.

- ``promserver``: a real Prometheus (Debian binary), scripted exporters and proxies.
- ``promfake``: a fake Prometheus that answers by metric name and labels.
- ``certs``: a throw-away PKI (CAs, serving and client certificates).
- ``wait``: ``wait_until``, the one condition wait (no fixed sleeps).
- ``ports``: ``free_port``, a loopback port nobody listens on.
- ``procs``: ``die_with_parent``, so an interrupted run leaves no servers behind.

Imported by package path (``from tests.support.promserver import PrometheusServer``), with
the repo root importable: pytest puts it first on ``sys.path`` (``tests`` is a package), and
benchmarks run from the root (``python -m benchmarks.NAME``, or ``benchmarks/run_all.py``).
The e2e tier's control-plane driver stays beside its Go build in ``tests/e2e/`` and is
imported the same way (``tests.e2e.kube``).
"""
