# One entry point for newcomers: `make run` and `make test` install everything they need themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
VENV := .venv
VPY := $(VENV)/bin/python
MEMBERS := $(patsubst %/pyproject.toml,%,$(wildcard libs/*/pyproject.toml services/*/pyproject.toml))
PYTEST_ARGS ?=

.PHONY: help ensure-uv install lock infra-up infra-down infra-status reset-data run test test-unit test-faults soak lint schemas fmt bench bench-memory deploy-check kind-up kind-down browser wrk clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# uv runs as `python -m uv`, so a freshly pip-installed uv works without a PATH or pyenv-shim refresh.
UV := $(PYTHON) -m uv

ensure-uv:
	@if ! $(UV) --version 2>/dev/null | grep -q "$(UV_VERSION)"; then \
	  echo "installing uv $(UV_VERSION) from PyPI"; $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"; fi

install: ensure-uv ## create .venv from the hash-pinned lock + editable workspace members
	@test -x $(VPY) || $(UV) venv -q --python $(PYTHON) $(VENV)
	@$(UV) pip sync -q --python $(VPY) --require-hashes requirements/lock.txt
	@$(UV) pip install -q --python $(VPY) --no-deps --no-build-isolation $(addprefix -e ,$(MEMBERS))
	@echo "installed: $(VENV) ($(words $(MEMBERS)) workspace members)"

lock: ensure-uv ## re-resolve requirements/lock.txt (hash-pinned, no download addresses)
	$(UV) pip compile requirements/workspace.in --generate-hashes --python-version 3.11 --no-header -q -o requirements/lock.txt
	@# editable members are installed separately; their lines carry no hash and would break --require-hashes
	awk '/^-e /{skip=1;next} skip && /^ +#/{next} {skip=0; print}' requirements/lock.txt > requirements/lock.txt.tmp
	mv requirements/lock.txt.tmp requirements/lock.txt
	@! grep -nE 'https?://' requirements/lock.txt || (echo "lock records an address" && false)

infra-up: install ## start (or reuse) the local Kafka, MariaDB, MongoDB and Elasticsearch servers
	$(VPY) -m devservers up

infra-down: ## stop the local servers that infra-up started (never others)
	@test -x $(VPY) && $(VPY) -m devservers down || true

infra-status: install ## show which local servers answer
	$(VPY) -m devservers status

reset-data: install ## empty the local data the project created (MySQL DB_NAME, its Mongo dbs, ES indexes, topics); nothing else
	$(VPY) scripts/reset_data.py --yes

# EXTERNAL_KAFKA=host:port make run: that broker (e.g. a real Kafka from compose) instead of the local one
run: install ## start everything and print the gateway URL (Ctrl-C stops the services; EXTERNAL_KAFKA=host:port)
	@VPY=$(VPY) scripts/run-env.sh .devdata/services.env
	@echo "gateway: http://localhost:8000  (OpenAPI at /docs; tokens in .devdata/user-token, .devdata/admin-token)"
	$(VENV)/bin/honcho -f Procfile -e .devdata/services.env start

browser: ## Debian's chromium for the console's browser tests (Playwright drives it; no browser download)
	@# fonts-nanum: Korean glyphs in the console screenshots
	@{ command -v chromium >/dev/null && dpkg -s fonts-nanum >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum >/dev/null; \
	  else echo "run: sudo apt-get install chromium fonts-nanum (needed by the console browser tests)"; exit 1; fi; }

wrk: ## Debian's wrk, the HTTP load generator of `make bench` (apt-get as root, else says what to run)
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else echo "run: sudo apt-get install wrk (the load generator of the HTTP benchmark)"; exit 1; fi; }

test: infra-up browser ## install, start what tests need, run the whole suite (tests/faults in parallel)
	VPY=$(VPY) scripts/run-tests.sh $(PYTEST_ARGS)

test-unit: install ## only the tests that need no server
	$(VPY) -m pytest -m "not integration and not faults" $(PYTEST_ARGS)

test-faults: infra-up ## the slow fault-injection suite, and a larger run of the runner's state machine
	RUNNER_PROPERTY_EXAMPLES=300 RUNNER_PROPERTY_STEPS=50 $(VPY) -m pytest -q \
	  libs/consumer-runtime/tests/test_runner_properties.py $(PYTEST_ARGS)
	$(VPY) -m pytest -m faults $(PYTEST_ARGS)

SOAK_S ?= 300
soak: install ## chaos soak: load + a random fault every 10 s for SOAK_S s (default 300); report in benchmarks/results/soak/
	SOAK_S=$(SOAK_S) $(VPY) -m benchmarks.soak

lint: install ## ruff + mypy + the event schema compatibility gate
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(addsuffix /src,$(wildcard libs/*)) $(wildcard services/*/src)
	@# the event contract gate: every model still reads its topic's latest published schema (docs/contracts.md)
	$(VPY) -m platform_events.schemas check

# BREAKING=1 publishes a backward-incompatible model change as a new version (it then needs a BREAKING changelog entry)
schemas: install ## publish the event models' JSON Schemas (libs/events/schemas) and regenerate docs/asyncapi.json
	$(VPY) -m platform_events.schemas write $(if $(BREAKING),--breaking)
	$(VPY) -m platform_events.asyncapi > docs/asyncapi.json

fmt: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: infra-up wrk ## run the benchmarks (under 15 min); tables on stdout, JSON + REPORT.md in benchmarks/results/
	$(VPY) -m benchmarks

# not part of `bench`: 1M events per topic take longer than its 15 minute budget on 2 cores
bench-memory: infra-up ## peak RSS of every sink process draining a backlog (MEMORY_EVENTS per topic, default 1M)
	$(VPY) -m benchmarks.memory
	$(VPY) -m benchmarks.report > /dev/null

deploy-check: install ## render + validate the k8s overlays and components, compose and the Dockerfile (no cluster needed)
	$(VPY) deploy/validate.py

kind-up: install ## create a kind cluster, build + load the images (IMAGE_TAG), apply overlays/kind, print the gateway URL
	KUBECTL=$(CURDIR)/$(VENV)/bin/kubectl deploy/k8s/kind-up.sh

kind-down: ## delete the kind cluster
	deploy/k8s/kind-down.sh

clean: infra-down
	rm -rf $(VENV) .devdata .pytest_cache .mypy_cache .ruff_cache
