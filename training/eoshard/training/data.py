"""torch Datasets over the LMDB and Zarr shards, opened lazily once per worker process (after fork)."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import torch
from torch.utils.data import Dataset

from eoshard.training.errors import CorruptSampleError, DatasetFormatError
from eoshard.training.manifest import Manifest
from eoshard.training.normalisation import foundation_stats

Sample = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Stats:
    """Per-band mean and standard deviation used to normalise (band order = selected bands)."""

    mean: np.ndarray
    std: np.ndarray


def band_stats(manifest: Manifest, bands: Sequence[str], n_samples: int = 16) -> Stats:
    """``stats`` from ``dataset.json`` when present, else computed from an evenly spaced sample of the Zarr shards."""
    stats = manifest.raw.get("statistics") or manifest.raw.get("stats")
    if stats and all(b in stats for b in bands):
        moments = [_moments(stats[b], b, manifest.root) for b in bands]
        mean = np.array([m for m, _ in moments], "f4")
        std = np.array([s for _, s in moments], "f4")
        return Stats(mean, np.maximum(std, np.float32(1e-6)))
    fmt = "zarr" if (manifest.raw.get("formats") or {}).get("zarr") else "lmdb"
    reader = make_dataset(manifest, fmt, bands=bands, normalise=False)
    picks = np.linspace(0, len(reader) - 1, min(n_samples, len(reader))).astype(int)
    stack = np.stack([reader[int(i)]["image"].numpy() for i in picks])  # (S, T, C, H, W)
    valid = stack != 0
    mean = np.array(
        [stack[:, :, c][valid[:, :, c]].mean() if valid[:, :, c].any() else 0.0 for c in range(len(bands))]
    )
    std = np.array(
        [stack[:, :, c][valid[:, :, c]].std() if valid[:, :, c].any() else 1.0 for c in range(len(bands))]
    )
    return Stats(mean.astype("f4"), np.maximum(std, 1e-6).astype("f4"))


def _moments(entry: Any, band: str, root: Path) -> tuple[float, float]:
    """A band's mean and std from its ``statistics`` entry; a band without any valid pixel has null ones and
    normalises to 0 (as nodata does)."""
    values = [entry.get(k) if isinstance(entry, dict) else None for k in ("mean", "std")]
    if not isinstance(entry, dict) or not all(v is None or _is_number(v) for v in values):
        raise DatasetFormatError(
            f"{root / 'dataset.json'} misstates statistics.{band}: expected an object with a numeric mean and std "
            f"(null for a band without data), got {entry!r:.120}; copy the dataset again, or rebuild it"
        )
    mean, std = values
    return float(mean or 0.0), float(std or 1.0)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def split_indices(manifest: Manifest, split: str | None, val_fraction: float = 0.2) -> list[int]:
    """Sample indices of a split: the index's ``split`` column, else a stable hash of the key (train/val)."""
    n = len(manifest.keys)
    if split is None:
        return list(range(n))
    column = manifest.splits()
    if column is not None:
        counts = (manifest.raw.get("splits") or {}).get("counts") or {}
        names = sorted({str(s) for s in column} | set(counts))  # a split may be known and empty
        if split not in names:
            raise DatasetFormatError(
                f"split {split!r} is not in {manifest.root / 'index.parquet'}: it has {names}; pass one of these"
            )
        return [i for i in range(n) if column[i] == split]
    is_val = [(zlib.crc32(k.encode()) % 1000) < val_fraction * 1000 for k in manifest.keys]
    if split not in ("train", "val"):
        raise DatasetFormatError(f"split {split!r} unknown: without index.parquet only 'train' and 'val' exist")
    return [i for i in range(n) if is_val[i] == (split == "val")]


def _day_of_year(dates: Sequence[str]) -> torch.Tensor:
    return torch.tensor([datetime.fromisoformat(d).timetuple().tm_yday for d in dates], dtype=torch.long)


