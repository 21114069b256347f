# Two commands a new user needs: `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint unit e2e e2e-harness bench clean prometheus chromium
HELM_VERSION := v3.22.0
HELM := .cache/bin/helm

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Replay the embedded synthetic workload through every policy; writes reports/demo/index.html
demo: $(STAMP)
	mkdir -p reports
	$(VENV)/bin/autoscaler replay --report reports/demo

## The whole test suite: lint (ruff, mypy, import contracts), unit tests, then the
## end-to-end tier on a real Kubernetes control plane (built from Go modules on first use)
test: lint unit e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check autoscaler tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## A real Prometheus for the tests that talk to one (Debian package; needs root to install)
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing the Debian package prometheus"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }

## A headless browser for the report tests (Debian package; needs root to install)
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing the Debian package chromium"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## helm, for the chart tests (built from the Go module proxy once, cached in .cache/bin)
$(HELM):
	GOBIN=$(CURDIR)/.cache/bin go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

unit: $(STAMP) prometheus chromium $(HELM)
	$(PY) -m pytest -q -n 2 -p no:cacheprovider -m "not e2e"

## Real etcd + kube-apiserver + kube-controller-manager (cached in .cache/k8s/), one process
e2e: $(STAMP) prometheus
	tests/e2e/cluster/build.sh
	$(PY) -m pytest -q -p no:cacheprovider -m e2e tests/e2e --ignore=tests/e2e/harness

## The harness' own tests (the control plane, kube.py): run when changing tests/e2e/kube.py
e2e-harness: $(STAMP) prometheus
	tests/e2e/cluster/build.sh
	$(PY) -m pytest -q -p no:cacheprovider -m e2e tests/e2e/harness

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache .pytest_cache
