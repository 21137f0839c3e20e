# notifier: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test test-deps lint check bench venv dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime install; stamp files re-run pip only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/notifier run

check: $(VENV)/.installed
	$(BIN)/notifier check

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check notifier tests bench
	$(BIN)/ruff format --check notifier
	$(BIN)/mypy

# What the tests need outside the venv: Debian's chromium and CJK fonts, dovecot-imapd, and
# PostgreSQL running. scripts/test-deps installs (as root) or starts what is missing, saying
# what it does, and fails loudly when it cannot; with everything there it only looks.
test-deps:
	@bash scripts/test-deps

test: test-deps lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
