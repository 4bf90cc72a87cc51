# The two commands of the README are `make run` and `make test`; the rest are for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench loadtest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m proxy serve

lint: $(STAMP)
	$(BIN)/ruff check proxy tests loadtests
	$(BIN)/ruff format --check proxy tests loadtests
	$(BIN)/mypy proxy

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m loadtests.bench

loadtest: $(STAMP)
	$(BIN)/python -m loadtests.run_locust

clean:
	rm -rf $(VENV) .edge-data .pytest_cache .mypy_cache .ruff_cache
