"""The same samples as a sharded Zarr v3 group: per source group and band, ``(N, H, W)`` arrays.

Bands whose patches differ in size (SSL4EO-S12's extra row or column, Major-TOM's odd patches) are stored padded
to the largest size, with the true ``(height, width)`` of every sample in ``<band>_shape``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from eoshard.pipeline.converters.datasets import SourceGroup

SHARD_SAMPLES = 64
Reader = Callable[[SourceGroup, Sequence[Path]], list[dict[str, np.ndarray]]]


def write_zarr(
    target: Path,
    groups: Sequence[tuple[SourceGroup, Sequence[Path]]],
    read: Reader,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write every group into ``target`` (a Zarr v3 group with one sub-group per source group)."""
    root = zarr.open_group(str(target), mode="w", zarr_format=3)
    written = 0
    for group, patches in groups:
        samples: list[dict[str, np.ndarray]] = []
        for start in range(0, len(patches), SHARD_SAMPLES):
            samples.extend(read(group, patches[start : start + SHARD_SAMPLES]))
            if on_progress is not None:
                on_progress(min(SHARD_SAMPLES, len(patches) - start))
        sub = root.create_group(group.name)
        sub.attrs["keys"] = [group.key(p) for p in patches]
        for band in samples[0]:
            shapes = np.array([s[band].shape for s in samples], dtype=np.int32)
            height, width = (int(v) for v in shapes.max(axis=0))
            stack = np.zeros((len(samples), height, width), dtype=samples[0][band].dtype)
            for n, sample in enumerate(samples):
                h, w = sample[band].shape
                stack[n, :h, :w] = sample[band]
            array = sub.create_array(
                band, shape=stack.shape, chunks=(1, height, width), shards=(SHARD_SAMPLES, height, width),
                dtype=stack.dtype, fill_value=0, compressors=ZstdCodec(level=3),
                dimension_names=["sample", "y", "x"],
            )  # fmt: skip
            array[:] = stack
            sub.create_array(f"{band}_shape", data=shapes, dimension_names=["sample", "hw"])
        written += len(samples)
    return written
