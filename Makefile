# Two commands for a user: `make run` (start the server) and `make test` (the whole suite).
# Each does all set-up itself on a fresh Debian machine; every step is idempotent and cached.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMPS := .stamps
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test fuzz setup setup-test system system-test venv libsets model js-test lint bench clean

run: setup
	$(VENV)/bin/agentic serve --host $(HOST) --port $(PORT)

test: setup-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Deeper API fuzzing than `make test` runs (tests/server/test_schemathesis.py: schemathesis' coverage and
# stateful phases against a real server); must end with 0 server errors. Override the knobs as needed:
# FUZZ_EXAMPLES per operation, FUZZ_BUDGET_S wall-clock seconds, FUZZ_SEED to replay a failing run.
FUZZ_EXAMPLES ?= 50
FUZZ_BUDGET_S ?= 600
fuzz: setup-test
	AGENTIC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) AGENTIC_FUZZ_BUDGET_S=$(FUZZ_BUDGET_S) AGENTIC_FUZZ_SEED=$(FUZZ_SEED) \
		$(PY) -m pytest -q -s tests/server/test_schemathesis.py $(PYTEST_ARGS)

setup: system venv libsets model
setup-test: system-test venv libsets model js-test

system:
	@bash infra/host/install-system-packages.sh

system-test:
	@bash infra/host/install-system-packages.sh --with-test-deps

$(STAMPS):
	@mkdir -p $(STAMPS)

# Reinstall only when pyproject.toml changes.
venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml | $(STAMPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The official JS SDK for the browser test (tests/server/agent_protocol/test_browser_sdk.py), pinned by its
# package-lock.json; reinstalled only when that changes. Without npm or the registry the test skips, saying why.
JS_TEST := tests/server/agent_protocol/browser
js-test: $(JS_TEST)/node_modules/.package-lock.json
$(JS_TEST)/node_modules/.package-lock.json: $(JS_TEST)/package.json $(JS_TEST)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		(cd $(JS_TEST) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json) \
			|| echo "note: npm ci failed; the browser SDK test will be skipped"; \
	else echo "note: npm not installed; the browser SDK test will be skipped"; fi

# Library sets (base, datascience) for the local sandbox, built into the data dir; no-op when current.
libsets: venv
	$(VENV)/bin/agentic libsets build

# The embedded model (Qwen2.5-Coder-1.5B Q4_K_M), assembled once into the user cache dir.
model: venv
	$(VENV)/bin/agentic model setup

# Habits, checked in CI before the tests: lint, formatting, strict types, DESIGN's import arrows.
lint: venv
	$(VENV)/bin/ruff check agents tools sandbox workspace server tests bench
	$(VENV)/bin/ruff format --check agents tools sandbox workspace server tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/sandbox_latency.py
	$(PY) bench/humaneval_throughput.py

clean:
	rm -rf $(STAMPS) build *.egg-info
