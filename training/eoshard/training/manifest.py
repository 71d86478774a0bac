"""Read ``dataset.json``: the only place the training package learns the shard layout.

Fields relied on are listed in docs/training.md. New image groups and label layers are picked up by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eoshard.training.band_names import bands_named, described
from eoshard.training.errors import DatasetFormatError


@dataclass(frozen=True)
class Manifest:
    """The parts of ``dataset.json`` the readers use."""

    root: Path
    raw: dict[str, Any]
    groups: dict[str, list[str]]
    keys: list[str]
    dates: list[str]
    label_layer: str | None
    background: int
    classes: dict[int, str] = field(default_factory=dict)
    slots: list[int] = field(default_factory=list)  # Zarr slot of each sample (format 1.0: kept samples only)
    parts: list[str | None] = field(default_factory=list)  # LMDB environment of each sample, None: the root
    digests: list[str | None] = field(default_factory=list)  # SHA-256 of each sample's LMDB value, None: unknown
    crcs: list[int | None] = field(default_factory=list)  # CRC-32C of each sample's LMDB value, None: unknown
    sensor_dates: dict[str, list[str]] = field(default_factory=dict)  # format 1.1: {"s1": dates} beside ``dates``
    class_counts: dict[int, int] = field(default_factory=dict)  # pixels of each class code in the dataset

    @classmethod
    def read(cls, root: str | Path) -> Manifest:
        root = Path(root)
        path = root / "dataset.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise DatasetFormatError(f"{path} is missing: pass a folder written by `eoshard build`") from err
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path} is not valid JSON ({err}); rebuild the dataset") from err
        try:
            return cls._parsed(root, raw)
        except DatasetFormatError:
            raise
        except KeyError as err:
            raise DatasetFormatError(
                f"{path} lacks the field {err}; expected the format in docs/format.md"
            ) from err
        except (TypeError, ValueError, AttributeError, IndexError) as err:  # a field of another shape
            raise DatasetFormatError(
                f"{path} misstates a field ({type(err).__name__}: {err}): expected the format in docs/format.md; "
                "copy the dataset again, or rebuild it"
            ) from err

    @classmethod
    def _parsed(cls, root: Path, raw: Any) -> Manifest:
        groups = _groups(raw)
        keys = [_text(k) for k in raw["keys"]]
        dates = [_text(d) for d in raw.get("dates", [])]
        labels = raw.get("labels") or {}
        layer = labels.get("layer") or ("class" if "class" in (labels.get("layers") or {}) else None)
        classes = {int(k): _text(v) for k, v in (labels.get("classes") or {}).items()}
        counts = {int(k): int(v) for k, v in (labels.get("class_counts") or {}).items()}
        keys, slots, parts, digests, crcs = _samples(root, raw, keys)
        background = int(labels.get("background", 0))
        sensor_dates = {str(k): [_text(d) for d in v] for k, v in (raw.get("sensor_dates") or {}).items()}
        manifest = cls(
            root, raw, groups, keys, dates, None if layer is None else _text(layer), background, classes, slots,
            parts, digests, crcs, sensor_dates, counts,
        )  # fmt: skip
        # what the readers ask later, asked now: a field of another shape is told here, not mid-epoch
        manifest.common_names()
        checksums = raw.get("checksums") or {}
        if not isinstance(checksums, dict) or not all(isinstance(v, str) for v in checksums.values()):
            raise TypeError(f"checksums: expected an object of file -> SHA-256, got {checksums!r:.80}")
        for name in ("formats", "statistics", "stats"):
            if not isinstance(raw.get(name) or {}, dict):
                raise TypeError(f"{name}: expected an object, got {raw[name]!r:.80}")
        if "patch" in raw or "patch_size" in raw:
            _ = manifest.patch_size
        for fmt, where in (raw.get("formats") or {}).items():
            if where is not None:
                manifest.format_path(str(fmt))
        size = ((raw.get("formats") or {}).get("zarr") or {}).get("shard_size", 1)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise TypeError(f"formats.zarr.shard_size: expected a count of samples, 1 or more, got {size!r:.80}")
        return manifest

    @property
    def patch_size(self) -> int:
        """Patch side in base-grid pixels (format 1.0: ``patch.size``; 0.x: ``patch_size``)."""
        patch = self.raw.get("patch")
        return int(patch["size"]) if isinstance(patch, dict) else int(self.raw["patch_size"])

    @property
    def bands(self) -> list[str]:
        """Every band of every group and sensor."""
        return [b for bands in self.groups.values() for b in bands]

    def sensor_of(self, group: str) -> str | None:
        """The sensor with dates of its own whose group this is (``s1`` for ``s1_10m`` in format 1.1), else None."""
        sensor = group.split("_", 1)[0]
        return sensor if sensor in self.sensor_dates else None

    def sensor_bands(self, sensor: str | None = None) -> list[str]:
        """The bands on ``dates`` (None: Sentinel-2, the ``image``), or on a sensor's own dates (``s1``)."""
        return [b for group, bands in self.groups.items() if self.sensor_of(group) == sensor for b in bands]

    def group_of(self, band: str) -> str:
        for group, bands in self.groups.items():
            if band in bands:
                return group
        raise DatasetFormatError(f"band {band!r} is not in the dataset; it has {self._bands_described()}")

    def band_names(self, names: Sequence[str]) -> list[str]:
        """The stored band each of ``names`` stands for: itself, or the band whose common name it is
        (``band_metadata``: ``red`` for ``B04``, ``nir08`` for ``B8A``, as Earth Search's asset keys), in any case."""
        common = self.common_names()
        found = []
        for name in names:
            same = bands_named(name, self.bands, common)
            if len(same) != 1:
                what = f"stands for {same}, more than one" if same else "is not in the dataset"
                raise DatasetFormatError(
                    f"band {name!r} {what}; it has {self._bands_described()}: name the bands as the dataset does"
                )
            found.append(same[0])
        return found

    def common_names(self) -> dict[str, str]:
        """Each stored band's common name in ``band_metadata``, where it has one."""
        meta = self.raw.get("band_metadata") or {}
        names = {b: str((meta.get(b) or {}).get("common_name") or "") for b in self.bands}
        return {b: c for b, c in names.items() if c}

    def _bands_described(self) -> str:
        """``B04 (red), B03 (green), ...``: the stored bands with their common names."""
        return described(self.bands, self.common_names())

    def format_path(self, fmt: str) -> Path:
        formats = {k: v for k, v in (self.raw.get("formats") or {}).items() if v is not None}  # "lmdb": null
        if fmt not in formats:
            other = next((f for f in sorted(formats) if f != fmt), None)
            use = (
                f"set `format: {other}` in the training config (evaluate: --format {other}), or " if other else ""
            )
            raise DatasetFormatError(
                f"the dataset {self.root} has no {fmt!r} shards (it has {sorted(formats)}): {use}rebuild it with {fmt}"
            )
        return self.root / formats[fmt].get("path", f"data.{fmt}")

    @property
    def n_classes(self) -> int:
        """Class codes are used as indices: background 0 plus the highest code, named or counted in the data (an
        integer class column has no names, and a code may have none)."""
        return max([self.background, *self.classes, *self.class_counts]) + 1

    def splits(self) -> np.ndarray | None:
        """The split column of ``index.parquet`` when present (read with pyarrow if installed)."""
        index = self.root / "index.parquet"
        if not index.exists():
            return None
        import pyarrow.parquet as pq  # optional: only datasets with an index need it

        table = pq.read_table(index)  # rows in sample order (sorted by zarr_index), as self.keys
        if "split" not in table.column_names:
            return None
        return np.asarray(table.column("split").to_pylist())


