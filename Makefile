# Two commands for a user: `make run` (start the server) and `make test` (the whole suite).
# Each does all set-up itself on a fresh Debian machine; every step is idempotent and cached.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMPS := .stamps
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test setup setup-test system system-test venv libsets model lint typecheck bench clean

run: setup
	$(VENV)/bin/agentic serve --host $(HOST) --port $(PORT)

test: setup-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

setup: system venv libsets model
setup-test: system-test venv libsets model

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

# Library sets (base, datascience) for the local sandbox, built into the data dir; no-op when current.
libsets: venv
	$(VENV)/bin/agentic libsets build

# The embedded model (Qwen2.5-Coder-1.5B Q4_K_M), assembled once into the user cache dir.
model: venv
	$(VENV)/bin/agentic model setup

lint: venv
	$(VENV)/bin/ruff check agents tools sandbox workspace server tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/sandbox_latency.py
	$(PY) bench/humaneval_throughput.py

clean:
	rm -rf $(STAMPS) build *.egg-info
