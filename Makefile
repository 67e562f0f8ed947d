# smsadmin: `make run` starts everything on this machine, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-sqlite test-postgres lint format migrate bench clean

# Where `make run` serves, as honcho decides it: WEB_BIND from .env (honcho's .env wins over
# the environment), else from the environment or the command line, else the Procfile's default.
RUN_BIND = $(or $(shell sed -n 's/^WEB_BIND=//p' .env 2>/dev/null | tail -n 1),$(WEB_BIND),127.0.0.1:8000)
# On Ctrl-C honcho sends SIGTERM to all three; the Celery worker then stops warmly (it
# finishes the task in hand; a blast it leaves unfinished is picked up at the next start).
# Honcho 2.0 kills whatever is left after a fixed 5 seconds and has no option for it, so it
# is started with this many seconds instead.
RUN_STOP_SECONDS ?= 30

# Stopped by Ctrl-C (honcho exits 130) or SIGTERM (143) is how `make run` ends: not an error.
# The recipe's shell waits for honcho through Ctrl-C (trap) to say so, instead of dying first.

run: $(VENV)/.installed .env
	@mkdir -p var
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v 0
	@$(BIN)/python manage.py ensure_admin
	@echo "smsadmin: web on http://$(RUN_BIND)/admin/ with a Celery worker and beat. Ctrl-C stops all three."
	@trap : INT TERM; $(BIN)/python -c 'import sys, honcho.command, honcho.manager; \
		honcho.manager.KILL_WAIT = int(sys.argv.pop(1)); sys.argv[0] = "honcho"; \
		honcho.command.main()' $(RUN_STOP_SECONDS) start -f Procfile; rc=$$?; \
	if [ $$rc -eq 130 ] || [ $$rc -eq 143 ]; then echo "smsadmin: stopped."; exit 0; fi; \
	exit $$rc

# Everything on SQLite; then, when TEST_POSTGRES_URL names a PostgreSQL server (CI sets
# it), the whole suite again on PostgreSQL, less the end-to-end tests marked slow: they
# run their own programs on their own databases (PostgreSQL included) in the first pass.
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@if [ -n "$$TEST_POSTGRES_URL" ]; then \
		echo "== the suite again on PostgreSQL"; \
		DATABASE_URL="$$TEST_POSTGRES_URL" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS); \
	else echo "TEST_POSTGRES_URL is not set: PostgreSQL pass skipped"; fi

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/send_10k.py
	$(BIN)/python bench/create_100k.py
	$(BIN)/python bench/import_100k.py
	$(BIN)/python bench/pages_100k.py
	$(BIN)/python bench/callbacks_10k.py

# A first .env for this machine: a fresh secret key, and cookies allowed over plain
# http because `make run` serves on the loopback address only. Readable by its owner
# only (0600): it holds the secret key.
.env:
	@umask 077; key=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))'); \
	printf 'SECRET_KEY=%s\nDEBUG=false\nSESSION_COOKIE_SECURE=false\n' "$$key" > .env; \
	echo "Wrote .env with a new SECRET_KEY."

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
		{ echo "smsadmin needs Python 3.11 or newer as '$(PYTHON)' (make PYTHON=python3.12 ...)."; exit 1; }
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing python3-venv with apt-get"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
		else \
			echo "Python's venv module is missing. Install it with: sudo apt-get install python3-venv"; exit 1; \
		fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@touch $@

$(VENV)/.installed: $(VENV)/.created requirements.txt
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	@touch $@

clean:
	rm -rf $(VENV) var/test.sqlite3*
