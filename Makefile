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

# `ddl train --tensorboard` needs the optional tensorboard package: the test suite installs it (its test must run),
# `make demo` does not (it stays within minutes including the install)
$(VENV)/.tensorboard: $(BIN)/ddl
	$(BIN)/pip install -q -e '.[tensorboard]'
	touch $@

demo: $(BIN)/ddl
	$(BIN)/ddl demo --out runs/demo

test: $(BIN)/ddl $(VENV)/.tensorboard chromium fashion-mnist
	$(BIN)/python -m pytest -q tests

# the tests not marked slow (no real torchrun / Ray / worker-pool processes): a quick check while editing
test-fast: $(BIN)/ddl $(VENV)/.tensorboard chromium fashion-mnist
	$(BIN)/python -m pytest -q -m "not slow" tests

# The report test renders the HTML in headless Chromium (Debian's package) and fails without it: install it here,
# or stop with an error that says why (the test suite must not silently lose that test).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  { [ "$$(id -u)" = 0 ] || { echo "make chromium: chromium is missing and installing it needs root (apt-get install chromium)" >&2; exit 1; }; } && \
	  { command -v apt-get >/dev/null 2>&1 || { echo "make chromium: chromium is missing and there is no apt-get to install it" >&2; exit 1; }; } && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
	    { echo "make chromium: apt-get could not install chromium" >&2; exit 1; }; } && \
	  { command -v chromium >/dev/null 2>&1 || { echo "make chromium: chromium installed but not on PATH" >&2; exit 1; }; }; }

# The real Fashion-MNIST test (tests/test_data.py, tests/test_data_pack.py) reads Debian's dataset-fashion-mnist
# (/usr/share/datasets/fashion-mnist): install it here, or stop with an error that says why.
FASHION_DIR := /usr/share/datasets/fashion-mnist
fashion-mnist:
	@[ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ] || { \
	  { [ "$$(id -u)" = 0 ] || { echo "make fashion-mnist: $(FASHION_DIR) is missing and installing it needs root (apt-get install dataset-fashion-mnist)" >&2; exit 1; }; } && \
	  { command -v apt-get >/dev/null 2>&1 || { echo "make fashion-mnist: $(FASHION_DIR) is missing and there is no apt-get to install it (or copy it with 'ddl data pack')" >&2; exit 1; }; } && \
	  { apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } || \
	    { echo "make fashion-mnist: apt-get could not install dataset-fashion-mnist" >&2; exit 1; }; } && \
	  { [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ] || { echo "make fashion-mnist: dataset-fashion-mnist installed but $(FASHION_DIR)/train-images-idx3-ubyte.gz is absent" >&2; exit 1; }; }; }

lint: $(BIN)/ddl
	$(BIN)/ruff check .

.PHONY: venv demo test test-fast lint chromium fashion-mnist
