"""Samples: the arrays of one patch's time series, as written to LMDB (exact T) and Zarr (padded T)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox
from safetensors.numpy import save

from eoshard.pipeline.timeseries import DateSelection, day_of_year, days_since_epoch

FORMAT_VERSION = "1.0"
# LMDB tensors besides the bands and label layers (a band or index must not take these names)
RESERVED_TENSORS = ("valid_mask", "valid_fraction", "date", "doy", "time_index")


@dataclass(frozen=True)
class Sample:
    """One patch: images by group ``(T, C, H_g, W_g)`` over all dataset dates, label layers ``(H, W)``."""

    key: str
    groups: Mapping[str, Sequence[str]]
    images: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    selection: DateSelection
    dates: Sequence[str]
    geobox: GeoBox  # the patch's own grid: written as a CRS string and 6 transform numbers
    split: str
    paired: Mapping[str, np.ndarray] = field(default_factory=dict)  # e.g. "hr": (C, H * f, W * f), one date
    paired_bands: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def crs(self) -> str:
        return str(self.geobox.crs)

    @property
    def transform(self) -> tuple[float, ...]:
        """The patch's affine transform as written (``a, b, c, d, e, f``)."""
        return tuple(self.geobox.transform)[:6]

    @property
    def kept_dates(self) -> list[str]:
        return [d for d, k in zip(self.dates, self.selection.kept, strict=True) if k]

    def tensors(self) -> dict[str, np.ndarray]:
        """The LMDB tensors: one ``(T_n, H_g, W_g)`` array per band, label layers, masks and dates."""
        kept = self.selection.kept
        out: dict[str, np.ndarray] = {}
        for group, bands in self.groups.items():
            values = self.images[group][kept]
            for i, band in enumerate(bands):
                out[band] = np.ascontiguousarray(values[:, i])
        for name, values in self.paired.items():
            for i, band in enumerate(self.paired_bands[name]):
                out[f"{name}_{band}"] = np.ascontiguousarray(values[i])
        out.update({name: np.ascontiguousarray(layer) for name, layer in self.labels.items()})
        kept_dates = self.kept_dates
        out["valid_mask"] = np.ascontiguousarray(self.selection.mask[kept])
        out["valid_fraction"] = self.selection.fraction[kept].astype(np.float32)
        out["date"] = days_since_epoch(kept_dates)
        out["doy"] = day_of_year(kept_dates)
        out["time_index"] = np.flatnonzero(kept).astype(np.int16)
        return out

    def to_safetensors(self) -> bytes:
        """The LMDB value: a safetensors dict of tensor name -> array, georeferencing in the metadata."""
        metadata = {
            "key": self.key,
            "format_version": FORMAT_VERSION,
            "crs": self.crs,
            "transform": json.dumps(list(self.transform)),
            "dates": json.dumps(self.kept_dates),
            "groups": json.dumps({g: list(b) for g, b in self.groups.items()}),
            "split": self.split,
        }
        if self.paired:
            metadata["paired"] = json.dumps({name: list(self.paired_bands[name]) for name in self.paired})
        return canonical_safetensors(save(self.tensors(), metadata=metadata))

    def slot(self) -> dict[str, np.ndarray]:
        """The Zarr arrays of this sample's slot: padded time axis, dropped dates nodata (0, NaN in float groups)."""
        kept = self.selection.kept
        out: dict[str, np.ndarray] = {}
        for group, values in self.images.items():
            if kept.all():  # the common case: the values as they are (the shard stacks them into one copy)
                out[group] = values
                continue
            fill = np.full_like(values, np.nan) if values.dtype.kind == "f" else np.zeros_like(values)
            out[group] = np.where(kept[:, None, None, None], values, fill)
        out.update(self.labels)
        out.update(self.paired)
        out["valid_mask"] = self.selection.mask & kept[:, None, None]
        out["valid_fraction"] = self.selection.fraction
        out["time_mask"] = kept
        out["sample_mask"] = np.array(True)
        return out

    def row(self) -> dict[str, Any]:
        """This sample's index row (without its Zarr slot, shard and LMDB part)."""
        kept = self.selection.kept
        mask = self.selection.mask[kept]
        classes = self.labels.get("class")
        histogram: dict[str, int] = {}
        labelled = 0.0
        if classes is not None:
            values, counts = np.unique(classes, return_counts=True)
            histogram = {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}
            labelled = float((classes != 0).mean())
        paired = {
            f"{name}_coverage": float((values != 0).any(axis=0).mean()) for name, values in self.paired.items()
        }
        return {
            **paired,
            "key": self.key,
            "split": self.split,
            "crs": self.crs,
            "transform": list(self.transform),
            "dates": self.kept_dates,
            "n_dates": int(kept.sum()),
            "valid_fraction": float(self.selection.fraction[kept].mean()),
            "masked_pixels": int((~mask).sum()),
            "labelled_fraction": labelled,
            "class_histogram": json.dumps(histogram, sort_keys=True),
        }


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its metadata keys sorted.

    safetensors serialises ``__metadata__`` from a hash map whose order changes from process to process; a rerun
    must give the same bytes, so the header is rewritten in a fixed order (tensor entries and data unchanged).
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    if text == data[8 : 8 + n]:
        return data
    return b"".join((len(text).to_bytes(8, "little"), text, memoryview(data)[8 + n :]))  # one copy of the tensors


def empty_slot(
    layouts: Mapping[str, tuple[tuple[int, ...], str]], nan_fill: Collection[str] = ()
) -> dict[str, np.ndarray]:
    """The fill values of a dropped candidate's slot: NaN in the arrays named in ``nan_fill``, else 0."""
    return {
        name: np.full(shape, np.nan, dtype=dtype) if name in nan_fill else np.zeros(shape, dtype=dtype)
        for name, (shape, dtype) in layouts.items()
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
