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

test: $(BIN)/ddl chromium
	$(BIN)/python -m pytest -q tests

# The report test renders the HTML in headless Chromium (Debian's package); install it when we can.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && \
	   apt-get install -y -q chromium >/dev/null 2>&1)); } || echo "chromium unavailable: report rendering test will skip"

lint: $(BIN)/ddl
	$(BIN)/ruff check .

.PHONY: venv demo test lint chromium
