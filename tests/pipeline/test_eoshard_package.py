"""`pipeline/eoshard/__init__.py`: one `eoshard` over the four portions, `eoshard.open_dataset` loaded on first use."""

from __future__ import annotations

import ast
import importlib
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
    # what Jupyter completes after `eoshard.`: the reader and the portions, not the file's typing imports
    assert {n for n in dir(eoshard) if not n.startswith("_")} <= {
        "open_dataset",
        "catalog",
        "pipeline",
        "flows",
        "training",
    }
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


def _typed_names(package: str) -> dict[str, str]:
    """Name -> module of the imports the package's ``__init__`` makes for type checkers (``if TYPE_CHECKING:``)."""
    path = Path(importlib.import_module(package).__file__ or "")
    block = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.If))
    assert ast.unparse(block.test) == "TYPE_CHECKING"
    return {a.name: str(n.module) for n in block.body if isinstance(n, ast.ImportFrom) for a in n.names}


@pytest.mark.parametrize("package", ["eoshard.pipeline", "eoshard.catalog"])
def test_every_public_name_is_what_the_type_checker_sees(package: str) -> None:
    module = importlib.import_module(package)
    typed = _typed_names(package)
    assert sorted(typed) == sorted(module.__all__) == sorted(dir(module))
    for name, home in typed.items():
        assert getattr(module, name) is getattr(importlib.import_module(home), name), name
    with pytest.raises(AttributeError, match=f"^module '{package}' has no attribute 'nothing_here'$"):
        module.nothing_here  # noqa: B018


def test_importing_one_module_of_a_portion_loads_only_what_it_needs() -> None:
    code = (
        "import json, sys\n"
        "import eoshard.catalog.product_search, eoshard.pipeline.errors, eoshard.pipeline.shards.reads\n"
        "from eoshard.catalog import search\n"
        "from eoshard.pipeline import open_cube\n"
        "print(json.dumps([search.__module__, open_cube.__module__]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    # the function, not the module of the same name that was imported first
    assert json.loads(run.stdout) == ["eoshard.catalog.product_search", "eoshard.pipeline.cube"]
    probe = (
        "import json, sys\n"
        "import eoshard.pipeline.shards.reads, eoshard.catalog.credentials\n"
        "print(json.dumps([m for m in ('stackstac', 'pystac_client', 'odc.stac', 'xarray', 'dask.array', 'pandas',"
        " 'geopandas', 'scipy') if m in sys.modules]))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    # a shard task's worker does not load the cube engines, the API client, dataframes or dask arrays
    assert json.loads(run.stdout) == []


@pytest.mark.parametrize(
    ("statement", "said"),
    [
        ("import eoshard.pipeline as m; m.open_cub", "module 'eoshard.pipeline' has no attribute 'open_cub'. "
         "Did you mean: 'open_cube'?"),
        ("import eoshard.catalog as m; m.serch", "module 'eoshard.catalog' has no attribute 'serch'. "
         "Did you mean: 'search'?"),
        ("import eoshard as m; m.open_datset", "module 'eoshard' has no attribute 'open_datset'. "
         "Did you mean: 'open_dataset'?"),
        ("import eoshard.pipeline as m; m.zzzz", "module 'eoshard.pipeline' has no attribute 'zzzz'"),
    ],
)  # fmt: skip
def test_a_misspelt_name_gets_pythons_message_and_suggestion(statement: str, said: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", statement], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"AttributeError: {said}"
