# Two entry points: `make run` (try it) and `make test` (what CI runs).
# Both create .venv on first use; the stamp files re-install only when the
# dependency list or the constraints change.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck pytest install dev constraints bench chaos schema clean

run: $(VENV)/.installed
	$(BIN)/thankly db upgrade
	$(BIN)/thankly run

test: $(VENV)/.installed-dev lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# pytest exits 5 when it collected nothing; that is a failure here, as any non-zero is.
pytest: $(VENV)/.installed-dev
	$(BIN)/pytest

# Speed claims are measured here, as ratios within one run; never by timed unit tests.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.tick_cost
	$(BIN)/python -m benchmarks.tick_cost --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
	$(BIN)/python -m benchmarks.empty_tick
	$(BIN)/python -m benchmarks.empty_tick --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
	$(BIN)/python -m benchmarks.claim_lateness
	$(BIN)/python -m benchmarks.claim_lateness --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
	$(BIN)/python -m benchmarks.claim_lateness --pending 1000000 --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
	$(BIN)/python -m benchmarks.worker_memory --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
	$(BIN)/python -m benchmarks.delivery --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
	$(BIN)/python -m benchmarks.delivery --pool prefork --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
	$(BIN)/python -m benchmarks.ingest --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
	$(BIN)/python -m benchmarks.experiment_report
	$(BIN)/python -m benchmarks.experiment_report --database-url "$${THANKLY_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"

# The fault-injection run (tests/chaos): 5,000 events through the whole stack while
# workers are killed and Redis and PostgreSQL are disrupted; prints its report.
chaos: $(VENV)/.installed-dev
	THANKLY_TEST_REQUIRE_SERVICES=1 $(BIN)/pytest -m chaos -s tests/chaos

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.installed

# Refresh the pinned versions after changing dependencies in pyproject.toml.
constraints: $(VENV)/.installed-dev
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

# The event's JSON Schema for CRM integrators, generated from the pydantic model; a test
# fails when the checked-in file differs from what this writes.
schema: $(VENV)/.installed
	$(BIN)/thankly events schema > docs/event.schema.json.tmp
	mv docs/event.schema.json.tmp docs/event.schema.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
