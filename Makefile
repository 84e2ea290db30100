# BotArena's entry points for operators and developers. `make up` and `make test` work
# on a fresh machine: they create .venv and install what BotArena needs from PyPI.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: up test lint format bench setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with BotArena and its test tools

up: setup  ## run BotArena on its embedded defaults (data under var/)
	$(BIN)/botarena up

test: lint  ## lint, then run the whole test suite against real servers
	$(BIN)/pytest

lint: setup  ## ruff: lint and formatting
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup  ## benchmarks; JSON results under tests/bench/results/
	$(BIN)/python -m tests.bench.hub_bench --out tests/bench/results/hub.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
