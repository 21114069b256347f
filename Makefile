# Two commands a new user needs: `make demo` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint unit e2e bench clean prometheus

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Replay the embedded synthetic workload through every policy; writes reports/demo/index.html
demo: $(STAMP)
	$(VENV)/bin/autoscaler replay --report reports/demo

## The whole test suite: lint (ruff, mypy, import contracts) then pytest
test: lint unit

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

unit: $(STAMP) prometheus
	$(PY) -m pytest -q -n 2 -p no:cacheprovider -m "not e2e"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache .pytest_cache
