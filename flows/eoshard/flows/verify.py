"""Checking a built dataset: checksums, LMDB values against the index, Zarr against LMDB, and a sample of
shard pixels against the source products re-read through the same grid."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import dask
import geopandas as gpd
import lmdb
import numpy as np
import zarr
from safetensors.numpy import load

from eoshard.flows.config import BuildConfig
from eoshard.pipeline.errors import PipelineError


class DatasetError(PipelineError, FileNotFoundError):
    """The folder is not a finished eoshard dataset."""


def read_slot(group: zarr.Group, name: str, n: int) -> np.ndarray:
    """Slot ``n`` of array ``name``."""
    return np.asarray(cast(zarr.Array, group[name])[n])


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values and dtypes; NaN (the nodata of float groups) equals NaN."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / "dataset.json"
    if not manifest_path.is_file():
        raise DatasetError(
            f"{path} has no dataset.json: it is not an eoshard dataset, or its build did not finish "
            "(rerun `eoshard build` with the same config to finish it)"
        )
    try:
        data = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(
            f"{manifest_path} is not valid JSON ({err}): it was damaged after the build (a build writes it whole, "
            "through a rename). Copy the dataset again from its source, or rerun `eoshard build` into a new path"
        ) from err
    if not isinstance(data, dict) or not {"checksums", "formats"} <= data.keys():
        raise DatasetError(
            f"{manifest_path} is not an eoshard manifest (expected an object with checksums and formats, as in "
            "docs/format.md): copy the dataset again from its source"
        )
    return data


def check_checksums(path: Path, manifest: dict[str, Any]) -> list[str]:
    problems = []
    for name, expected in manifest["checksums"].items():
        file = path / name
        if not file.is_file():
            problems.append(f"missing file {name}")
        elif hashlib.sha256(file.read_bytes()).hexdigest() != expected:
            problems.append(f"checksum mismatch in {name}")
    return problems


def read_lmdb_values(path: Path, index: gpd.GeoDataFrame) -> tuple[dict[str, bytes], list[str]]:
    """Every sample's LMDB value, and the problems: missing keys, extra keys, SHA-256 mismatches."""
    values: dict[str, bytes] = {}
    problems: list[str] = []
    for part in sorted((path / "data.lmdb").iterdir()):
        env = lmdb.open(str(part), readonly=True, lock=False)
        with env.begin() as txn:
            for key, value in txn.cursor():
                values[key.decode()] = bytes(value)
        env.close()
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
    group = zarr.open_group(str(path / "data.zarr"), mode="r")
    problems = []
    for row in rows.itertuples():
        if row.key not in values:
            continue
        sample = load(values[row.key])
        kept = read_slot(group, "time_mask", row.zarr_index)
        for name, spec in manifest["groups"].items():
            arr = read_slot(group, name, row.zarr_index)[kept]
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
    from eoshard.flows.build import nested_window, plan_build

    plan_data = json.loads((path / "_build" / "plan.json").read_text())
    config_data = plan_data["config"]
    config_data["output"]["path"] = str(path)
    config = BuildConfig.model_validate(config_data, context={"base_dir": path})
    plan = plan_build(config)
    by_key = {p.key: p for p in plan.patches}
    group = zarr.open_group(str(path / "data.zarr"), mode="r")
    problems = []
    for row in rows.itertuples():
        patch = by_key[row.key]
        kept = read_slot(group, "time_mask", row.zarr_index)
        for name, cube in plan.cubes.items():
            rs, cs = patch.window(plan.factors[name])
            (source,) = dask.compute(cube.data[..., rs, cs], scheduler="synchronous")
            if not same(source[kept], read_slot(group, name, row.zarr_index)[kept]):
                problems.append(f"sample {row.key}: group {name} differs from the source pixels")
        if plan.hr is not None:
            rs, cs = nested_window(patch, plan.hr_factor)
            (source,) = dask.compute(plan.hr.data[:, rs, cs], scheduler="synchronous")
            if not same(source, read_slot(group, "hr", row.zarr_index)):
                problems.append(f"sample {row.key}: hr differs from the source pixels")
    return problems


def verify_dataset(path: Path, n_source: int = 4, seed: int = 0) -> list[str]:
    """Every problem found (empty: the dataset is intact)."""
    manifest = read_manifest(path)
    index = gpd.read_parquet(path / "index.parquet")
    problems = check_checksums(path, manifest)
    values, lmdb_problems = read_lmdb_values(path, index) if manifest["formats"]["lmdb"] else ({}, [])
    problems += lmdb_problems
    if manifest["formats"]["zarr"] and values:
        problems += compare_zarr_with_lmdb(path, manifest, index, values)
    if manifest["formats"]["zarr"] and n_source > 0 and len(index):
        chosen = np.random.default_rng(seed).choice(len(index), size=min(n_source, len(index)), replace=False)
        problems += compare_with_sources(path, manifest, index.iloc[sorted(chosen)])
    return problems
