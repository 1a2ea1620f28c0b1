# Everything a new user runs. Only python3 and make are assumed; the rest is installed into .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Demo rows `make run` adds to an empty local database (existing ids are kept); 0 for none.
DEMO_ROWS ?= 1000
FLASK := $(BIN)/flask --app wsgi

.PHONY: run dev test faults lint migrate bench docs clean

PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

# One stamp a requirements file: `make run` installs only what running needs (requirements.txt); the
# test tools come with `make test` (requirements-dev.txt), the benchmarks' other stacks with `make bench`
# (requirements-bench.txt). Each is redone only when its file changes, so a second `make run` starts at once.
$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

$(BIN)/.bench: $(BIN)/.dev requirements-bench.txt
	$(PIP) -r requirements-bench.txt
	touch $@

migrate: $(BIN)/.runtime  ## apply the database migrations (DATABASE_URL, or the local SQLite file)
	$(FLASK) db upgrade

# honcho gives each process a PORT of its own (the worker's is PORT+100); WEB_PORT tells the worker the web
# server's, for the addresses it gives (audio_url in webhooks).
run: migrate  ## the web server (gunicorn, 0.0.0.0:$(PORT)) and the worker together (Procfile, honcho)
	$(FLASK) recordings seed-demo --count $(DEMO_ROWS)
	PATH="$(CURDIR)/$(BIN):$$PATH" WEB_PORT=$(PORT) exec $(BIN)/honcho -f Procfile start -p $(PORT)

dev: migrate  ## Flask's debug server on port $(PORT), reloading on change
	PORT=$(PORT) $(FLASK) run --debug --port $(PORT)

test: lint /usr/bin/chromium /usr/sbin/nginx  ## lint, then the test suite (PostgreSQL too when TEST_DATABASE_URL is set)
	$(BIN)/python -m pytest -m "not faults" $(PYTEST_ARGS)

faults: $(BIN)/.dev /usr/sbin/nginx  ## fault tests: stops and restarts the local PostgreSQL, kills workers
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

lint: $(BIN)/.dev  ## ruff: lint and formatting
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Debian's chromium, which the browser test (tests/test_browser.py) drives; installed when missing.
/usr/bin/chromium:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# Debian's nginx, the production front (deploy/nginx.conf) that tests/test_front.py and the capacity
# fault test put before gunicorn; installed when missing. The tests run it as the current user, under a
# scratch prefix; Debian's own nginx service is not started or touched.
/usr/sbin/nginx:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx

bench: $(BIN)/.bench  ## benchmarks (bench/run.py): needs wrk, installed here when missing
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/run.py

docs: $(BIN)/.installed  ## docs/configuration.md, from the settings table in config.py
	$(BIN)/python -m config > docs/configuration.md

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
