# Pulse: every target refreshes what it needs (virtual environment, connector JAR) first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pulse-setup-stamp
CONNECTOR_JAR := jars/pulse-connectors.jar
MVN ?= mvn
PYTEST_ARGS ?=
ARGS ?=
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help setup jars test test-fast lint package demo synth clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found (README: prerequisites)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

JAVA_SOURCES := $(shell find jars/src -name '*.java' 2>/dev/null)

$(CONNECTOR_JAR): jars/pom.xml jars/build.sh $(JAVA_SOURCES)
	@MVN=$(MVN) jars/build.sh

# The JAR is built when missing or when the pom or a Java source changed. When the repository cannot provide the
# connectors, setup goes on (the reason is in jars/.unavailable) and the tests that need the JAR
# are skipped with that reason; `make jars`, `make package` and `make demo` still fail.
setup: $(STAMP) ## create/refresh .venv and the connector JAR (idempotent)
	@$(MAKE) --no-print-directory $(CONNECTOR_JAR) || { test -f jars/.unavailable && \
	  echo "setup: continuing without the connector JAR; tests that need it are skipped"; }

jars: $(CONNECTOR_JAR) ## build the one shaded connector JAR with Maven

test: setup ## the whole suite (unit, flink, cdk, integration)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup ## the fast tests only (seconds)
	$(PY) -m pytest -m "not slow and not flink and not integration" $(PYTEST_ARGS)

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

package: setup $(CONNECTOR_JAR) ## build the Managed Flink zip into dist/
	$(PY) -m pulse_build.flink_zip --jar $(CONNECTOR_JAR) --out dist

demo: setup $(CONNECTOR_JAR) ## run the whole pipeline locally on the embedded emulator (ARGS="--minutes 5 --seed 3")
	$(PY) -m pulse_local.demo $(ARGS)

synth: setup ## synthesize the CDK app offline into cdk.out/
	$(PY) app.py

clean: ## remove build outputs (keeps .venv)
	rm -rf dist cdk.out jars/target $(CONNECTOR_JAR) .pytest_cache
