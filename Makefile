# chatsessions — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test lint typecheck bench clean resilience

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## make run: install, migrate the embedded SQLite database, load the demo tenant on first
## run, print a working curl line, serve on 127.0.0.1:8000.
run: install
	$(BIN)/chatsessions demo --if-missing --port $(PORT)
	$(BIN)/chatsessions serve --host $(HOST) --port $(PORT)

## make test: install and run the whole suite (SQLite and the local PostgreSQL).
test: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest -q

## make resilience: the full fault-injection set (longer runs, more crashes).
resilience: install
	CHATSESSIONS_RESILIENCE_FULL=1 $(BIN)/pytest -q tests/resilience

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
