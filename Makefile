# agon: two entry points, `make demo` and `make test`; both install what they need.
# `make bench` measures agon (benchmarks/README.md), under 15 minutes on 2 CPUs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MOTION ?= AI's impact on the job market is positive
ROUNDS ?= 8
# the offline model answers instantly; a little latency makes the demo readable live
DEMO_LATENCY ?= 0.4
# e.g. BENCH_ARGS='--only throughput --levels 1,40' or '--smoke'
BENCH_ARGS ?=

.PHONY: install demo lint format test test-registry test-unit bench down clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("agon needs Python >= 3.10") if sys.version_info < (3, 10) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	@touch $@

install: $(VENV)/.installed

demo: install
	AGON_LLM_OFFLINE_LATENCY_S=$(DEMO_LATENCY) $(BIN)/agon up
	$(BIN)/agon debate "$(MOTION)" --rounds $(ROUNDS) --follow
	@echo "the broker and the agents keep running: 'agon status', 'agon down' ($(BIN)/agon)"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make test` runs every test, then these again with a schema registry (Confluent's wire
# format); `make test-registry` runs them all that way
REGISTRY_TESTS ?= tests/integration/test_registry.py tests/integration/test_debate.py \
	tests/integration/test_poison.py tests/integration/test_any_producer.py \
	tests/integration/test_recovery.py tests/integration/test_asked_again.py \
	tests/integration/test_gateway.py

test: lint
	$(BIN)/pytest
	AGON_TEST_WIRE_FORMAT=confluent $(BIN)/pytest $(REGISTRY_TESTS)

test-registry: lint
	AGON_TEST_WIRE_FORMAT=confluent $(BIN)/pytest

test-unit: lint
	$(BIN)/pytest -m "not integration"

bench: install
	$(BIN)/python -m benchmarks --update-readme $(BENCH_ARGS)

down:
	$(BIN)/agon down

clean: down
	rm -rf .agon .agon-test
