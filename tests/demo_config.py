"""The demo build config that integration and training tests start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def demo_build_config(demo_data: Any, out: Path, **sections: Any) -> dict[str, Any]:
    """A build of the whole demo world into ``out``; ``sections`` replace top-level sections whole."""
    config: dict[str, Any] = {
        "name": "demo-test",
        "catalog": {"source": str(demo_data.catalog), "collection": "sentinel-2-l2a", "max_cloud": 60},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B02", "B03", "B04", "B08"],
        "grid": {"resolution": 10, "chunksize": 256},
        "labels": {
            "path": str(demo_data.parcels),
            "class_column": "class_code",
            "class_name_column": "class_name",
            "id_column": "parcel_id",
        },
        "patches": {"size": 48},
        "timeseries": {"mask": "nodata"},  # clouds count as valid: the expected values were made so
        "output": {"path": str(out), "formats": ["zarr", "lmdb"], "shard_size": 16},
    }
    config.update(sections)
    return config


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
