# Every target sets up what it needs: a fresh machine runs `make demo` or `make test` directly.
# The venv is rebuilt only when pyproject.toml or constraints.txt change, so a second run is fast.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.safevid-installed
# Tests and the demo never reach the public Hub; a private HF_HOME keeps the user's cache untouched.
OFFLINE_ENV := HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

.PHONY: install test test-slow quality style bench demo clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@bash scripts/ensure_ffmpeg.sh
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

test: install
	$(OFFLINE_ENV) $(PYTHON) -m pytest $(PYTEST_ARGS)

test-slow: install
	$(OFFLINE_ENV) $(PYTHON) -m pytest -m slow $(PYTEST_ARGS)

quality: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

style: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(OFFLINE_ENV) $(PYTHON) benchmarks/run_all.py

demo: install
	$(OFFLINE_ENV) $(PYTHON) scripts/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
