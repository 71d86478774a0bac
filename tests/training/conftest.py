"""Training fixtures: a real dataset written by `eoshard build` on the demo world (needs the full environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

BANDS = ["B02", "B03", "B04", "B08"]


@pytest.fixture(scope="session")
def shards(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo dataset as 32 px patches in Zarr and LMDB shards, built by the real CLI."""
    from typer.testing import CliRunner

    from eoshard.flows.cli import app
    from tests.demo_config import demo_build_config, write_config

    out = tmp_path_factory.mktemp("training-build") / "demo"
    config = demo_build_config(
        demo_data,
        out,
        name="demo-training",
        bands=BANDS,
        labels={"path": str(demo_data.parcels), "class_column": "class_code", "class_name_column": "class_name"},
        patches={"size": 32},
        # blocks of 640 m: the demo AOI spans enough of them for non-empty train and validation splits
        splits={"block_size": 640, "fractions": [0.7, 0.3, 0.0], "seed": 0},
    )
    path = write_config(config, out.parent / "build.yaml")
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(path), "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(autouse=True)
def _float32_matmul_precision():
    """Each test starts and ends at the process's float32 matmul precision: a library a test imports directly
    (TerraTorch sets "medium" on import) would otherwise turn later tests' float32 matmuls into bf16 ones."""
    import torch

    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)
