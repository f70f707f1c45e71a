# Cité+ — every command installs what it needs first (Python packages with uv
# from uv.lock, Java runtime included; the Kafka broker's jars and the schema
# registry from Maven Central, checked against deploy/*/artifacts.lock).
#   make run    start a node on its embedded defaults
#   make test   run the whole test suite against a real broker and registry
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
UV_VERSION := 0.13.9  # also pinned, with checksums, in deploy/dev/install_uv.py
# The first of Python 3.11, 3.12, 3.13 found (override: make PYTHON=/path/to/python3.x).
PYTHON ?= $(shell deploy/dev/pythons.sh --first)
ifeq ($(PYTHON),)
$(error Python 3.11, 3.12 or 3.13 is needed and none was found; install one, or pass PYTHON=...)
endif
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
RUN := $(UV) run --frozen --python $(PYTHON)
CITEPLUS := $(RUN) citeplus

# Tests get a broker and registry of their own, away from a node started by `make run`.
TEST_ENV := CITEPLUS_STATE=$(CURDIR)/var/test CITEPLUS_KAFKA_PORT=19092 CITEPLUS_REGISTRY_PORT=18081

.PHONY: help setup run stop test test-chaos test-unit test-pythons bench lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) deploy/dev/install_uv.py  # stdlib only: no pip needed, wheel checked by SHA-256

setup: $(UV) ## install Python packages (uv.lock) and fetch Kafka + registry artifacts
	@echo "==> Python packages (uv.lock)" >&2
	@$(UV) sync --frozen --python $(PYTHON) --quiet
	@deploy/dev/system-packages.sh
	@$(CITEPLUS) federation codegen
	@$(CITEPLUS) infra fetch

run: setup ## start a node with sample data for five cities, print answers, write a report
	@$(CITEPLUS) demo $(DEMO_ARGS)

stop: ## stop the node started by `make run`
	@$(CITEPLUS) down

# The unit suite on the other Python versions runs beside the whole suite (which spends
# much of its time waiting on brokers and nodes), in a session of its own that stops
# with the suite (Ctrl-C included); its output is printed at the end.
test: setup ## run every test against a real Kafka broker and schema registry
	@$(TEST_ENV) $(CITEPLUS) infra up --storage memory
	@mkdir -p var; setsid $(MAKE) --no-print-directory test-pythons > var/test-pythons.log 2>&1 & \
	  pythons=$$!; trap 'kill -TERM -- -'$$pythons' 2>/dev/null' INT TERM; \
	  status=0; $(TEST_ENV) $(RUN) pytest -q -p no:cacheprovider --durations=30 $(PYTEST_ARGS) || status=$$?; \
	  $(TEST_ENV) $(CITEPLUS) topics clean-scratch; \
	  $(TEST_ENV) $(CITEPLUS) infra down; \
	  wait $$pythons || { [ $$status -ne 0 ] || status=1; }; cat var/test-pythons.log; exit $$status

# The whole suite runs on $(PYTHON); the unit suite also on every other supported
# interpreter present here, each in its own environment (.venv-3.x), side by side.
test-pythons: ## run the unit tests under the other Python versions found here
	@deploy/dev/unit_other_pythons.sh $(UV) $(PYTHON)

# The cluster chaos run alone (3 brokers, two workers per stage, faults; also in `make test`).
test-chaos: setup ## only the chaos run on a local 3-broker cluster with two workers per stage
	@$(TEST_ENV) $(CITEPLUS) infra up --storage memory
	@status=0; $(TEST_ENV) $(RUN) pytest -q -p no:cacheprovider -s \
	  tests/integration/test_crash_safety.py -k cluster || status=$$?; \
	  $(TEST_ENV) $(CITEPLUS) infra down; exit $$status

test-unit: setup ## run only the tests that need no broker
	@$(RUN) pytest -q tests/unit

BENCHES := kafka_ceiling kafka_cluster cycles ingest ingest_single anonymise normalise normalise_batches energy_analytics publish publish_batches federation federation_entities sql_guard api
bench: setup ## run the benchmarks (they print their figures); then the whole pipeline
	@$(TEST_ENV) $(CITEPLUS) infra up --storage memory
	@status=0; for b in $(BENCHES); do echo "==> bench/$$b.py"; \
	  $(TEST_ENV) $(RUN) python bench/$$b.py || status=$$?; done; \
	  $(TEST_ENV) $(CITEPLUS) topics clean-scratch; \
	  $(TEST_ENV) $(CITEPLUS) infra down; \
	  echo "==> bench/pipeline.py (a private node)"; $(RUN) python bench/pipeline.py || status=$$?; \
	  exit $$status

lint: setup ## ruff check and format check
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .

format: setup ## apply ruff's formatting and safe fixes
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

clean: ## stop servers and remove local state (data, logs) under var/
	-@$(CITEPLUS) down
	rm -rf var
