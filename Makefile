# eoshard: `make demo` builds the demo dataset, `make test` runs every check CI runs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test checks venv system-deps lint typecheck contracts pytest wheel-check docs clean training-venv-check fuzz

$(STAMP): pyproject.toml training/pyproject.toml constraints.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e . -e './training[geotiff,models,mlm,lightning,torchgeo,terratorch]' -r requirements-dev.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash deploy/install-system-deps.sh

demo: venv
	$(VENV)/bin/eoshard demo-data data/demo
	$(VENV)/bin/eoshard build examples/demo.yaml

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

# import-linter through deploy/lint_imports.py: grimp cannot scan the pkgutil-style `eoshard` by itself (grimp#167)
contracts: venv
	$(PY) deploy/lint_imports.py

# Test files run on PYTEST_WORKERS processes (pytest-xdist; a file's tests share one, so its module fixtures are built
# once); every session service (pgSTAC, moto, the demo world) is per process, on free ports and its own folders.
# A test process that dies ends the run, naming its test: xdist 3.8 replacing it under --dist loadfile can wait
# forever at the end of the run for work it re-queued (pytest-xdist#1378). The 25 slowest tests are listed at the end,
# to keep the run under half an hour.
PYTEST_WORKERS ?= 2
pytest: venv
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --max-worker-restart 0 --durations 25

# The eoshard wheel in a clean venv: the CLI runs, and eoshard/__init__.py (shipped by this wheel only) gives
# eoshard.open_dataset from the pipeline portion.
WHEEL_VENV ?= /tmp/eoshard-wheel-venv
wheel-check: venv
	rm -rf dist $(WHEEL_VENV)
	$(PY) -m build --wheel --outdir dist . >/dev/null
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q -c constraints.txt dist/eoshard-*.whl
	cd /tmp && $(WHEEL_VENV)/bin/eoshard --help >/dev/null && echo "wheel OK: eoshard --help runs from a clean venv"
	cd /tmp && $(WHEEL_VENV)/bin/python -c "import eoshard; f = eoshard.open_dataset; \
		assert f.__module__ == 'eoshard.pipeline.shards.xarray_view', f; print('wheel OK: eoshard.open_dataset is', f)"

# The setup and the checks run two at a time (mostly downloads, installs and one-core tools: the system packages
# beside the venv, then two checks at once), each target's output kept together; the tests then run on their own.
CHECKS := lint typecheck contracts docs wheel-check training-venv-check
test:
	$(MAKE) -j2 --output-sync=target system-deps checks
	$(MAKE) pytest
checks: $(CHECKS)

# New examples for the fuzz tests (CI draws the same ones every run): EOSHARD_FUZZ times as many, each run new.
EOSHARD_FUZZ ?= 10
fuzz: venv
	EOSHARD_FUZZ=$(EOSHARD_FUZZ) $(VENV)/bin/pytest -n $(PYTEST_WORKERS) tests/flows/test_fuzz_inputs.py \
		tests/training/test_fuzz_packages.py tests/training/test_fuzz_configs.py

docs: venv
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) dist build site out data

# The training package alone: a throwaway venv with torch first, then ./training; no geo stack may come along.
TRAIN_VENV := /tmp/eoshard-training-venv
training-venv-check:
	rm -rf $(TRAIN_VENV)
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q torch==2.13.0
	$(TRAIN_VENV)/bin/pip install -q -c constraints.txt './training[models]' pytest pytest-timeout hypothesis
	! $(TRAIN_VENV)/bin/pip list 2>/dev/null | grep -iE '^(dask|distributed|rasterio|geopandas|stackstac|xarray|pystac) '
	$(TRAIN_VENV)/bin/python -m pytest -p no:cacheprovider -m "not needs_build" tests/training
