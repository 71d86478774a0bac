"""Read one patch's bands exactly as stored (native dtype, no scaling, nodata kept)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from safetensors.numpy import save

from eoshard.pipeline.converters.datasets import SourceGroup
from eoshard.pipeline.converters.errors import ConversionError


def read_patch(group: SourceGroup, patch: Path) -> dict[str, np.ndarray]:
    """Band name -> 2-D array of one patch, each band checked against the shape the dataset promises."""
    arrays: dict[str, np.ndarray] = {}
    by_file: dict[Path, list[tuple[str, int]]] = {}
    for band, (path, index) in group.bands(patch).items():
        by_file.setdefault(path, []).append((band, index))
    for path, bands in by_file.items():
        if not path.exists():
            raise ConversionError(f"{group.name} patch {patch.name} lacks {path.name}: the dataset is incomplete")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    if max(i for _, i in bands) > src.count:
                        raise ConversionError(
                            f"{path} has {src.count} bands, expected at least {max(i for _, i in bands)}"
                        )
                    for band, index in bands:
                        arrays[band] = src.read(index)
        except RasterioIOError as err:
            raise ConversionError(f"cannot read {path}: {err}; the file is corrupt or not a GeoTIFF") from err
    for band, array in arrays.items():
        expected = group.shapes(band)
        if expected is not None and array.shape != expected:
            raise ConversionError(
                f"{group.bands(patch)[band][0]} band {band} is {array.shape[0]} x {array.shape[1]} px, "
                f"the dataset has {expected[0]} x {expected[1]}: the file is truncated or from another dataset"
            )
    return arrays


def encode_patch(group: SourceGroup, patch: Path) -> tuple[str, bytes]:
    """The LMDB key and value of a patch: safetensors of its bands, no metadata (as rico-hdl writes it)."""
    return group.key(patch), save(read_patch(group, patch), metadata=None)


def encode_or_report(group: SourceGroup, patch: Path) -> tuple[str, bytes] | str:
    """``encode_patch`` for worker processes: a conversion error comes back as its message, so it crosses the
    process boundary intact and the driver raises it with nothing written for that transaction."""
    try:
        return encode_patch(group, patch)
    except ConversionError as err:
        return str(err)


def read_or_report(group: SourceGroup, patch: Path) -> dict[str, np.ndarray] | str:
    """``read_patch`` for worker processes, errors returned as messages (see ``encode_or_report``)."""
    try:
        return read_patch(group, patch)
    except ConversionError as err:
        return str(err)


def encode_batch(group: SourceGroup, patches: list[Path]) -> list[tuple[str, bytes] | str]:
    """``encode_or_report`` over several patches: one task per batch keeps the scheduler's overhead small."""
    return [encode_or_report(group, p) for p in patches]


def read_batch(group: SourceGroup, patches: list[Path]) -> list[dict[str, np.ndarray] | str]:
    return [read_or_report(group, p) for p in patches]
