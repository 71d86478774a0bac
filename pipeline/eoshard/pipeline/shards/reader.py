"""Reading a built dataset: one reader for verify, refresh, inspect, quicklooks and ``open_dataset``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import cast

import geopandas as gpd
import lmdb
import numpy as np
import pandas as pd
import zarr
from safetensors.numpy import load

from eoshard.pipeline.errors import DatasetError, ManifestError
from eoshard.pipeline.shards.layout import INDEX_FILE, MANIFEST_FILE, DatasetLayout


def read_layout(path: Path | str) -> DatasetLayout:
    """The layout of the finished dataset at ``path`` (its ``dataset.json``)."""
    path = Path(path)
    manifest = path / MANIFEST_FILE
    if not path.is_dir():
        what = "is a file, not a dataset folder" if path.exists() else "does not exist"
        raise DatasetError(f"{path} {what}: give the folder a build wrote (its output.path)")
    if not manifest.is_file():
        raise DatasetError(
            f"{path} has no {MANIFEST_FILE}: it is not an eoshard dataset, or its build did not finish "
            "(rerun `eoshard build` with the same config to finish it)"
        )
    try:
        data = json.loads(manifest.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(
            f"{manifest} is not valid JSON ({err}): the file is broken; rebuild the dataset (or restore it)"
        ) from err
    return DatasetLayout.from_manifest(data, str(manifest))


@dataclass
class ShardedDataset:
    """A built dataset on disk: its layout, index, Zarr group and LMDB environments (opened read-only, once)."""

    path: Path
    layout: DatasetLayout
    _envs: dict[str, lmdb.Environment] = field(default_factory=dict, repr=False)

    def index(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """``index.parquet``: a GeoDataFrame of every kept sample, or a plain frame of some ``columns``."""
        file = self.path / INDEX_FILE
        if not file.is_file():
            raise DatasetError(f"{self.path} has no {INDEX_FILE}: the dataset is incomplete; rebuild it")
        return pd.read_parquet(file, columns=list(columns)) if columns else gpd.read_parquet(file)

    def zarr_group(self) -> zarr.Group:
        """The Zarr v3 group (a ``DatasetError`` when the dataset was built without Zarr)."""
        if self.layout.zarr is None:
            raise DatasetError(
                f"{self.path} was built without Zarr (formats: lmdb only): read its samples from LMDB, or rebuild "
                "with output.formats [zarr, lmdb]"
            )
        where = self.path / self.layout.zarr.path
        try:
            return zarr.open_group(str(where), mode="r")
        except ValueError as err:  # a garbled zarr.json (JSONDecodeError is a ValueError)
            raise DatasetError(
                f"{where} cannot be opened as a Zarr group ({err}): the dataset is damaged; copy it again, or "
                "rebuild it"
            ) from err

    def read_slot(self, name: str, slot: int) -> np.ndarray:
        """Slot ``slot`` of Zarr array ``name``."""
        return np.asarray(cast(zarr.Array, self.zarr_group()[name])[slot])

    def lmdb_values(self) -> Iterator[tuple[str, bytes]]:
        """Every ``(key, value)`` of every LMDB part, part by part in key order."""
        for part in self.layout.lmdb.parts if self.layout.lmdb is not None else ():
            with self._env(part).begin() as txn:
                for key, value in txn.cursor():
                    yield key.decode(), bytes(value)

    def lmdb_keys(self) -> Iterator[tuple[str, str]]:
        """Every ``(part, key)`` of every LMDB part, without reading the values."""
        for part in self.layout.lmdb.parts if self.layout.lmdb is not None else ():
            with self._env(part).begin() as txn:
                for key in txn.cursor().iternext(keys=True, values=False):
                    yield part, bytes(key).decode()

    def read_value(self, key: str, part: str) -> bytes | None:
        """The safetensors bytes of sample ``key`` in LMDB ``part`` (None when it is not there)."""
        with self._env(part).begin() as txn:
            value = txn.get(key.encode())
        return None if value is None else bytes(value)

    def read_sample(self, key: str, part: str) -> dict[str, np.ndarray]:
        """The tensors of sample ``key`` from LMDB ``part``."""
        value = self.read_value(key, part)
        if value is None:
            raise DatasetError(f"sample {key} is in the index but not in LMDB {part}: run `eoshard verify`")
        return load(value)

    def _env(self, part: str) -> lmdb.Environment:
        if part not in self._envs:
            if self.layout.lmdb is None:
                raise DatasetError(
                    f"{self.path} was built without LMDB (formats: zarr only): read its samples from Zarr "
                    "(read_slot, eoshard.open_dataset), or rebuild with output.formats [zarr, lmdb]"
                )
            where = self.path / self.layout.lmdb.path / part
            if not where.is_dir():
                raise DatasetError(
                    f"{self.path} lacks the LMDB part {part}: the dataset is incomplete; rebuild it"
                )
            try:
                env = lmdb.open(str(where), readonly=True, lock=False, subdir=True)
            except lmdb.Error as err:
                raise DatasetError(_unopenable(where, err)) from err
            _refuse_truncated(env, where / "data.mdb")
            self._envs[part] = env
        return self._envs[part]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def __enter__(self) -> ShardedDataset:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _unopenable(where: Path, err: lmdb.Error) -> str:
    """Why LMDB ``where`` did not open, and what to do."""
    if "already open in this process" in str(err):  # py-lmdb knows environments by their file's inode
        return (
            f"{where} cannot be opened: this process still has an LMDB environment open on a file of the same inode, "
            "one of a dataset deleted at this path (its data.mdb's inode was given to the new one) or a hard link to "
            "it: close the objects that read the old dataset (close()), or start a new Python process"
        )
    return f"{where} cannot be opened as LMDB ({err}): the dataset is damaged; copy it again or rebuild it"


def _refuse_truncated(env: lmdb.Environment, file: Path) -> None:
    """A ``data.mdb`` shorter than the pages its header counts (a full disk, a copy cut short): reading a value on
    the missing pages kills the process with SIGBUS, so it is refused before any read."""
    needed = (int(env.info()["last_pgno"]) + 1) * int(env.stat()["psize"])
    size = file.stat().st_size
    if size < needed:
        env.close()
        raise DatasetError(
            f"{file} is truncated: {size} bytes where its pages need {needed} (a full disk, or a copy cut short); "
            "copy the dataset again, or rebuild it"
        )


def open_shards(path: Path | str) -> ShardedDataset:
    """The finished dataset at ``path`` (a ``DatasetError`` when it is not one)."""
    root = Path(path)
    return ShardedDataset(root, read_layout(root))
