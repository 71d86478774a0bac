"""Zarr v3 shards: one inner chunk per sample, ``shard_size`` samples per shard, whole shards per write."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from eoshard.pipeline.errors import ShardWriteError


def create_store(
    path: Path,
    n_samples: int,
    layouts: Mapping[str, tuple[tuple[int, ...], str]],
    *,
    shard_size: int,
    attrs: Mapping[str, Any],
) -> None:
    """Create the group with one array per layout name: shape ``(n_samples, *sample_shape)``, dtype as given."""
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update(dict(attrs))
    for name, (sample_shape, dtype) in layouts.items():
        root.create_array(
            name,
            shape=(n_samples, *sample_shape),
            chunks=(1, *sample_shape),
            shards=(shard_size, *sample_shape),
            dtype=dtype,
            fill_value=0,
            compressors=ZstdCodec(level=3),
            dimension_names=["sample", *_dims(len(sample_shape))],
        )


def _dims(ndim: int) -> list[str]:
    return {2: ["y", "x"], 3: ["time", "y", "x"], 4: ["time", "band", "y", "x"]}[ndim]


def write_shard(path: Path, shard_index: int, shard_size: int, arrays: Mapping[str, np.ndarray]) -> None:
    """Write shard ``shard_index`` of every array in one go (a whole shard, so no other task touches it)."""
    root = zarr.open_group(str(path), mode="r+", zarr_format=3)
    start = shard_index * shard_size
    try:
        for name, values in arrays.items():
            target = root[name]
            assert isinstance(target, zarr.Array)
            target[start : start + values.shape[0]] = values
    except OSError as err:
        raise ShardWriteError(f"could not write shard {shard_index} of {path}: {err}") from err


def stack_samples(per_sample: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack the samples of one shard into ``(n, ...)`` arrays by name."""
    return {name: np.stack([s[name] for s in per_sample]) for name in per_sample[0]}
