"""Checking a built dataset: checksums, LMDB values against the index, Zarr against LMDB, and a sample of
shard pixels against the source products re-read through the same grid."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import dask
import geopandas as gpd
import lmdb
import numpy as np
import pandas as pd
import zarr
from safetensors.numpy import load

from eoshard.catalog.credentials import redact_text
from eoshard.flows.config import BuildConfig
from eoshard.flows.words import counted
from eoshard.pipeline.errors import AssetReadError, DatasetError, read_remedy
from eoshard.pipeline.grid import grid_of
from eoshard.pipeline.shards.layout import BUILD_DIR, CARD_FILE
from eoshard.pipeline.shards.reader import ShardedDataset, open_shards, read_layout
from eoshard.pipeline.shards.samples import time_mask_of

__all__ = ["DatasetError", "read_manifest", "verify_dataset"]

VERIFY_AGAIN = "run eoshard verify again (or with --sources 0, to check the dataset's own files alone)"
SOURCE_BATCH = 16  # samples re-read from the sources in one compute (their windows held at once)


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


def check_checksums(path: Path, manifest: dict[str, Any], step: Callable[[], None] = lambda: None) -> list[str]:
    """Every file of the manifest's checksums read back (in pieces: memory holds no whole file) and hashed."""
    problems = []
    for name, expected in manifest["checksums"].items():
        file = path / name
        if not file.is_file():
            problems.append(f"missing file {name}")
        elif _sha256(file) != expected:
            problems.append(f"checksum mismatch in {name}")
        step()
    return problems


def _sha256(file: Path) -> str:
    """SHA-256 of ``file``, read in pieces (memory holds no whole file)."""
    with file.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_card_digests(path: Path, manifest: Mapping[str, Any]) -> list[str]:
    """``dataset.json``, ``collection.json`` and ``index.parquet`` against the SHA-256 that ``croissant.json``
    recorded of them at the end of the build: the manifest's checksums cover the shard files only, so statistics or
    splits changed afterwards (by hand, or by another tool) passed. A dataset written before the card has none; one
    written since (its manifest records ``band_metadata``, as every build that writes the card does) has it."""
    card = path / CARD_FILE
    if not card.is_file():
        if "band_metadata" not in manifest:
            return []
        return [
            f"{CARD_FILE} is missing, though the build that wrote this dataset.json wrote one (with the SHA-256 "
            "of the dataset's own files that verify checks): restore it (from the dataset this was copied from?), "
            "or rebuild the dataset"
        ]
    try:
        files = [f for f in json.loads(card.read_bytes())["distribution"] if "sha256" in f]
        recorded = {str(f["contentUrl"]): str(f["sha256"]) for f in files}
    except (ValueError, KeyError, TypeError) as err:  # not JSON, or not a card's shape
        return [f"{CARD_FILE} cannot be read ({type(err).__name__}: {err}): restore it, or rebuild the dataset"]
    problems = []
    for name, expected in sorted(recorded.items()):
        file = path / name
        if "/" in name or not file.is_file():
            problems.append(f"{CARD_FILE} names {name!r}, which is not a file of the dataset")
            continue
        if _sha256(file) != expected:
            problems.append(
                f"{name} is not the file the build wrote (its SHA-256 differs from the one {CARD_FILE} records): "
                "it was changed since; restore it, or rebuild the dataset"
            )
    return problems


def check_store_record(group: zarr.Group, manifest: dict[str, Any]) -> list[str]:
    """``dataset.json`` against what the Zarr store recorded of itself when the build created it (its root
    attributes): a manifest edited or swapped for another dataset's named other dates, bands or samples, and the
    checksums, which cover the shard files only, passed it."""
    record = dict(group.attrs)
    described = {
        "format_version": manifest["format_version"], "dates": manifest["dates"], "keys": manifest["keys"],
        "groups": {name: g["bands"] for name, g in manifest["groups"].items()},
        **({"sensor_dates": manifest["sensor_dates"]} if manifest.get("sensor_dates") else {}),
    }  # fmt: skip
    return [
        f"dataset.json's {field} is not the Zarr store's ({_difference(value, record[field])}): the manifest was "
        "changed, or is another dataset's; restore it, or rebuild the dataset"
        for field, value in described.items()
        if field in record and record[field] != value  # a store of an older build may record fewer fields
    ]


def _difference(manifest: Any, store: Any) -> str:
    """Where two values first differ, briefly (the manifest's first)."""
    if isinstance(manifest, list) and isinstance(store, list):
        if len(manifest) != len(store):
            return f"{len(manifest)} entries against {len(store)}"
        i = next(i for i, (a, b) in enumerate(zip(manifest, store, strict=True)) if a != b)
        return f"entry {i}: {manifest[i]!r:.60} against {store[i]!r:.60}"
    return f"{manifest!r:.100} against {store!r:.100}"


