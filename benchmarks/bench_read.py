"""Random-access read throughput of one sample: LMDB + safetensors, Zarr v3 (sharded), and the source GeoTIFFs
read window by window with rasterio (the baseline).

    .venv/bin/python benchmarks/bench_read.py [WORKDIR]     (run bench_build.py on WORKDIR first, or it builds)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import lmdb
import numpy as np
import pystac
import rasterio
import zarr
from rasterio.windows import from_bounds
from safetensors.numpy import load

sys.path.insert(0, str(Path(__file__).parent))
from _demo import BANDS, demo_world, write_config

N_READS = 200


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-read-"))
    demo = demo_world(work / "demo")
    out = work / "out-full"
    if not (out / "dataset.json").exists():
        config = write_config(demo, out, str(demo.aoi))
        command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "build", str(config)]
        subprocess.run(command, check=True, capture_output=True)
    manifest = json.loads((out / "dataset.json").read_text())
    index = gpd.read_parquet(out / "index.parquet")
    rows = index.iloc[np.random.default_rng(0).integers(0, len(index), N_READS)]

    envs = {p: lmdb.open(str(out / "data.lmdb" / p), readonly=True, lock=False) for p in set(index["lmdb_part"])}
    start = time.perf_counter()
    for row in rows.itertuples():
        with envs[row.lmdb_part].begin() as txn:
            sample = load(txn.get(row.key.encode()))
        assert sample["B02"].shape[1:] == (48, 48)
    lmdb_rate = N_READS / (time.perf_counter() - start)

    group = zarr.open_group(str(out / "data.zarr"), mode="r")
    names = [*manifest["groups"], "class", "parcel_id", "valid_mask", "time_mask"]
    arrays = {name: group[name] for name in names}
    start = time.perf_counter()
    for row in rows.itertuples():
        values = {name: a[row.zarr_index] for name, a in arrays.items()}
        assert values["s2_10m"].shape[-2:] == (48, 48)
    zarr_rate = N_READS / (time.perf_counter() - start)

    items: dict[str, pystac.Item] = {}
    for item in pystac.Catalog.from_file(str(demo.catalog)).get_items(recursive=True):
        if item.properties["proj:code"] == manifest["crs"]:
            items.setdefault(item.datetime.strftime("%Y-%m-%dT%H:%M:%S"), item)
    start = time.perf_counter()
    n_source = N_READS // 10  # the slow baseline: fewer reads, same per-sample rate
    for row in rows.iloc[:n_source].itertuples():
        x0, y0 = row.transform[2], row.transform[5]
        bounds = (x0, y0 - 480, x0 + 480, y0)
        for date in row.dates:
            for band in BANDS:
                with rasterio.open(items[date].assets[band].get_absolute_href()) as src:
                    src.read(1, window=from_bounds(*bounds, transform=src.transform), boundless=True, fill_value=0)
    source_rate = n_source / (time.perf_counter() - start)
    print(
        f"one random sample ({len(BANDS)} bands x up to {len(manifest['dates'])} dates, 48 px), {N_READS} reads:"
    )
    print(f"  LMDB + safetensors: {lmdb_rate:8.1f} samples/s")
    print(f"  Zarr v3 sharded:    {zarr_rate:8.1f} samples/s")
    print(f"  source GeoTIFFs:    {source_rate:8.1f} samples/s ({n_source} reads)")
    print(f"  ratio LMDB / GeoTIFF {lmdb_rate / source_rate:.1f}, Zarr / GeoTIFF {zarr_rate / source_rate:.1f}")


if __name__ == "__main__":
    main()
