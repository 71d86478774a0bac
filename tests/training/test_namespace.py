"""`import eoshard.training` through the `eoshard` package loads no geo stack, with or without the geo wheel."""

from __future__ import annotations

import json
import subprocess
import sys

GEO = ["xarray", "rasterio", "dask", "geopandas", "stackstac", "odc", "pystac", "eoshard.pipeline"]


def test_importing_training_loads_no_geo_module() -> None:
    code = (
        "import json, sys, eoshard.training, eoshard.training.data\n"
        f"print(json.dumps([m for m in {GEO!r} if m in sys.modules]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout) == []
