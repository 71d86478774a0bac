"""One shard task (runs on a Dask worker): numpy patches in -> samples -> one whole Zarr shard + LMDB values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from eoshard.pipeline.patches import Patch
from eoshard.pipeline.sensors import group_sensor
from eoshard.pipeline.shards import stats
from eoshard.pipeline.shards.layout import ZARR_DIR
from eoshard.pipeline.shards.samples import Sample, SensorSeries, empty_slot, sha256
from eoshard.pipeline.shards.splits import block_split
from eoshard.pipeline.shards.spool import release_spooled, spool_values
from eoshard.pipeline.shards.zarr_store import start_shard
from eoshard.pipeline.timeseries import MASK_SOURCES, nodata_mask, select_dates

Layouts = Mapping[str, tuple[tuple[int, ...], str]]


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard task needs besides the pixels: where, which samples, and the build's rules.

    The samples are the shard's patches: each is ``grid[roi]`` with its offset on the base grid, and its own
    ``GeoBox`` gives the sample's key, georeferencing and split block.
    """

    out: str
    index: int
    shard_size: int
    patches: tuple[Patch, ...]
    groups: Mapping[str, Sequence[str]]
    factors: Mapping[str, int]
    dates: tuple[str, ...]  # the Sentinel-2 dates (the dataset's ``dates``)
    layouts: Layouts
    lmdb_part: str | None
    write_zarr: bool
    mask: str = "nodata"
    min_valid_fraction: float = 0.5
    min_dates: int = 1
    block_size: float = 5120.0
    fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 0
    paired: Mapping[str, Sequence[str]] = field(default_factory=dict)  # e.g. {"hr": ("red", "green", "blue")}
    nan_fill: tuple[str, ...] = ()  # float arrays whose nodata (and Zarr fill) is NaN
    sensor_dates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # other sensors' own dates (1.1)
    sensor_rules: Mapping[str, tuple[float, int]] = field(default_factory=dict)  # their min valid fraction, dates
    # LMDB values to a file under ``_build/values`` (see ``spool_values``) instead of returned
    spool_values: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.patches)

    @property
    def origins(self) -> tuple[tuple[int, int], ...]:
        """``(row, col)`` of each patch on the base grid."""
        return tuple((p.row, p.col) for p in self.patches)


