"""Checking a built dataset: checksums, LMDB values against the index, Zarr against LMDB, and a sample of
shard pixels against the source products re-read through the same grid."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import dask
import geopandas as gpd
import numpy as np
import zarr
from safetensors.numpy import load

from eoshard.flows.config import BuildConfig
from eoshard.pipeline.errors import DatasetError
from eoshard.pipeline.grid import grid_of
from eoshard.pipeline.shards.layout import BUILD_DIR
from eoshard.pipeline.shards.reader import ShardedDataset, open_shards, read_layout
from eoshard.pipeline.shards.samples import time_mask_of

__all__ = ["DatasetError", "read_manifest", "verify_dataset"]


def read_slot(group: zarr.Group, name: str, n: int) -> np.ndarray:
    """Slot ``n`` of array ``name``."""
    return np.asarray(cast(zarr.Array, group[name])[n])


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values and dtypes; NaN (the nodata of float groups) equals NaN."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def read_manifest(path: Path) -> dict[str, Any]:
    """``dataset.json`` of the dataset at ``path``, checked against the format (``DatasetError`` if it is not one)."""
    return read_layout(path).to_manifest()


def check_checksums(path: Path, manifest: dict[str, Any]) -> list[str]:
    problems = []
    for name, expected in manifest["checksums"].items():
        file = path / name
        if not file.is_file():
            problems.append(f"missing file {name}")
        elif hashlib.sha256(file.read_bytes()).hexdigest() != expected:
            problems.append(f"checksum mismatch in {name}")
    return problems


def read_lmdb_values(
    dataset: ShardedDataset | Path, index: gpd.GeoDataFrame
) -> tuple[dict[str, bytes], list[str]]:
    """Every sample's LMDB value, and the problems: missing keys, extra keys, SHA-256 mismatches."""
    if isinstance(dataset, Path):
        with open_shards(dataset) as opened:
            return read_lmdb_values(opened, index)
    values = dict(dataset.lmdb_values())
    problems: list[str] = []
    expected = dict(zip(index["key"], index["lmdb_sha256"], strict=True))
    problems += [f"LMDB lacks sample {k}" for k in sorted(set(expected) - set(values))]
    problems += [f"LMDB holds a sample not in the index: {k}" for k in sorted(set(values) - set(expected))]
    for key in sorted(set(expected) & set(values)):
        if hashlib.sha256(values[key]).hexdigest() != expected[key]:
            problems.append(f"LMDB value of {key} differs from its checksum")
    return values, problems


def compare_zarr_with_lmdb(
    path: Path, manifest: dict[str, Any], rows: gpd.GeoDataFrame, values: dict[str, bytes]
) -> list[str]:
    group = open_shards(path).zarr_group()
    problems = []
    for row in rows.itertuples():
        if row.key not in values:
            continue
        sample = load(values[row.key])
        for name, spec in manifest["groups"].items():
            arr = read_slot(group, name, row.zarr_index)[read_slot(group, time_mask_of(name), row.zarr_index)]
            for i, band in enumerate(spec["bands"]):
                if not same(arr[:, i], sample[band]):
                    problems.append(f"sample {row.key}: band {band} differs between Zarr and LMDB")
        hr = manifest.get("hr")
        if hr is not None:
            values_hr = read_slot(group, "hr", row.zarr_index)
            for i, tensor in enumerate(hr["tensors"]):
                if not same(values_hr[i], sample[tensor]):
                    problems.append(f"sample {row.key}: HR band {tensor} differs between Zarr and LMDB")
        for layer in (manifest["labels"] or {}).get("layers", {}):
            if not same(read_slot(group, layer, row.zarr_index), sample[layer]):
                problems.append(f"sample {row.key}: label layer {layer} differs between Zarr and LMDB")
    return problems


def compare_with_sources(path: Path, manifest: dict[str, Any], rows: gpd.GeoDataFrame) -> list[str]:
    """Re-read the source pixels of ``rows`` through the build's grid and cube, and compare bit for bit.

    Float groups are compared after the same transform as the build's (reflectance, indices), NaN equal to NaN.
    """
    from eoshard.flows.build import plan_build

    plan_data = json.loads((path / BUILD_DIR / "plan.json").read_text())
    config_data = plan_data["config"]
    config_data["output"]["path"] = str(path)
    config = BuildConfig.model_validate(config_data, context={"base_dir": path})
    plan = plan_build(config)
    by_key = {p.key: p for p in plan.patches}
    grids = {name: grid_of(cube) for name, cube in plan.cubes.items()}  # each group's own nested grid
    group = open_shards(path).zarr_group()
    problems = []
    for row in rows.itertuples():
        patch = by_key[row.key]
        for name, cube in plan.cubes.items():
            kept = read_slot(group, time_mask_of(name), row.zarr_index)
            rs, cs = patch.window_in(grids[name])
            (source,) = dask.compute(cube.data[..., rs, cs], scheduler="synchronous")
            if not same(source[kept], read_slot(group, name, row.zarr_index)[kept]):
                problems.append(f"sample {row.key}: group {name} differs from the source pixels")
        if plan.hr is not None:
            rs, cs = patch.window_in(grid_of(plan.hr))
            (source,) = dask.compute(plan.hr.data[:, rs, cs], scheduler="synchronous")
            if not same(source, read_slot(group, "hr", row.zarr_index)):
                problems.append(f"sample {row.key}: hr differs from the source pixels")
    return problems


def verify_dataset(path: Path, n_source: int = 4, seed: int = 0) -> list[str]:
    """Every problem found (empty: the dataset is intact)."""
    with open_shards(path) as dataset:
        manifest = dataset.layout.to_manifest()
        index = dataset.index()
        problems = check_checksums(path, manifest)
        values, lmdb_problems = read_lmdb_values(dataset, index) if dataset.layout.lmdb else ({}, [])
    problems += lmdb_problems
    if manifest["formats"]["zarr"] and values:
        problems += compare_zarr_with_lmdb(path, manifest, index, values)
    if manifest["formats"]["zarr"] and n_source > 0 and len(index):
        chosen = np.random.default_rng(seed).choice(len(index), size=min(n_source, len(index)), replace=False)
        problems += compare_with_sources(path, manifest, index.iloc[sorted(chosen)])
    return problems
