# The one place that knows the project's commands. `make help` lists them.

VENV := .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# What is installed: serving only (run, demo), or with the test and dev tools as well.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP := $(VENV)/.installed-dev

.DEFAULT_GOAL := help

.PHONY: help venv run demo test lint format settings-doc bench

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

venv: $(DEV_STAMP) ## Create .venv and install channelstream with its test and dev tools

$(SERVE_STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e .
	touch $(SERVE_STAMP)

# The dev install includes the serving one.
$(DEV_STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[test,dev]'
	touch $(SERVE_STAMP) $(DEV_STAMP)

run: $(SERVE_STAMP) ## Serve development.ini on http://127.0.0.1:8000 (in-memory broker)
	$(BIN)/channelstream -i development.ini

demo: $(SERVE_STAMP) ## Serve channelstream (:8000) and the chat demo on http://127.0.0.1:6543 (Ctrl-C stops both)
	$(BIN)/python examples/chat/run.py

test: lint ## Lint (as `make lint`), then run the whole test suite
	$(BIN)/pytest

lint: venv ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy src

format: venv ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix src tests examples
	$(BIN)/ruff format src tests examples

bench: venv ## Run the six benchmarks against ours and the original 0.7.1 (root; ~27 min)
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/idle_memory.py
	$(BIN)/python bench/connect_rate.py
	$(BIN)/python bench/batch_stall.py
	$(BIN)/python bench/keepalive_latency.py
	$(BIN)/python bench/soak.py

settings-doc: $(SERVE_STAMP) ## Regenerate the settings table in README.md from the settings table
	$(BIN)/channelstream_utils settings_doc --readme README.md