def _samples(
    root: Path, raw: dict[str, Any], keys: list[str]
) -> tuple[list[str], list[int], list[str | None], list[str | None], list[int | None]]:
    """The kept samples: from ``index.parquet`` (format 1.0), else every key of ``dataset.json`` (format 0.x).

    In format 1.0 ``keys`` lists every Zarr slot, dropped candidates included; the index says which samples were
    kept, their slot and their LMDB environment.
    """
    index = root / "index.parquet"
    if str(raw.get("format_version", "0")).split(".")[0] == "0" or not index.exists():
        return keys, list(range(len(keys))), [None] * len(keys), [None] * len(keys), [None] * len(keys)
    try:
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DatasetFormatError(
            f"{index} lists the samples of this format {raw['format_version']} dataset: install pyarrow to read it"
        ) from err
    names = pq.read_schema(index).names
    checks = [c for c in ("lmdb_sha256", "lmdb_crc32c") if c in names]  # older datasets lack one or both
    table = pq.read_table(index, columns=["key", "zarr_index", "lmdb_part", *checks]).to_pydict()
    missing = [None] * len(table["key"])
    digests = list(table.get("lmdb_sha256") or missing)
    crcs = [None if v is None else int(v) for v in table.get("lmdb_crc32c") or missing]
    return list(table["key"]), [int(v) for v in table["zarr_index"]], list(table["lmdb_part"]), digests, crcs


def _groups(raw: dict[str, Any]) -> dict[str, list[str]]:
    if raw.get("groups"):
        return {_text(name): [_text(b) for b in g["bands"]] for name, g in raw["groups"].items()}
    image = raw["formats"].get("zarr", {}).get("image", "s2_10m")
    return {_text(image): [_text(b) for b in raw["bands"]]}


def _text(value: Any) -> str:
    """A name or date of the manifest, which JSON holds as a string (a number or a list there is a ``TypeError``)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value