def materialize_shard(
    spec: ShardSpec,
    images: Mapping[str, Sequence[np.ndarray]],
    labels: Mapping[str, Sequence[np.ndarray]],
    paired: Mapping[str, Sequence[np.ndarray]] | None = None,
    fractions: Sequence[np.ndarray | None] | None = None,
    masks: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Make the shard's samples, write its Zarr shard whole, and return what the driver commits.

    ``fractions`` (optional, per sample): known per-date valid fractions, see ``select_dates``.
    ``masks`` (optional, per sample): a ``(T, H, W)`` valid mask from outside the images (the SCL), and-ed with
    the image-derived one.

    Returns ``records`` (LMDB key, value), index ``rows``, band ``histograms``, ``class_counts``, the number of
    ``dropped`` candidates and the Zarr shard's ``checksums``.
    """
    slots: list[dict[str, np.ndarray]] = []
    records: list[tuple[str, bytes]] = []
    rows: list[dict[str, Any]] = []
    histograms = {b: stats.BandStats() for bs in spec.groups.values() for b in bs}
    histograms.update({f"{name}_{b}": stats.BandStats() for name, bs in spec.paired.items() for b in bs})
    paired = paired or {}
    class_counts: list[stats.Histogram] = []
    dropped = 0
    for n, patch in enumerate(spec.patches):
        patch_images = {g: np.asarray(values[n]) for g, values in images.items()}
        main = {g: v for g, v in patch_images.items() if group_sensor(g) not in spec.sensor_dates}
        mask = MASK_SOURCES[spec.mask](main, spec.factors)
        if masks is not None:
            mask = mask & np.asarray(masks[n], dtype=bool)
        selection = select_dates(mask, spec.min_valid_fraction, None if fractions is None else fractions[n])
        others = sensor_series(spec, patch_images)
        if selection.n_kept < spec.min_dates or any(
            series.selection.n_kept < spec.sensor_rules[sensor][1] for sensor, series in others.items()
        ):
            dropped += 1
            slots.append(empty_slot(spec.layouts, spec.nan_fill))
            continue
        origin = patch.geobox.transform
        sample = Sample(
            key=patch.key,
            groups=spec.groups,
            images=patch_images,
            labels={name: np.asarray(values[n]) for name, values in labels.items()},
            selection=selection,
            dates=spec.dates,
            geobox=patch.geobox,
            split=block_split(
                origin.c, origin.f, block_size=spec.block_size, fractions=spec.fractions, seed=spec.seed
            ),
            paired={name: np.asarray(values[n]) for name, values in paired.items()},
            paired_bands=spec.paired,
            others=others,
        )
        slots.append(sample.slot())
        tensors = sample.tensors()
        value = sample.to_safetensors(tensors)
        records.append((sample.key, value))
        zarr_index = spec.index * spec.shard_size + n
        rows.append(
            {
                **sample.row(),
                "zarr_index": zarr_index,
                "shard": spec.index,
                "lmdb_part": spec.lmdb_part,
                "row": patch.row,
                "col": patch.col,
                "lmdb_sha256": sha256(value),
                "lmdb_crc32c": google_crc32c.value(value),  # what readers check per sample (cheap)
            }
        )
        for group, bands in spec.groups.items():
            values, own = patch_images[group], sample.kept(group)
            if values.dtype.kind in "ui":  # counted exactly, from the LMDB tensor (the band's kept dates)
                for band in bands:
                    histograms[band].add(tensors[band])
                continue
            kept = values[own]  # float moments: summed over the same strided views as always (the same bits)
            if group_sensor(group) in others:  # Sentinel-1 nodata is 0.0: statistics leave it out as NaN
                kept = np.where(kept == 0, np.float32(np.nan), kept)
            for i, band in enumerate(bands):
                histograms[band].add(kept[:, i])
        for name, bands in spec.paired.items():
            for i, band in enumerate(bands):
                histograms[f"{name}_{band}"].add(sample.paired[name][i])
        if "class" in sample.labels:
            class_counts.append(stats.histogram(sample.labels["class"], nodata=-(2**31)))
    checksums, spooled = _write_files(spec, slots, records)
    if spooled:
        records = []
    return {
        **spooled,
        "records": records,
        "rows": rows,
        "histograms": {band: h.dumped() for band, h in histograms.items()},
        "class_counts": stats.to_json(stats.merge(class_counts)),
        "dropped": dropped,
        "checksums": checksums,
    }


def _write_files(
    spec: ShardSpec, slots: Sequence[Mapping[str, np.ndarray]], records: Sequence[tuple[str, bytes]]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Write the shard's Zarr files and, while they go to the disk, spool its LMDB values (``spec.spool_values``):
    the Zarr files' checksums and the spool (empty when the values are returned). A task that fails leaves no
    write under way and no spool behind."""
    zarr_files = (
        start_shard(Path(spec.out) / ZARR_DIR, spec.index, spec.shard_size, slots) if spec.write_zarr else None
    )
    spooled: dict[str, Any] = {}
    try:
        if spec.spool_values and spec.lmdb_part is not None:
            spooled = {"spool": spool_values(Path(spec.out), spec.index, records)}
        checksums = {} if zarr_files is None else zarr_files.wait()
    except BaseException:
        if zarr_files is not None:
            zarr_files.settle()
        if spooled:
            release_spooled(spooled["spool"])
        raise
    return checksums, spooled


def sensor_series(spec: ShardSpec, images: Mapping[str, np.ndarray]) -> dict[str, SensorSeries]:
    """Each other sensor's valid mask (a pixel is valid where a band is neither 0 nor NaN) and kept dates."""
    out = {}
    for sensor, dates in spec.sensor_dates.items():
        own = {g: v for g, v in images.items() if group_sensor(g) == sensor}
        out[sensor] = SensorSeries(
            dates, select_dates(nodata_mask(own, spec.factors), spec.sensor_rules[sensor][0])
        )
    return out
