# eoshard: `make demo` builds the demo dataset, `make test` runs every check CI runs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test venv system-deps lint typecheck contracts pytest wheel-check docs clean training-venv-check

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

contracts: venv
	$(VENV)/bin/lint-imports

pytest: venv
	$(VENV)/bin/pytest

wheel-check: venv
	rm -rf dist /tmp/eoshard-wheel-venv
	$(PY) -m build --wheel --outdir dist . >/dev/null
	$(PYTHON) -m venv /tmp/eoshard-wheel-venv
	/tmp/eoshard-wheel-venv/bin/pip install -q -c constraints.txt dist/eoshard-*.whl
	cd /tmp && /tmp/eoshard-wheel-venv/bin/eoshard --help >/dev/null && echo "wheel OK: eoshard --help runs from a clean venv"

test: system-deps venv lint typecheck contracts docs wheel-check training-venv-check pytest

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
	$(TRAIN_VENV)/bin/pip install -q -c constraints.txt './training[models]' pytest pytest-timeout
	! $(TRAIN_VENV)/bin/pip list 2>/dev/null | grep -iE '^(dask|distributed|rasterio|geopandas|stackstac|xarray|pystac) '
	$(TRAIN_VENV)/bin/python -m pytest -p no:cacheprovider -m "not needs_build" tests/training
