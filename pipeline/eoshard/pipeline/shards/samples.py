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

from eoshard.pipeline.sensors import group_sensor, is_main
from eoshard.pipeline.timeseries import DateSelection, day_of_year, days_since_epoch

FORMAT_VERSION = "1.0"  # Sentinel-2 only: one time axis
SENSORS_FORMAT_VERSION = "1.1"  # per-sensor time axes (Sentinel-1 beside Sentinel-2)
# LMDB tensors besides the bands and label layers (a band or index must not take these names)
RESERVED_TENSORS = ("valid_mask", "valid_fraction", "date", "doy", "time_index")


def format_version(other_sensors: Collection[str]) -> str:
    """1.1 when a sensor besides Sentinel-2 has its own time axis, else 1.0 (the bytes of 1.0 stay as they were)."""
    return SENSORS_FORMAT_VERSION if other_sensors else FORMAT_VERSION


def time_mask_of(group: str) -> str:
    """The Zarr array that says which dates of ``group`` a slot keeps: its sensor's ``time_mask``."""
    sensor = group_sensor(group)
    return "time_mask" if is_main(sensor) else f"{sensor}_time_mask"


def sensor_layouts(sensor: str, n_dates: int, size: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The per-date Zarr arrays of a sensor besides Sentinel-2: ``<sensor>_valid_mask``, ``_valid_fraction``,
    ``_time_mask`` on its own ``n_dates``."""
    return {
        f"{sensor}_valid_mask": ((n_dates, size, size), "bool"),
        f"{sensor}_valid_fraction": ((n_dates,), "float32"),
        f"{sensor}_time_mask": ((n_dates,), "bool"),
    }


@dataclass(frozen=True)
class SensorSeries:
    """The time series of a sensor besides Sentinel-2 in one patch: its dates and which of them are kept."""

    dates: Sequence[str]
    selection: DateSelection

    @property
    def kept_dates(self) -> list[str]:
        return [d for d, k in zip(self.dates, self.selection.kept, strict=True) if k]


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
    others: Mapping[str, SensorSeries] = field(default_factory=dict)  # e.g. "s1": its own dates (format 1.1)

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

    def kept(self, group: str) -> np.ndarray:
        """The ``(T,)`` kept dates of the group's sensor."""
        other = self.others.get(group_sensor(group))
        return self.selection.kept if other is None else other.selection.kept

    def tensors(self) -> dict[str, np.ndarray]:
        """The LMDB tensors: one ``(T_n, H_g, W_g)`` array per band, label layers, masks and dates."""
        kept = self.selection.kept
        out: dict[str, np.ndarray] = {}
        for group, bands in self.groups.items():
            values, own = self.images[group], self.kept(group)
            for i, band in enumerate(bands):
                out[band] = values[own, i]  # the band's kept dates, in one contiguous copy
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
        for sensor, series in self.others.items():
            own = series.selection.kept
            out[f"{sensor}_valid_mask"] = np.ascontiguousarray(series.selection.mask[own])
            out[f"{sensor}_valid_fraction"] = series.selection.fraction[own].astype(np.float32)
            out[f"{sensor}_date"] = days_since_epoch(series.kept_dates)
            out[f"{sensor}_doy"] = day_of_year(series.kept_dates)
            out[f"{sensor}_time_index"] = np.flatnonzero(own).astype(np.int16)
        return out

    def to_safetensors(self, tensors: Mapping[str, np.ndarray] | None = None) -> bytes:
        """The LMDB value: a safetensors dict of tensor name -> array (``tensors``, made when not given),
        georeferencing in the metadata."""
        metadata = {
            "key": self.key,
            "format_version": format_version(self.others),
            "crs": self.crs,
            "transform": json.dumps(list(self.transform)),
            "dates": json.dumps(self.kept_dates),
            "groups": json.dumps({g: list(b) for g, b in self.groups.items()}),
            "split": self.split,
        }
        for sensor, series in self.others.items():
            metadata[f"{sensor}_dates"] = json.dumps(series.kept_dates)
        if self.paired:
            metadata["paired"] = json.dumps({name: list(self.paired_bands[name]) for name in self.paired})
        return canonical_safetensors(save(dict(self.tensors() if tensors is None else tensors), metadata=metadata))

    def slot(self) -> dict[str, np.ndarray]:
        """The Zarr arrays of this sample's slot: padded time axis, dropped dates nodata (0, NaN in float groups)."""
        kept = self.selection.kept
        out: dict[str, np.ndarray] = {}
        for group, values in self.images.items():
            own = self.kept(group)
            if own.all():  # the common case: the values as they are (the shard stacks them into one copy)
                out[group] = values
                continue
            out[group] = masked = values.copy()  # one pass, where ``np.where`` against a filled array took three
            masked[~own] = np.nan if values.dtype.kind == "f" else 0
        out.update(self.labels)
        out.update(self.paired)
        out["valid_mask"] = self.selection.mask & kept[:, None, None]
        out["valid_fraction"] = self.selection.fraction
        out["time_mask"] = kept
        for sensor, series in self.others.items():
            own = series.selection.kept
            out[f"{sensor}_valid_mask"] = series.selection.mask & own[:, None, None]
            out[f"{sensor}_valid_fraction"] = series.selection.fraction
            out[f"{sensor}_time_mask"] = own
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
            **{k: v for sensor, series in self.others.items() for k, v in _sensor_row(sensor, series).items()},
        }


def _sensor_row(sensor: str, series: SensorSeries) -> dict[str, Any]:
    """The index columns of a sensor besides Sentinel-2: its kept dates, their count and mean valid fraction."""
    own = series.selection.kept
    return {
        f"{sensor}_dates": series.kept_dates,
        f"{sensor}_n_dates": int(own.sum()),
        f"{sensor}_valid_fraction": float(series.selection.fraction[own].mean()),
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
