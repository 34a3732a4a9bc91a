# The commands of the README: `make run`, `make test` and `make lint`.
# Both set everything up on a fresh machine (a virtualenv with requirements.txt).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# daphne processes sharing the port (more than 1 needs REDIS_URL).
PROCESSES ?= 1

.PHONY: run test lint venv migrate static clean browser nginx

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

migrate: venv
	$(PY) manage.py migrate --noinput

# Hashed, gzipped copies of static/ in staticfiles/ (what whitenoise serves with DEBUG off).
static: venv
	$(PY) manage.py collectstatic --noinput -v0

run: migrate static
	$(PY) manage.py serve --host $(HOST) --port $(PORT) --processes $(PROCESSES)

# Browser tests drive Debian's Chromium through Playwright (Playwright's own
# browser download cannot work offline); install it when it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; }

# The multi-process and fault tests run a real nginx in front of the site
# (docs/nginx.conf, in its own prefix: /etc/nginx is never used) with a
# throwaway TLS certificate; install Debian's package when it is missing.
nginx:
	@test -x /usr/sbin/nginx || command -v nginx >/dev/null 2>&1 || { \
		echo "Installing Debian's nginx for the multi-process tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx openssl >/dev/null; }

test: venv browser nginx
	$(PY) -m pytest $(PYTEST_ARGS)

# Lint rules in ruff.toml, type checks in mypy.ini, and the project's own layout
# checks (settings read only in settings.py, no source file past 450 lines).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) tools/check_layout.py

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
