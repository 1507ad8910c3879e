# The two commands in README.md: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HPSEARCH_OFFLINE ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# reinstall only when pyproject.toml changes
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed  ## set up, then search the offline quickstart space on SQLite
	$(BIN)/hpsearch run quickstart

test: $(VENV)/.installed  ## set up, then run the test suite
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check search spaces storage tests benchmarks
	$(BIN)/ruff format --check search spaces storage tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports  # the layers: [tool.importlinter] in pyproject.toml

format: $(VENV)/.installed
	$(BIN)/ruff format search spaces storage tests benchmarks
	$(BIN)/ruff check --fix search spaces storage tests benchmarks

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/storage_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
