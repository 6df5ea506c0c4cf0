# The two commands: `make run` and `make test`. Everything else is a step of them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed-stamp
# Both cores: two test processes, each on its own test database and Celery queue.
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: run test install setup demo lint bench db-stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Starts the embedded PostgreSQL on demand (unless DATABASE_URL is set) and migrates.
setup: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input --verbosity 0

demo: setup
	$(PY) manage.py demo_load
	$(PY) manage.py admin_ensure

run: demo
	$(PY) manage.py run_all

test: setup
	$(PY) manage.py makemigrations --check --dry-run > /dev/null || \
		(echo "Models changed without a migration: run manage.py makemigrations" && exit 1)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(PY) -m bench

db-stop: install
	$(PY) -c "from pathlib import Path; from loyalty_site.embedded_db import stop; print('stopped' if stop(Path('var')) else 'not running')"

clean: db-stop
	rm -rf var $(VENV)
