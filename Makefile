# quality_platform - the whole user interface: make demo | test | ui | bench
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON   ?= python3
TOOLS    := .tools
UV       := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
VENV     := .venv
BIN      := $(VENV)/bin

# committed configuration in data/, everything the platform generates in data/state/ (git-ignored)
export QP_CONFIG_DIR ?= $(CURDIR)/data
export QP_DATA_DIR ?= $(CURDIR)/data/state
export DAGSTER_HOME ?= $(QP_DATA_DIR)/dagster_home
export QP_PSEUDONYM_KEY_FILE ?= $(QP_DATA_DIR)/.secrets/pseudonym.key
export MLFLOW_DISABLE_TELEMETRY := true
export DAGSTER_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: help install browser demo test lint ui bench backfill summary clean

help:
	@echo "make demo    install, simulate the default scenario, run the whole asset graph, print a summary"
	@echo "make test    the whole test suite (ruff + pytest)"
	@echo "make ui      Dagster UI on http://127.0.0.1:3000 with the demo's history"
	@echo "make bench   benchmarks (figures, not tests)"
	@echo "make browser Debian chromium + chromium-driver for the UI test (make test runs it)"
	@echo "make backfill PLANT=plant_a FROM=2026-03-16 TO=2026-03-20   re-run a plant's days"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The locked environment (uv.lock); re-synced when the lock or pyproject change.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.synced

# Debian's Chromium and its ChromeDriver for the UI test in a real browser
# (quality_platform_tests/browser.py); installed once, with sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

dev-key: install
	@$(BIN)/qp dev-key --path $(QP_PSEUDONYM_KEY_FILE)

demo: install $(DAGSTER_HOME)/dagster.yaml dev-key
	$(BIN)/qp demo

test: install browser
	$(BIN)/ruff check quality_platform quality_platform_tests benchmarks
	$(BIN)/ruff format --check quality_platform quality_platform_tests benchmarks
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check quality_platform quality_platform_tests benchmarks
	$(BIN)/ruff format --check quality_platform quality_platform_tests benchmarks

# `dg dev` (webserver + daemon) on workspace.yaml, so the UI loads the location with the very origin
# quality_platform/location.py gives the runs qp executes. VIRTUAL_ENV: dg checks it is the project's.
ui: install $(DAGSTER_HOME)/dagster.yaml dev-key
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg dev -h 127.0.0.1 -p 3000 -w workspace.yaml

bench: install dev-key
	$(BIN)/python benchmarks/run.py

backfill: install $(DAGSTER_HOME)/dagster.yaml dev-key
	$(BIN)/qp backfill $(if $(PLANT),--plant $(PLANT)) $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO))

summary: install
	$(BIN)/qp summary

clean:
	rm -rf $(QP_DATA_DIR)/landing $(QP_DATA_DIR)/warehouse $(DAGSTER_HOME)/storage $(DAGSTER_HOME)/history $(DAGSTER_HOME)/logs $(QP_DATA_DIR)/bench
