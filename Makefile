# The two commands in README.md: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HPSEARCH_OFFLINE ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint format bench clean constraints compose-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# reinstall only when pyproject.toml or constraints.txt changes; constraints.txt: the versions tested
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# constraints.txt anew: what pyproject.toml resolves to today (newest allowed; setuptools: the venv's own)
constraints: | $(BIN)/python
	$(BIN)/pip install --quiet --dry-run --ignore-installed --report $(VENV)/resolved.json -e ".[dev]"
	{ echo "# The versions tested: make demo / make test install with -c constraints.txt (make constraints)"; \
	  $(BIN)/python -c 'import json, sys; print("\n".join(sorted(("%s==%s" % (i["metadata"]["name"], \
	  i["metadata"]["version"]) for i in json.load(open(sys.argv[1]))["install"] \
	  if i["metadata"]["name"] not in ("hpsearch", "setuptools")), key=str.lower)))' $(VENV)/resolved.json; \
	} > $(VENV)/constraints.txt
	mv $(VENV)/constraints.txt constraints.txt

demo: $(VENV)/.installed  ## set up, then search the offline quickstart space on SQLite
	$(BIN)/hpsearch run quickstart

# the JAX and PyTorch backends (CPU builds), for the tests that train on each
$(VENV)/.backends: pyproject.toml constraints.txt | $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e ".[jax,torch]"
	touch $@

test: $(VENV)/.installed $(VENV)/.backends  ## set up, then run the test suite
	$(BIN)/python -m pytest -q

# docker-compose.yml for real with podman, no Docker engine (root; a few minutes warm): docs/compose.md
compose-test: $(VENV)/.installed
	.ci/compose

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
