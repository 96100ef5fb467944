# Two commands do all the set-up: `make app` runs the app, `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: app test lint browser postgres bench

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/streamlit run streamlit_app.py

# Browser tests drive Debian's chromium through Playwright (never a downloaded browser).
browser:
	@command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The search's PostgreSQL tests start a throwaway cluster with Debian's initdb/pg_ctl (tests/test_search_postgres.py).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql)

test: $(STAMP) browser postgres lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/cost_speed.py
