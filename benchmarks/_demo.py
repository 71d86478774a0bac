"""Shared set-up of the build and read benchmarks: the demo world and build configs over it."""

from __future__ import annotations

from pathlib import Path

import yaml

from eoshard.flows.demo.products import DemoData, write_demo_data

BANDS = ["B02", "B03", "B04", "B08", "B11"]


def demo_world(folder: Path) -> DemoData:
    if (folder / "catalog" / "catalog.json").exists():
        return DemoData(
            folder, folder / "catalog" / "catalog.json", folder / "aoi.geojson", folder / "parcels.gpkg", 0
        )
    return write_demo_data(folder)


def write_config(demo: DemoData, out: Path, aoi: object, size: int = 48) -> Path:
    config = {
        "name": out.name,
        "catalog": {"source": str(demo.catalog), "collection": "sentinel-2-l2a", "max_cloud": 60},
        "aoi": aoi,
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": BANDS,
        "grid": {"resolution": 10, "chunksize": 256},
        "labels": {"path": str(demo.parcels), "class_column": "class_code", "id_column": "parcel_id"},
        "patches": {"size": size},
        "timeseries": {"mask": "nodata", "min_valid_fraction": 0.0},  # as docs/benchmarks.md measured
        "output": {"path": str(out), "shard_size": 8, "lmdb_parts": 2},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
