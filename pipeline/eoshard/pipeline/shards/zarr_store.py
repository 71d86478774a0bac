"""Zarr v3 shards: one inner chunk per sample, ``shard_size`` samples per shard, whole shards per write."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from eoshard.pipeline.errors import ShardWriteError
from eoshard.pipeline.faults import fault_point
from eoshard.pipeline.sensors import group_sensor, is_main

_DIMS = {0: [], 1: ["time"], 2: ["y", "x"], 3: ["time", "y", "x"], 4: ["time", "band", "y", "x"]}


def create_store(
    path: Path,
    n_samples: int,
    layouts: Mapping[str, tuple[tuple[int, ...], str]],
    *,
    shard_size: int,
    attrs: Mapping[str, Any],
    nan_fill: Collection[str] = (),
) -> None:
    """Create the group with one array per layout name: shape ``(n_samples, *sample_shape)``, dtype as given.

    Arrays named in ``nan_fill`` (float groups) are filled with NaN, the others with 0.
    """
    try:
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update(dict(attrs))
        for name, (sample_shape, dtype) in layouts.items():
            root.create_array(
                name,
                shape=(n_samples, *sample_shape),
                chunks=(1, *sample_shape),
                shards=(shard_size, *sample_shape),
                dtype=dtype,
                fill_value=float("nan") if name in nan_fill else 0,
                compressors=ZstdCodec(level=1),
                dimension_names=["sample", *_dims(name, len(sample_shape), finer=_is_finer(layouts, name))],
            )
    except OSError as err:
        raise ShardWriteError(f"could not create the Zarr store {path}: {err}") from err


def _is_finer(layouts: Mapping[str, tuple[tuple[int, ...], str]], name: str) -> bool:
    """A 2-D array on a grid finer than the base grid's (label layers with ``labels.resolution``)."""
    shape, base = layouts[name][0], layouts.get("valid_mask", ((), ""))[0][-2:]
    return len(shape) == 2 and len(base) == 2 and shape[0] > base[0]


def _dims(name: str, ndim: int, finer: bool = False) -> list[str]:
    """Dimension names; a group's band and pixel axes carry its name, so xarray sees no conflicting sizes."""
    if finer:  # label layers nested in the base grid
        return ["y_labels", "x_labels"]
    sensor = group_sensor(name)
    time = "time" if is_main(sensor) else f"time_{sensor}"  # each sensor's own dates (format 1.1)
    if name in ("valid_fraction", "time_mask") or (not is_main(sensor) and ndim == 1):
        return [time]
    if name == "hr":  # the paired finer source: one date, bands first
        return ["band_hr", "y_hr", "x_hr"]
    if ndim == 4:
        return [time, f"band_{name}", f"y_{name}", f"x_{name}"]
    return [time if d == "time" else d for d in _DIMS[ndim]]


def shard_files(path: Path, shard_index: int) -> list[Path]:
    """The files of shard ``shard_index`` in every array (none for a shard no build has written)."""
    files = []
    for array_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        shard_dir = array_dir / "c" / str(shard_index)
        if shard_dir.is_file():
            files.append(shard_dir)
        elif shard_dir.is_dir():
            # a worker killed mid-write may leave zarr's temporary ".partial" file: never part of the shard
            files.extend(
                sorted(f for f in shard_dir.rglob("*") if f.is_file() and not f.name.endswith(".partial"))
            )
    return files


def checksums(path: Path, shard_index: int) -> dict[str, str]:
    """SHA-256 of each file of one shard, keyed by its path relative to the store's parent."""
    return {
        str(f.relative_to(path.parent)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in shard_files(path, shard_index)
    }


def write_shard(path: Path, shard_index: int, shard_size: int, arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Write shard ``shard_index`` of every array in one go (a whole shard, so no other task touches it).

    Every chunk is written, fill-only ones (dropped samples) too: zarr's test for an empty chunk compares each one
    with its fill value, which cost 17 % of the write; a fill chunk read back is the same values either way.
    Returns the SHA-256 of the shard's files.
    """
    try:
        root = zarr.open_group(str(path), mode="r+", zarr_format=3)
        start = shard_index * shard_size
        for name, values in arrays.items():
            array = root[name]
            assert isinstance(array, zarr.Array)
            target = array.with_config({"write_empty_chunks": True})
            target[start : start + values.shape[0]] = values
            fault_point("zarr-shard")
        return checksums(path, shard_index)
    except OSError as err:
        raise ShardWriteError(
            f"could not write shard {shard_index} of {path}: {err}; the shards committed before it stay valid, "
            "free space (or fix the error) and rerun the same build to finish"
        ) from err


def stack_samples(per_sample: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack the samples of one shard into ``(n, ...)`` arrays by name."""
    return {name: np.stack([s[name] for s in per_sample]) for name in per_sample[0]}
