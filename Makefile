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
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help setup jars test test-fast lint package demo bench synth clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found (README: prerequisites)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

$(CONNECTOR_JAR): jars/pom.xml
	@command -v $(MVN) >/dev/null || { echo "jars: Maven ($(MVN)) not found (README: prerequisites)"; exit 1; }
	@echo "jars: building $(CONNECTOR_JAR) with Maven (first run downloads the connectors)"
	@cd jars && $(MVN) -B -q package -DskipTests > target-build.log 2>&1 || { \
	  if grep -qiE "could not (transfer|resolve)|unknownhost|connect timed out|network is unreachable" target-build.log; then \
	    echo "jars: Maven cannot reach its repository (Maven Central); see jars/target-build.log"; \
	  else echo "jars: Maven build failed; see jars/target-build.log"; tail -20 target-build.log; fi; exit 1; }
	@cp jars/target/pulse-connectors.jar $(CONNECTOR_JAR)
	@rm -f jars/target-build.log

setup: $(STAMP) $(CONNECTOR_JAR) ## create/refresh .venv and the connector JAR (idempotent)

jars: $(CONNECTOR_JAR) ## build the one shaded connector JAR with Maven

test: setup ## the whole suite (unit, flink, cdk, integration)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup ## the fast tests only (seconds)
	$(PY) -m pytest -m "not slow and not flink and not integration" $(PYTEST_ARGS)

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

package: setup ## build the Managed Flink zip into dist/
	$(PY) -m flink_app.packaging --jar $(CONNECTOR_JAR) --out dist

demo: setup ## run the whole pipeline locally on the embedded emulator
	$(PY) -m pulse_local.demo

synth: setup ## synthesize the CDK app offline into cdk.out/
	$(PY) app.py

clean: ## remove build outputs (keeps .venv)
	rm -rf dist cdk.out jars/target $(CONNECTOR_JAR) .pytest_cache
