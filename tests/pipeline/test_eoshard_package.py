"""`pipeline/eoshard/__init__.py`: one `eoshard` over the four portions, `eoshard.open_dataset` loaded on first use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import eoshard
import eoshard.pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_eoshard_spans_the_four_portions() -> None:
    assert {Path(p).parent.name for p in eoshard.__path__} >= {"catalog", "pipeline", "flows", "training"}
    assert Path(eoshard.__file__ or "") == ROOT / "pipeline" / "eoshard" / "__init__.py"


def test_open_dataset_is_the_pipeline_reader_and_nothing_else_appears() -> None:
    assert eoshard.open_dataset is eoshard.pipeline.open_dataset
    assert "open_dataset" in eoshard.__all__
    with pytest.raises(AttributeError, match="module 'eoshard' has no attribute 'open_cube'"):
        eoshard.open_cube  # noqa: B018


def test_import_eoshard_loads_nothing_until_open_dataset_is_asked_for() -> None:
    code = (
        "import json, sys, eoshard\n"
        "before = [m for m in ('eoshard.pipeline', 'xarray') if m in sys.modules]\n"
        "reader = eoshard.open_dataset\n"
        "print(json.dumps([before, reader.__module__, 'xarray' in sys.modules]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert json.loads(run.stdout) == [[], "eoshard.pipeline.shards.xarray_view", True]