class ShardDataset(Dataset[Sample]):
    """Common part: band selection, normalisation, label/ignore masks and augmentation.

    A sample is ``image`` (T, C, H, W) float32, ``dates`` (T,) day of year, ``pad`` (T,) bool (True = padding),
    ``label`` (H, W) int64 and ``ignore`` (H, W) bool (True = excluded from the loss). Float groups (reflectance,
    indices) hold NaN where there is no data: it becomes 0 after normalisation (the band's mean), as padding.
    A format 1.1 dataset adds, per sensor with dates of its own, ``image_s1`` (T_s1, C_s1, H, W) with every band of
    that sensor, ``dates_s1`` and ``pad_s1``, normalised with the dataset's statistics whenever ``normalise`` is on.
    """

    def __init__(
        self,
        manifest: Manifest,
        bands: Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        normalise: bool | Stats | str = True,
        ignore_layers: Sequence[str] = ("double_partial", "double_full"),
        ignore_background: bool = False,
        augment: bool = False,
        seed: int = 0,
        max_dates: int | None = None,
        verify: bool = True,
    ) -> None:
        self.manifest = manifest
        self.verify = verify  # check every sample against the build's checksums (LMDB value, Zarr shard files)
        self.bands = manifest.band_names(bands) if bands else manifest.sensor_bands()
        for band in self.bands:
            sensor = manifest.sensor_of(manifest.group_of(band))
            if sensor is not None:
                raise DatasetFormatError(
                    f"band {band!r} has the {sensor} dates, not the dataset's dates: it comes in image_{sensor} "
                    f"(every {sensor} band); choose bands of {manifest.sensor_bands()} for image"
                )
        self.sensors = {s: manifest.sensor_bands(s) for s in manifest.sensor_dates}
        self.sensor_stats = {
            s: band_stats(manifest, b) if normalise is not False else None for s, b in self.sensors.items()
        }
        self.indices = list(range(len(manifest.keys)) if indices is None else indices)
        if isinstance(normalise, Stats):
            self.stats: Stats | None = normalise
        elif isinstance(normalise, str):  # a foundation model's published normalisation (normalisation.py)
            self.stats = Stats(*foundation_stats(normalise, manifest, self.bands))
        else:
            self.stats = band_stats(manifest, self.bands) if normalise else None
        self.ignore_layers = list(ignore_layers)
        self.ignore_background = ignore_background
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.max_dates = max_dates or len(manifest.dates)
        self._dates = _day_of_year(manifest.dates)
        self._sensor_days = {s: _day_of_year(d) for s, d in manifest.sensor_dates.items()}

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Image arrays per group (T, C, H, W) for the selected bands (every band of a sensor with its own dates),
        label layers by name, and the positions of the sample's dates: ``""`` in ``dataset.json`` ``dates``, each
        other sensor's in ``sensor_dates``."""
        raise NotImplementedError

    def _image(
        self, groups: dict[str, np.ndarray], bands: list[str], stats: Stats | None, size: int
    ) -> torch.Tensor:
        """``(T, C, size, size)`` float32 of ``bands`` (coarser groups repeated), normalised, NaN -> 0."""
        parts = []
        for band in bands:
            group = self.manifest.group_of(band)
            chans = [b for b in self.manifest.groups[group] if b in bands]
            arr = torch.from_numpy(groups[group][:, chans.index(band)].astype(np.float32))
            if arr.shape[-1] != size:  # a coarser group: upsampled on the fly (nearest keeps values)
                arr = arr.repeat_interleave(size // arr.shape[-1], -1).repeat_interleave(size // arr.shape[-2], -2)
            parts.append(arr)
        image = torch.stack(parts, 1)
        if stats is not None:
            image = (image - torch.from_numpy(stats.mean)[:, None, None]) / torch.from_numpy(stats.std)[
                :, None, None
            ]
        return torch.nan_to_num(image, nan=0.0)  # float groups' nodata: the band mean once normalised, else 0

    @staticmethod
    def _padded(
        image: torch.Tensor, time_index: np.ndarray, days: torch.Tensor, max_dates: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image`` padded with zeros to ``max_dates``, the day of year of each date, and the padding mask."""
        t = image.shape[0]
        pad = torch.zeros(max_dates, dtype=torch.bool)
        dates = torch.zeros(max_dates, dtype=torch.long)
        dates[:t] = days[torch.from_numpy(time_index.astype(np.int64))]
        if t < max_dates:
            pad[t:] = True
            image = torch.cat([image, image.new_zeros((max_dates - t, *image.shape[1:]))])
        return image, dates, pad

    def __getitem__(self, i: int) -> Sample:
        n = self.indices[i]
        try:
            return self._sample(n)
        except DatasetFormatError:
            raise
        # the sample is not what the manifest says (a band, a layer or a date it does not hold)
        except (KeyError, IndexError, ValueError, StopIteration) as err:
            raise DatasetFormatError(
                f"sample {self.manifest.keys[n]!r} of {self.manifest.root} does not match its dataset.json "
                f"({type(err).__name__}: {err}): the manifest does not describe these shards (edited, or another "
                "dataset's); copy the dataset again, or rebuild it"
            ) from err

    def _sample(self, n: int) -> Sample:
        groups, layers, times = self._read(n)
        size = max(a.shape[-1] for a in groups.values())
        image = self._image(groups, self.bands, self.stats, size)
        image, dates, pad = self._padded(image, times[""], self._dates, self.max_dates)
        extra: Sample = {}
        for sensor, bands in self.sensors.items():
            own = self._image(groups, bands, self.sensor_stats[sensor], size)
            days = self._sensor_days[sensor]
            extra[f"image_{sensor}"], extra[f"dates_{sensor}"], extra[f"pad_{sensor}"] = self._padded(
                own, times[sensor], days, len(days)
            )
        label_name = self.manifest.label_layer
        label = (
            torch.from_numpy(layers[label_name].astype(np.int64))
            if label_name
            else torch.zeros(image.shape[-2:], dtype=torch.long)
        )
        ignore = torch.zeros(label.shape, dtype=torch.bool)
        for name in self.ignore_layers:
            if name in layers:
                ignore |= torch.from_numpy(layers[name] != 0)
        if self.ignore_background:
            ignore |= label == self.manifest.background
        sample = {"image": image, "dates": dates, "pad": pad, "label": label, "ignore": ignore, **extra}
        if self.augment:
            sample = augment(sample, self.seed * 1_000_003 + self.epoch * 10_007 + n)
        return sample


def augment(sample: Sample, seed: int) -> Sample:
    """rot90, flips and transpose drawn from ``seed``, applied identically to image, label and ignore mask."""
    rng = np.random.default_rng(seed)
    k, flip_v, flip_h, trans = int(rng.integers(4)), rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5
    out = dict(sample)
    for name in [k for k in out if k.startswith("image")] + ["label", "ignore"]:
        x = out[name]
        x = torch.rot90(x, k, (-2, -1))
        if flip_v:
            x = torch.flip(x, (-2,))
        if flip_h:
            x = torch.flip(x, (-1,))
        if trans:
            x = x.transpose(-2, -1)
        out[name] = x.contiguous()
    return out


# per-date tensors of format 1.0 samples: not label layers
_PER_DATE = {"valid_mask", "valid_fraction", "date", "doy", "time_index"}
_PER_SENSOR_DATE = {f"s1_{name}" for name in _PER_DATE}  # format 1.1: Sentinel-1's own dates

_ENVS: dict[tuple[str, int], tuple[Any, tuple[int, int]]] = {}  # (path, pid) -> (environment, its file's identity)


def _identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the environment's ``data.mdb`` (None: not there)."""
    try:
        st = (Path(path) / "data.mdb").stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _forget_replaced(pid: int) -> None:
    """Close the environments of process ``pid`` whose ``data.mdb`` was deleted or replaced since they were opened
    (a dataset removed and built again at the same path, in a notebook's long-lived process): they read the old
    samples, and they kept py-lmdb from opening a new environment whose file got the old one's inode number."""
    for key in [k for k, (_, ident) in _ENVS.items() if k[1] == pid and _identity(k[0]) != ident]:
        _ENVS.pop(key)[0].close()


def _lmdb_env(path: str, pid: int) -> Any:
    """One environment per path and process (py-lmdb refuses a second open of the same files in a process); a read
    finds it in ``_ENVS``, and the replaced ones go before a new one opens and when a dataset object is made."""
    import lmdb

    if (path, pid) not in _ENVS:
        _forget_replaced(pid)
        # an environment inherited through fork must not be used; closing it in the child only unmaps it here
        for key in [k for k in _ENVS if k[0] == path]:
            _ENVS.pop(key)[0].close()
        try:
            env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True)
        except lmdb.Error as err:  # no such environment: a part missing, or a manifest that names another layout
            if "already open in this process" in str(err):  # py-lmdb knows environments by their file's inode
                raise DatasetFormatError(
                    f"the LMDB environment {path} cannot be opened: this process still has one open on a file of the "
                    "same inode (a dataset deleted at this path, read by objects still open, or a hard link to its "
                    "files): close them (close_environments(folder), eoshard's datasets' close()), or start a new "
                    "Python process"
                ) from err
            raise DatasetFormatError(
                f"the LMDB environment {path} cannot be opened ({err}): the dataset is incomplete, or its "
                "dataset.json names parts it does not hold; copy the dataset again, or rebuild it"
            ) from err
        _refuse_truncated(env, Path(path) / "data.mdb")
        identity = _identity(path)
        assert identity is not None  # the environment was just opened
        _ENVS[(path, pid)] = (env, identity)
    return _ENVS[(path, pid)][0]


def close_environments(folder: str | Path) -> None:
    """Close this process's LMDB environments inside ``folder`` (they stay open, shared by the dataset objects of
    a folder, until then). Before deleting a dataset in a long-lived process such as a notebook's: an environment
    left open keeps py-lmdb from opening a new one whose files reuse the deleted files' inode numbers."""
    root = Path(folder).resolve()
    for key in [k for k in _ENVS if k[1] == os.getpid() and Path(k[0]).resolve().is_relative_to(root)]:
        _ENVS.pop(key)[0].close()


def _refuse_truncated(env: Any, file: Path) -> None:
    """A ``data.mdb`` shorter than the pages its header counts (a full disk, a copy cut short): a read on the
    missing pages would kill the process (and a data loader's workers) with SIGBUS, so it is refused first. The
    pipeline's reader has the same check: eoshard-training installs without the pipeline."""
    needed = (int(env.info()["last_pgno"]) + 1) * int(env.stat()["psize"])
    size = file.stat().st_size
    if size < needed:
        env.close()
        raise DatasetFormatError(
            f"{file} is truncated: {size} bytes where its pages need {needed} (a full disk, or a copy cut short); "
            "copy the dataset again"
        )


class LmdbDataset(ShardDataset):
    """Samples from ``data.lmdb``: one read-only, lock-free environment per process, opened on first use."""

    def __init__(self, manifest: Manifest, **kwargs: Any) -> None:
        self.path = manifest.format_path("lmdb")
        _forget_replaced(os.getpid())  # a dataset made again at this path is read from its new files
        super().__init__(manifest, **kwargs)

    def _txn(self, part: str | None) -> Any:
        path = self.path if part is None else self.path / part
        return _lmdb_env(str(path), os.getpid()).begin(buffers=True)

    def close(self) -> None:
        """Close this process's environments of the dataset: see ``close_environments``."""
        close_environments(self.path)

    def _read(self, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        from safetensors.numpy import load

        key = self.manifest.keys[n]
        with self._txn(self.manifest.parts[n]) as txn:
            value = txn.get(key.encode())
            if value is None:
                raise DatasetFormatError(f"key {key!r} of dataset.json is missing from {self.path}")
            data = bytes(value)
            if self.verify:
                part = self.manifest.parts[n]
                where = self.path / part if part else self.path
                crc, digest = self.manifest.crcs[n], self.manifest.digests[n]
                if crc is not None:  # CRC-32C: about 20x cheaper than SHA-256 (docs/benchmarks.md)
                    found = google_crc32c.value(data)
                    if found != crc:
                        raise _corrupt(self.manifest, key, where, f"CRC-32C {found:08x}", f"{crc:08x}")
                elif digest is not None:
                    _check(self.manifest, key, where, data, digest)
            arrays = load(data)
        groups = {}
        for group, bands in self.manifest.groups.items():
            chosen = [b for b in bands if b in self.bands or self.manifest.sensor_of(group) is not None]
            if chosen:
                groups[group] = np.stack([arrays[b] for b in chosen], 1)
        first = next(iter(groups.values())).shape[0]
        times = {
            "": arrays.get("time_index", np.arange(first)),
            **{s: arrays[f"{s}_time_index"] for s in self.sensors},
        }
        per_date = _PER_DATE | _PER_SENSOR_DATE
        layers = {k: v for k, v in arrays.items() if k not in self.manifest.bands and k not in per_date}
        return groups, layers, times


class ZarrDataset(ShardDataset):
    """Samples from ``data.zarr``: the group is opened once per process, on first use."""

    def __init__(self, manifest: Manifest, **kwargs: Any) -> None:
        self.path = manifest.format_path("zarr")
        self._group: Any = None
        self._layers: list[str] = []
        self._pid = -1
        self._verified: set[int] = set()  # shards whose files matched their checksums in this process
        super().__init__(manifest, **kwargs)
        self._shard_size, self._shard_files = _zarr_checksums(manifest) if self.verify else (1, {})

    def _open(self) -> Any:
        import zarr

        if self._group is None or self._pid != os.getpid():
            self._group = zarr.open_group(str(self.path), mode="r")
            self._pid = os.getpid()
            self._verified = set()
            self._layers = [n for n, a in self._group.arrays() if n not in self.manifest.groups and a.ndim == 3]
        return self._group

    def _read(self, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        group = self._open()
        slot = self.manifest.slots[n]
        shard = slot // self._shard_size
        if shard not in self._verified:
            for rel, expected in self._shard_files.get(shard, ()):
                path = self.manifest.root / rel
                try:
                    data = path.read_bytes()
                except FileNotFoundError as err:
                    raise CorruptSampleError(
                        f"sample {self.manifest.keys[n]!r} of dataset {self.manifest.root} cannot be read: the shard "
                        f"file {path} is missing. Copy the dataset again from its source, or rebuild it"
                    ) from err
                _check(self.manifest, self.manifest.keys[n], path, data, expected)
            self._verified.add(shard)
        # format 1.0 pads the time axis to all dataset dates: keep the sample's own dates, as LMDB stores them
        kept = np.flatnonzero(np.asarray(group["time_mask"][slot])) if "time_mask" in group else None
        own = {s: np.flatnonzero(np.asarray(group[f"{s}_time_mask"][slot])) for s in self.sensors}
        groups = {}
        for name, bands in self.manifest.groups.items():
            sensor = self.manifest.sensor_of(name)
            chans = [i for i, b in enumerate(bands) if b in self.bands or sensor is not None]
            if chans:
                values = np.asarray(group[name][slot])
                times = own[sensor] if sensor is not None else kept
                groups[name] = (values if times is None else values[times])[:, chans]
        layers = {}
        for name in self._layers:
            layers[name] = np.asarray(group[name][slot])
        time_index = kept if kept is not None else np.arange(next(iter(groups.values())).shape[0])
        return groups, layers, {"": time_index, **own}


def _check(manifest: Manifest, key: str, path: Any, data: Any, expected: str) -> None:
    """Raise when ``data`` (read for sample ``key`` from ``path``) does not have the SHA-256 the build recorded."""
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise _corrupt(manifest, key, path, f"SHA-256 {found[:16]}...", f"{expected[:16]}...")


def _corrupt(manifest: Manifest, key: str, path: Any, found: str, expected: str) -> CorruptSampleError:
    return CorruptSampleError(
        f"sample {key!r} of dataset {manifest.root} is corrupt: {path} has {found}, the build recorded {expected} "
        "(the file changed after the build: a disk or copy error). Copy the dataset again from its source or "
        "rebuild it; `eoshard verify` lists every damaged sample"
    )


def _zarr_checksums(manifest: Manifest) -> tuple[int, dict[int, list[tuple[str, str]]]]:
    """Shard size and, per Zarr shard, its files (relative to the dataset) with their SHA-256 (``checksums``)."""
    formats = manifest.raw.get("formats") or {}
    zarr_format = formats.get("zarr") or {}
    store = str(zarr_format.get("path", "data.zarr"))
    shard_size = int(zarr_format.get("shard_size") or 1)
    files: dict[int, list[tuple[str, str]]] = {}
    for rel, digest in (manifest.raw.get("checksums") or {}).items():
        parts = str(rel).split("/")
        if len(parts) >= 4 and parts[0] == store and parts[2] == "c" and parts[3].isdigit():
            files.setdefault(int(parts[3]), []).append((str(rel), str(digest)))
    return shard_size, files


def make_dataset(manifest: Manifest, fmt: str, **kwargs: Any) -> ShardDataset:
    """An LMDB or Zarr dataset by format name."""
    if fmt == "lmdb":
        return LmdbDataset(manifest, **kwargs)
    if fmt == "zarr":
        return ZarrDataset(manifest, **kwargs)
    raise DatasetFormatError(f"format {fmt!r} unknown: expected 'lmdb' or 'zarr'")
