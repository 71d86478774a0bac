"""Training fixtures: a real dataset written by `eoshard build` on the demo world (needs the full environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

BANDS = ["B02", "B03", "B04", "B08"]


@pytest.fixture(scope="session")
def shards(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo dataset as 32 px patches in Zarr and LMDB shards, built by the real CLI."""
    import yaml
    from typer.testing import CliRunner

    from eoshard.flows.cli import app

    out = tmp_path_factory.mktemp("training-build") / "demo"
    config = {
        "name": "demo-training",
        "catalog": {"source": str(demo_data.catalog), "collection": "sentinel-2-l2a", "max_cloud": 60},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": BANDS,
        "grid": {"resolution": 10, "chunksize": 256},
        "labels": {
            "path": str(demo_data.parcels),
            "class_column": "class_code",
            "class_name_column": "class_name",
        },
        "patches": {"size": 32},
        # blocks of 640 m: the demo AOI spans enough of them for non-empty train and validation splits
        "splits": {"block_size": 640, "fractions": [0.7, 0.3, 0.0], "seed": 0},
        "output": {"path": str(out), "formats": ["zarr", "lmdb"], "shard_size": 16},
    }
    path = out.parent / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(path), "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out
