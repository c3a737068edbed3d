# chatsessions — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# The browser tests drive the system's Chromium (Playwright never downloads one).
CHROMIUM := /usr/bin/chromium

.PHONY: install install-dev run test check lint typecheck bench bench-analytics bench-import clean resilience screenshots

# Two install stamps: serving needs only the package and its runtime dependencies (the
# first `make run` on a fresh machine waits for nothing else); the test and lint tools
# come with `make test`.
$(BIN)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed-run
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed-run
install-dev: $(BIN)/.installed-dev

## make run: install, migrate the embedded SQLite database, load the demo tenant on first
## run, print a working curl line, serve on 127.0.0.1:8000.
run: install
	$(BIN)/chatsessions demo --if-missing --port $(PORT)
	$(BIN)/chatsessions serve --host $(HOST) --port $(PORT)

## make test: install, check for drift (lint, format, types, the generated API docs),
## and run the whole suite (SQLite and the local PostgreSQL; the doctests of src/ too;
## the console in Debian's Chromium, installed here when missing).
test: check $(CHROMIUM)
	$(BIN)/pytest -q

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

## make screenshots: every console page (demo tenant) into docs/console/*.png.
screenshots: install-dev $(CHROMIUM)
	$(BIN)/python scripts/console_screenshots.py

## make check: what fails the build before a test runs.
LINTED := src tests bench scripts
check: install-dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/mypy bench
	$(BIN)/python scripts/gen_api_docs.py --check

## make resilience: the full fault-injection set (longer runs, more crashes).
resilience: install-dev
	CHATSESSIONS_RESILIENCE_FULL=1 $(BIN)/pytest -q -s tests/resilience

lint: install-dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: install-dev
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

## make bench [SCALE=small|medium|large]: load the benchmark dataset into the local
## PostgreSQL (database chatsessions_bench_$(SCALE), reused when already loaded with the same
## seed), run every scenario and floor, write bench/results/ and docs/performance.md.
SCALE      ?= small
BENCH_SEED ?= 1
BENCH_PG   ?= postgresql://postgres@127.0.0.1:5432
BENCH_ARGS ?=
bench: install-dev
	@$(BIN)/python -c "import matplotlib, granian, numpy" 2>/dev/null || $(BIN)/pip install -q -e '.[dev,bench]'
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/generate.py --scale small --seed $(BENCH_SEED) --database-url $(BENCH_PG)/chatsessions_bench_small
	$(BIN)/python bench/generate.py --scale $(SCALE) --seed $(BENCH_SEED) --database-url $(BENCH_PG)/chatsessions_bench_$(SCALE)
	$(BIN)/python bench/run.py --scale $(SCALE) $(BENCH_ARGS)
	$(BIN)/python bench/import_bench.py
	$(BIN)/python bench/late_message.py
	$(BIN)/python bench/single_message.py
	$(BIN)/python bench/channels_bench.py
	$(BIN)/python bench/analytics_bench.py --scale $(SCALE)

## make bench-analytics [SCALE=large]: the analytics endpoints timed on a loaded bench
## dataset (bench/analytics_bench.py; load it first with bench/generate.py or make bench).
bench-analytics: install-dev
	$(BIN)/python bench/generate.py --scale $(SCALE) --seed $(BENCH_SEED) --database-url $(BENCH_PG)/chatsessions_bench_$(SCALE)
	$(BIN)/python bench/analytics_bench.py --scale $(SCALE)

## make bench-import: a generated 100k-message WhatsApp export through `import-chat` on SQLite
## and PostgreSQL (seconds, msg/s), then 1M messages for peak RSS (bench/import_bench.py).
bench-import: install-dev
	$(BIN)/python bench/import_bench.py
