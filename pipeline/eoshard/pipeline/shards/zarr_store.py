"""Zarr v3 shards: one inner chunk per sample, ``shard_size`` samples per shard, whole shards per write."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from eoshard.pipeline.errors import ShardWriteError
from eoshard.pipeline.faults import fault_point
from eoshard.pipeline.sensors import group_sensor, is_main
from eoshard.pipeline.shards.commits import partial_path
from eoshard.pipeline.shards.direct_io import write_new_file
from eoshard.pipeline.shards.shard_bytes import one_pass_level, shard_pieces

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


def checksums(path: Path, shard_index: int, name: str | None = None) -> dict[str, str]:
    """SHA-256 of each file of one shard (of array ``name``, or of all), keyed by its path relative to the store's
    parent."""
    return {
        str(f.relative_to(path.parent)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in shard_files(path, shard_index)
        if name is None or f.relative_to(path).parts[0] == name
    }


def write_shard(
    path: Path, shard_index: int, shard_size: int, samples: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, str]:
    """Write shard ``shard_index`` of every array in one go (``start_shard``, then wait for its files). Returns the
    SHA-256 of the shard's files."""
    return start_shard(path, shard_index, shard_size, samples).wait()


# A shard's files go to the disk on this thread while the task that made them goes on (the next array's encoding,
# its LMDB values): an ``O_DIRECT`` write waits for the disk, and the task's core stood idle meanwhile (design
# record 0012). One thread: a process's files reach the disk in the order they were made.
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eoshard-zarr-write")


class ShardWrite:
    """The files of one shard on their way to the disk (see ``start_shard``)."""

    def __init__(self, path: Path, shard_index: int) -> None:
        self.path, self.shard_index = path, shard_index
        self.sums: dict[str, str] = {}
        self.pending: list[Future[None]] = []

    def wait(self) -> dict[str, str]:
        """Wait until every file is written; the SHA-256 of the shard's files in ``shard_files``' order."""
        failed = self.settle()
        if isinstance(failed, OSError):
            raise self.error(failed) from failed
        if failed is not None:
            raise failed
        return dict(sorted(self.sums.items(), key=lambda item: Path(item[0]).parts))

    def settle(self) -> BaseException | None:
        """Wait until no write of this shard is under way; the first that failed, if any."""
        errors = [f.exception() for f in self.pending]  # a list, not a generator: every write is waited for
        return next((e for e in errors if e is not None), None)

    def error(self, err: OSError) -> ShardWriteError:
        return ShardWriteError(
            f"could not write shard {self.shard_index} of {self.path}: {err}; the shards committed before it stay "
            "valid, free space (or fix the error) and rerun the same build to finish"
        )


def start_shard(
    path: Path, shard_index: int, shard_size: int, samples: Sequence[Mapping[str, np.ndarray]]
) -> ShardWrite:
    """Start writing shard ``shard_index`` of every array in one go (a whole shard, so no other task touches it)
    from its samples' arrays by name; ``wait`` on the result before the shard counts as written.

    Arrays in ``create_store``'s layout are encoded in one pass (``shard_bytes``) here and written through a
    temporary file and a rename, as zarr writes, on the writer thread; others by zarr, here. Every chunk is
    written, fill-only ones (dropped samples) too: zarr's test for an empty chunk compares each one with its fill
    value, which cost 17 % of the write; a fill chunk read back is the same values either way.
    """
    writing = ShardWrite(path, shard_index)
    try:
        start = shard_index * shard_size
        for name in samples[0]:
            found = _one_pass(path, name)
            if found is None:
                array = zarr.open_array(str(path / name), mode="r+", zarr_format=3)
                target = array.with_config({"write_empty_chunks": True})
                target[start : start + len(samples)] = np.stack([s[name] for s in samples])
                writing.sums.update(checksums(path, shard_index, name))
                fault_point("zarr-shard")
            else:
                level, dtype, key = found
                pieces = shard_pieces([s[name] for s in samples], shard_size, level, dtype)
                file = path / name / key(shard_index)
                digest = hashlib.sha256()
                for piece in pieces:
                    digest.update(piece)
                writing.sums[str(file.relative_to(path.parent))] = digest.hexdigest()
                writing.pending.append(_writer.submit(_write_piece_file, file, pieces))
    except OSError as err:
        writing.settle()  # nothing of this shard is left being written when its task fails
        raise writing.error(err) from err
    except BaseException:
        writing.settle()
        raise
    return writing


def _write_piece_file(file: Path, pieces: Sequence[bytes]) -> None:
    _replace(file, pieces)
    fault_point("zarr-shard")


OnePass = tuple[int, np.dtype[Any], Callable[[int], str]]  # zstd level, dtype, shard index -> shard file key
_one_pass_arrays: dict[tuple[str, bytes], OnePass | None] = {}  # by array path and the bytes of its metadata


def _one_pass(path: Path, name: str) -> OnePass | None:
    """How to write array ``name``'s shards in one pass (None: with zarr). Asked of zarr once per process for each
    version of the array's metadata: opening it for every shard cost 1 ms per array."""
    array_path = path / name
    try:
        known = (str(array_path), (array_path / "zarr.json").read_bytes())
    except OSError:
        known = None
    if known is None or known not in _one_pass_arrays:
        array = zarr.open_group(str(path), mode="r+", zarr_format=3)[name]  # KeyError: no such array
        assert isinstance(array, zarr.Array)
        level = one_pass_level(array)
        encode = array.metadata.encode_chunk_key
        zeros = [0] * (array.ndim - 1)
        found = None if level is None else (level, array.dtype, lambda k: encode((k, *zeros)))
        if known is None:
            return found
        if len(_one_pass_arrays) >= 256:  # many stores in one process (a notebook's builds)
            _one_pass_arrays.clear()
        _one_pass_arrays[known] = found
    return _one_pass_arrays[known]


def _replace(file: Path, pieces: Sequence[bytes]) -> None:
    """Write ``file`` as zarr's store does: to ``NAME.<uuid>.partial`` beside it (past the page cache, see
    ``write_new_file``), then renamed over it."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(file)
    try:
        write_new_file(tmp, pieces)
        tmp.replace(file)
    finally:
        tmp.unlink(missing_ok=True)
