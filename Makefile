# Two entry points: `make demo` (main job) and `make test` (the test suite). Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/ddl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/ddl

venv: $(BIN)/ddl

demo: $(BIN)/ddl
	$(BIN)/ddl demo --out runs/demo

test: $(BIN)/ddl
	$(BIN)/python -m pytest -q tests

lint: $(BIN)/ddl
	$(BIN)/ruff check .

.PHONY: venv demo test lint
