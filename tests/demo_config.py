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


# A part of the demo AOI in tile 32UQU that the 2024-04-20 Sentinel-1 overpass's swath edge crosses
S1_AOI = [11.985, 48.008, 12.012, 48.02]


def demo_s1_config(demo_data: Any, out: Path, size: int = 24, **sections: Any) -> dict[str, Any]:
    """A build of ``S1_AOI`` with Sentinel-2 B02, B11 and Sentinel-1 vv, vh (format 1.1) into ``out``."""
    s1 = {"source": str(demo_data.s1), "collection": "sentinel-1-rtc", "min_valid_fraction": 0.5}
    output = {"path": str(out), "formats": ["zarr", "lmdb"], "shard_size": 4, "lmdb_parts": 2}
    defaults = {"aoi": S1_AOI, "bands": ["B02", "B11", "vv", "vh"], "s1": s1, "patches": {"size": size},
                "grid": {"resolution": 10, "chunksize": 128, "crs": "EPSG:32632"}, "splits": {"block_size": 480},
                "output": output}  # fmt: skip
    return demo_build_config(demo_data, out, **{**defaults, **sections})


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