def check_lmdb_keys(held: set[str], index: pd.DataFrame) -> list[str]:
    """The samples the index lists and LMDB (``held``: its keys) lacks, and those it holds beyond the index."""
    listed = set(index["key"])
    return [f"LMDB lacks sample {k}" for k in sorted(listed - held)] + [
        f"LMDB holds a sample not in the index: {k}" for k in sorted(held - listed)
    ]


def check_samples(
    dataset: ShardedDataset, manifest: dict[str, Any], index: pd.DataFrame, step: Callable[[], None] = lambda: None
) -> list[str]:
    """Every sample's LMDB value against its SHA-256 in the index and, with Zarr, against its Zarr slot.

    A Zarr shard at a time: each array's slots of the shard are read in one go, and memory holds one shard's
    samples whatever the size of the dataset (reading every value first held the whole LMDB).
    """
    lmdb = dataset.layout.lmdb is not None
    group = dataset.zarr_group() if manifest["formats"]["zarr"] else None
    per = _slots_per_shard(group, manifest)
    rows = index.sort_values("zarr_index", kind="stable") if "zarr_index" in index else index
    held = {key for _, key in dataset.lmdb_keys()} if lmdb else set()
    problems = check_lmdb_keys(held, index) if lmdb else []
    for _, shard in rows.groupby(rows["zarr_index"] // per, sort=False) if group is not None else [(0, rows)]:
        slots = _ShardSlots(group, shard["zarr_index"]) if group is not None else None
        first, last = int(shard["zarr_index"].min()), int(shard["zarr_index"].max())
        for row in shard.to_dict("records"):
            key = str(row["key"])
            value = dataset.read_value(key, str(row["lmdb_part"])) if lmdb else None
            if lmdb and value is None and key in held:  # in another part than the index says: readers miss it
                problems.append(f"sample {key} is not in the LMDB part the index names ({row['lmdb_part']})")
            if value is not None:
                if hashlib.sha256(value).hexdigest() != row["lmdb_sha256"]:
                    problems.append(f"LMDB value of {key} differs from its checksum")
                if slots is not None:
                    try:
                        problems += _compare_slot(manifest, key, load(value), slots, int(row["zarr_index"]))
                    except ValueError as err:  # a damaged shard (zstd's or the shard index's checksum): said once
                        problems.append(f"the Zarr slots {first}..{last} cannot be read ({err})")
                        slots = None
            step()
    return problems


def _slots_per_shard(group: zarr.Group | None, manifest: dict[str, Any]) -> int:
    """Slots per Zarr shard file (or chunk, unsharded) of the image arrays: the unit read at once."""
    if group is None or not manifest["groups"]:
        return 1
    array = cast(zarr.Array, group[next(iter(manifest["groups"]))])
    return int((array.shards or array.chunks)[0])


class _ShardSlots:
    """The slots ``zarr_index`` of one shard, read an array at a time when first asked for."""

    def __init__(self, group: zarr.Group, zarr_index: pd.Series) -> None:
        self.group = group
        self.start, self.stop = int(zarr_index.min()), int(zarr_index.max()) + 1
        self._read: dict[str, np.ndarray] = {}

    def slot(self, name: str, n: int) -> np.ndarray:
        if name not in self._read:
            try:
                array = cast(zarr.Array, self.group[name])
            except KeyError:  # dataset.json names an array (an HR or label layer) the store was built without
                raise DatasetError(
                    f"dataset.json names the Zarr array {name}, which the store does not hold: the manifest was "
                    "changed, or is another dataset's; restore it, or rebuild the dataset"
                ) from None
            self._read[name] = np.asarray(array[self.start : self.stop])
        return self._read[name][n - self.start]


def _compare_slot(
    manifest: dict[str, Any], key: str, sample: dict[str, np.ndarray], slots: _ShardSlots, n: int
) -> list[str]:
    """What differs between a sample's LMDB tensors and its Zarr slot ``n``."""
    problems = []
    for name, spec in manifest["groups"].items():
        arr = slots.slot(name, n)[slots.slot(time_mask_of(name), n)]
        for i, band in enumerate(spec["bands"]):
            if not same(arr[:, i], sample[band]):
                problems.append(f"sample {key}: band {band} differs between Zarr and LMDB")
    hr = manifest.get("hr")
    if hr is not None:
        values_hr = slots.slot("hr", n)
        for i, tensor in enumerate(hr["tensors"]):
            if not same(values_hr[i], sample[tensor]):
                problems.append(f"sample {key}: HR band {tensor} differs between Zarr and LMDB")
    for layer in (manifest["labels"] or {}).get("layers", {}):
        if not same(slots.slot(layer, n), sample[layer]):
            problems.append(f"sample {key}: label layer {layer} differs between Zarr and LMDB")
    return problems


def compare_with_sources(
    path: Path, manifest: dict[str, Any], rows: gpd.GeoDataFrame, step: Callable[[], None] = lambda: None
) -> list[str]:
    """Re-read the source pixels of ``rows`` through the build's grid and cube, and compare bit for bit.

    Float groups are compared after the same transform as the build's (reflectance, indices), NaN equal to NaN.
    """
    from eoshard.flows.build import plan_build

    plan_data = json.loads((path / BUILD_DIR / "plan.json").read_text())
    config_data = plan_data["config"]
    config_data["output"]["path"] = str(path)
    config = BuildConfig.model_validate(config_data, context={"base_dir": path})
    plan = plan_build(config, then=VERIFY_AGAIN, leave_out=None)
    by_key = {p.key: p for p in plan.patches}
    grids = {name: grid_of(cube) for name, cube in plan.cubes.items()}  # each group's own nested grid
    group = open_shards(path).zarr_group()
    problems = []
    rows_list = list(rows.itertuples())
    for start in range(0, len(rows_list), SOURCE_BATCH):
        batch = rows_list[start : start + SOURCE_BATCH]
        windows: list[tuple[Any, str, Any]] = []  # (row, Zarr array, lazy source pixels)
        for row in batch:
            patch = by_key[row.key]
            for name, cube in plan.cubes.items():
                rs, cs = patch.window_in(grids[name])
                windows.append((row, name, cube.data[..., rs, cs]))
            if plan.hr is not None:
                rs, cs = patch.window_in(grid_of(plan.hr))
                windows.append((row, "hr", plan.hr.data[:, rs, cs]))
        # one compute for the batch, on threads: the windows' blocks are decoded in parallel
        try:
            sources = dask.compute(*(w for _, _, w in windows), scheduler="threads")
        except Exception as err:  # stackstac's RuntimeError quotes the file and rasterio's error
            message = redact_text(" ".join(str(err).split()))
            raise AssetReadError(
                f"could not re-read the source pixels of samples {', '.join(r.key for r in batch)}: "
                f"{type(err).__name__}: {message}; {read_remedy(message, then=VERIFY_AGAIN, leave_out=None)}"
            ) from None
        for (row, name, _), source in zip(windows, sources, strict=True):
            stored = read_slot(group, name, row.zarr_index)
            if name == "hr" and plan.hr is not None:  # one date, all of it kept
                if not same(source, stored):
                    problems.append(f"sample {row.key}: hr differs from the source pixels")
                continue
            kept = read_slot(group, time_mask_of(name), row.zarr_index)
            if not same(source[kept], stored[kept]):
                problems.append(f"sample {row.key}: group {name} differs from the source pixels")
        for _ in batch:
            step()
    return problems


def source_samples(manifest: Mapping[str, Any], n_source: int) -> int:
    """How many samples ``verify_dataset`` re-reads from the sources when asked for ``n_source``: no more than the
    dataset holds, and none without Zarr (whose slots the comparison reads)."""
    return min(max(n_source, 0), int(manifest["n_samples"])) if manifest["formats"].get("zarr") else 0


def verified_parts(manifest: Mapping[str, Any], n_source: int) -> str:
    """What ``verify_dataset`` checked, in words (``checksums, LMDB, Zarr and 4 source samples``)."""
    formats = [name for name, key in (("LMDB", "lmdb"), ("Zarr", "zarr")) if manifest["formats"].get(key)]
    return (
        f"{', '.join(['checksums', *formats])} and {counted(source_samples(manifest, n_source), 'source sample')}"
    )


def verify_dataset(
    path: Path, n_source: int = 4, seed: int = 0, on_progress: Callable[[int, int], None] | None = None
) -> list[str]:
    """Every problem found (empty: the dataset is intact). ``on_progress(done, total)`` counts the files
    checksummed, the samples checked and the samples re-read from the sources."""
    with open_shards(path) as dataset:
        manifest = dataset.layout.to_manifest()
        index = dataset.index()
        chosen: list[int] = []
        if n_read := min(source_samples(manifest, n_source), len(index)):
            picked = np.random.default_rng(seed).choice(len(index), size=n_read, replace=False)
            chosen = sorted(int(i) for i in picked)
        if chosen and not (path / BUILD_DIR / "plan.json").is_file():
            raise DatasetError(
                f"verify re-reads source pixels through the plan of the build, and {path} has no "
                f"{BUILD_DIR}/plan.json (a copy of the dataset without {BUILD_DIR}/?): verify with --sources 0 to "
                f"check the dataset's own files alone, or copy {BUILD_DIR}/ beside them"
            )
        total = len(manifest["checksums"]) + len(index) + len(chosen)
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            if on_progress is not None:
                on_progress(done, total)

        problems = check_checksums(path, manifest, step) + check_card_digests(path, manifest)
        try:
            if manifest["formats"]["zarr"]:
                problems += check_store_record(dataset.zarr_group(), manifest)
            problems += check_samples(dataset, manifest, index, step)
        except (
            DatasetError,
            ValueError,
            lmdb.Error,
        ) as err:  # a damaged zarr.json or LMDB file: said, with the rest
            return [*problems, f"the samples cannot be read back: {err}"]
    if chosen:
        problems += compare_with_sources(path, manifest, index.iloc[chosen], step)
    return problems
