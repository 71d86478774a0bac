"""Source files opened once per process, and their decoded blocks kept in a bounded cache.

A shard task asks for windows; the windows are served from whole internal blocks of the COGs (products on the
grid) or from whole stackstac-sized chunks of a warped view (products in another CRS or off the grid), each
decoded once per process while it stays in the cache. Neighbouring shards run one after another on a worker
(see the build's patch order), so a block is mostly decoded once for the whole build.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from eoshard.pipeline.direct.vsi import file_size, forget_remote_files
from eoshard.pipeline.errors import CHANGED, AssetReadError, NoAnswerError, read_reason, shown_href, unreachable
from eoshard.pipeline.gdal_defaults import apply_gdal_defaults
from eoshard.pipeline.settings import env_choice, env_count, env_megabytes, is_set

apply_gdal_defaults()

CACHE_BYTES = env_megabytes("EOSHARD_BLOCK_CACHE_MB", 1024)
CACHE_BYTES_SET = is_set("EOSHARD_BLOCK_CACHE_MB")  # then a build's own estimate does not raise it
# The machine's store of decoded blocks (0: none): blocks two stripes share, and every block of a remote file when
# EOSHARD_BLOCK_STORE=all (see design 0012)
STORE_BYTES = env_megabytes("EOSHARD_BLOCK_STORE_MB", 4096)
STORE_BYTES_SET = is_set("EOSHARD_BLOCK_STORE_MB")  # then a build's own estimate does not raise it
STORE_ALL_REMOTE = env_choice("EOSHARD_BLOCK_STORE", "shared", ("shared", "all")) == "all"
STORE_PREFIX = "eoshard-blocks-"
STALE_STORE_SECONDS = 6 * 3600
_HEADER = 64  # bytes before a stored block's pixels: "<dtype> <height> <width>", padded with spaces
MAX_OPEN_FILES = env_count("EOSHARD_MAX_OPEN_FILES", 512, minimum=1)
MAX_OPEN_FILES_SET = is_set("EOSHARD_MAX_OPEN_FILES")  # then a build's own count does not raise it
FILE_DESCRIPTORS_KEPT = 256  # of the process's limit, left to sockets, the store's files and the output's
SPARE_BYTES = 64 * 2**20  # arrays the cache let go, kept to decode the next blocks into (see SparePool)


class SparePool:
    """Arrays the block cache let go, lent again to decode new blocks into: a new 2 MiB array is a fresh mapping
    whose pages the kernel faults in and zeroes one by one (1.3 M faults per quarter tile), costly on a machine
    whose memory is full of page cache. Bounded in bytes; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._spare: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` (its values are whatever they were: the caller overwrites them)."""
        with self._lock:
            found = self._spare.get((shape, np.dtype(dtype).str))
            if found:
                array = found.pop()
                self._bytes -= array.nbytes
                return array
        return np.empty(shape, dtype=dtype)

    def give(self, array: np.ndarray) -> None:
        """Keep ``array`` for ``take`` if nothing else holds it: the caller's one variable is the only other
        reference (a view, or a thread still reading it, holds one more, and it is left alone)."""
        # references: the caller's variable, this parameter, getrefcount's argument
        if sys.getrefcount(array) > 3 or array.base is not None or not array.flags.writeable:
            return
        with self._lock:
            if self._bytes + array.nbytes > self.max_bytes:
                return
            self._spare.setdefault((array.shape, array.dtype.str), []).append(array)
            self._bytes += array.nbytes

    def clear(self) -> None:
        with self._lock:
            self._spare.clear()
            self._bytes = 0


SPARE = SparePool(SPARE_BYTES)


class BlockCache:
    """A thread-safe cache of decoded arrays, bounded in bytes: past the bound the retired entries go first (blocks
    the build's sweep has left behind, see ``retire``), oldest first, then the least recently used."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # retired entries leave at once: set while one shard task reads in this process (none other may need them)
        self.eager = False
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._retired: OrderedDict[Hashable, None] = OrderedDict()
        self._bytes = 0
        self._retired_bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            if key in self._retired:  # read again after all: it lives as any other entry
                del self._retired[key]
                self._retired_bytes -= value.nbytes
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                if self._retired:
                    old_key, _ = self._retired.popitem(last=False)
                    old = self._items.pop(old_key)
                    self._retired_bytes -= old.nbytes
                else:
                    _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
                SPARE.give(old)

    def retire(self, keys: Iterable[Hashable]) -> None:
        """Mark entries no later read of the sweep needs: they leave first when room is needed (at once when
        ``eager``: a window's old block row goes file by file while the new one comes, not after the whole run)."""
        with self._lock:
            for key in keys:
                if key not in self._items:
                    continue
                if self.eager:
                    old = self._items.pop(key)
                    if key in self._retired:
                        del self._retired[key]
                        self._retired_bytes -= old.nbytes
                    self._bytes -= old.nbytes
                    SPARE.give(old)
                elif key not in self._retired:
                    self._retired[key] = None
                    self._retired_bytes += self._items[key].nbytes

    def drop_retired(self) -> None:
        """Let the retired entries go now (a process reading one shard at a time needs none of them again)."""
        with self._lock:
            while self._retired:
                key, _ = self._retired.popitem()
                old = self._items.pop(key)
                self._bytes -= old.nbytes
                SPARE.give(old)
            self._retired_bytes = 0

    def has_room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more fit beside the entries the sweep still needs, with a quarter of the bound left
        for the reads at hand (a read ahead asks first, and stops when the answer is no)."""
        with self._lock:
            return self._bytes - self._retired_bytes + nbytes <= self.max_bytes * 3 // 4

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._retired.clear()
            self._bytes = self._retired_bytes = 0


class BlockStore:
    """Decoded blocks as files in the machine's temporary folder, shared by a build's worker processes on
    that machine: a block that another process (or this one, before its memory cache let it go) decoded is read
    back, not decoded and fetched again. Bounded in bytes: past the bound the blocks already read back go first,
    then the oldest. Writes are atomic (a temporary file renamed), so a reader sees a whole block or none."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._written = 0
        self._lock = threading.Lock()
        self.hits = 0
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: Hashable) -> Path:
        return self.root / f"{hashlib.sha1(repr(key).encode()).hexdigest()}.block"

    def get(self, key: Hashable) -> np.ndarray | None:
        # A header of our own, not .npy: numpy parses its header with ``ast``, which raised "AST constructor
        # recursion depth mismatch" (a CPython 3.11 bug) when the read threads loaded blocks at once.
        try:
            with self._path(key).open("rb") as f:
                dtype, height, width = f.read(_HEADER).decode().split()
                block = SPARE.take((int(height), int(width)), dtype)
                got = f.readinto(block.data)
        except (OSError, ValueError):  # absent, or trimmed by another process while opened
            return None
        if got != block.nbytes:
            return None
        self.hits += 1
        self._consumed(key)
        return block

    def _consumed(self, key: Hashable) -> None:
        """A block read back has had its second reader (a stripe's edge and the next stripe; two workers where
        their runs meet): it goes first when the store is trimmed. By age alone, the blocks read back stayed and
        the next ones to be read went: where the blocks waiting for their second reader outgrew the bound (a whole
        tile's stripe edges), none of them was found any more."""
        with contextlib.suppress(OSError):  # trimmed meanwhile
            os.utime(self._path(key), (0, 0))

    def put(self, key: Hashable, block: np.ndarray) -> None:
        path = self._path(key)
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        header = f"{block.dtype.str} {block.shape[0]} {block.shape[1]}".encode().ljust(_HEADER)
        try:
            with temporary.open("wb") as f:
                f.write(header)
                f.write(np.ascontiguousarray(block).data)  # its own memory, no copy
            temporary.replace(path)
        except OSError:  # a full disk: the store is an optimisation, the block is in hand
            temporary.unlink(missing_ok=True)
            return
        with self._lock:
            self._written += block.nbytes
            due = self._written > self.max_bytes // 8
            if due:
                self._written = 0
        if due:
            self._trim()

    def _trim(self) -> None:
        """The blocks read back first (their time set to 0), then the oldest, until the store fits its bound."""
        files = []
        for entry in os.scandir(self.root):
            if entry.name.endswith(".block"):
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                files.append((stat.st_mtime, stat.st_size, entry.path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            Path(path).unlink(missing_ok=True)
            total -= size


_store: BlockStore | None = None


def store_bound(wanted: int, free: int) -> int:
    """The store's bound: ``EOSHARD_BLOCK_STORE_MB`` where it is set, else the build's estimate ``wanted`` of what
    waits there at once (see ``flows.block_cache.store_bytes``), at least the default and at most half the
    ``free`` bytes of the temporary folder."""
    if STORE_BYTES_SET or wanted <= STORE_BYTES:
        return STORE_BYTES
    return max(STORE_BYTES, min(wanted, free // 2))


def store_name(output: str) -> str:
    """A new store's name for a build of ``output``: the output's own prefix, then this run's (see
    ``use_block_store``)."""
    return f"{STORE_PREFIX}{hashlib.sha1(output.encode()).hexdigest()[:8]}-{uuid.uuid4().hex[:8]}"


def _remove_earlier_runs(name: str, root: Path) -> None:
    """Remove the stores that killed runs of the output of store ``name`` left (names made by ``store_name``; one
    build of an output runs at a time, under its lock). Any other name has none."""
    prefix = re.match(rf"{STORE_PREFIX}[0-9a-f]{{8}}-", name)
    if prefix is None:
        return
    for old in root.glob(f"{prefix.group(0)}*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def use_block_store(name: str | None, wanted: int = 0) -> None:
    """Share decoded blocks through the store ``name`` of this machine's temporary folder (None: no store),
    bounded by ``store_bound(wanted, ...)``.

    Stores that killed builds left (nobody removed them) are removed on the way: at once those of earlier runs
    of the same output, so a killed whole-tile build resumed at once does not leave its gigabytes beside the new
    store; others after ``STALE_STORE_SECONDS``."""
    global _store
    if not name or STORE_BYTES <= 0:
        _store = None
        return
    if _store is not None and _store.root.name == name:
        return
    forget_remote_files()  # a new build's first task here: what a killed build left unreleased is not its files
    root = Path(tempfile.gettempdir())
    _remove_earlier_runs(name, root)
    now = time.time()
    for old in root.glob(f"{STORE_PREFIX}*"):
        try:
            if old.name != name and now - old.stat().st_mtime > STALE_STORE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    _store = BlockStore(root / name, STORE_BYTES)  # the folder first: the temporary folder may not exist yet
    _store.max_bytes = store_bound(wanted, shutil.disk_usage(_store.root).free)


def remove_block_store(name: str) -> None:
    """Remove this machine's store ``name`` (a build calls it on every worker when it ends), and those that killed
    runs of the same output left: a run killed after its last shard left one, and a rerun that finds every shard
    done reads nothing, so it never met them in ``use_block_store``."""
    global _store
    if _store is not None and _store.root.name == name:
        _store = None
    root = Path(tempfile.gettempdir())
    shutil.rmtree(root / name, ignore_errors=True)
    _remove_earlier_runs(name, root)


def use_block_cache(wanted: int) -> None:
    """Bound this process's block cache by ``wanted`` bytes, a build's estimate of what a block row of its stripes
    needs (0: the default): never below ``CACHE_BYTES``, and ``EOSHARD_BLOCK_CACHE_MB`` set keeps its value."""
    CACHE.max_bytes = CACHE_BYTES if CACHE_BYTES_SET else max(CACHE_BYTES, wanted)


def open_files_bound(wanted: int) -> int:
    """The files ``use_open_files(wanted)`` keeps open in this process: never fewer than ``MAX_OPEN_FILES``, within
    the process's limit of file descriptors less ``FILE_DESCRIPTORS_KEPT``; ``EOSHARD_MAX_OPEN_FILES`` set is
    kept."""
    if MAX_OPEN_FILES_SET or wanted <= MAX_OPEN_FILES:
        return MAX_OPEN_FILES
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = wanted if soft == resource.RLIM_INFINITY else min(wanted, soft - FILE_DESCRIPTORS_KEPT)
    return max(MAX_OPEN_FILES, room)


def use_open_files(wanted: int) -> None:
    """Keep up to ``open_files_bound(wanted)`` files open in this process; ``wanted`` is a build's count of the
    remote files a block row of its stripes reads (0: the default)."""
    global _max_open
    _max_open = open_files_bound(wanted)


def release_build(store: str | None) -> None:
    """What a build left in this worker process, let go when it ends: its machine's store ``store``, the decoded
    blocks, the spare arrays and the open files, and the bounds the build gave the cache and the open files. A
    worker of a long-lived cluster then holds no memory for a build that is over, and the next build opens its
    files again (a local file written again meanwhile is read afresh).
    An open file is let go, not closed: a thread of another build on the same worker may still be reading it.
    The stores that killed runs of the same output left go too, and what GDAL remembers of remote files."""
    if store:
        remove_block_store(store)
    with _files_lock:
        _files.clear()
    with _no_answer_lock:
        _no_answer.clear()
    _sizes.clear()
    forget_remote_files()
    CACHE.clear()
    use_block_cache(0)  # the bounds as a build that raised them found them
    use_open_files(0)
    SPARE.clear()


def is_remote(href: str) -> bool:
    """Whether ``href`` is fetched over a network (a local file is cheaper to decode again than to store)."""
    return "://" in href and not href.startswith("file://")


def _store_for(href: str, shared: bool) -> BlockStore | None:
    """The machine's store when a block of ``href`` goes there (and is looked for there): blocks that another
    stripe reads too, and with ``EOSHARD_BLOCK_STORE=all`` every block of a remote file; else None."""
    return _store if shared or (STORE_ALL_REMOTE and is_remote(href)) else None


def _cached(key: Hashable, href: str, shared: bool = False, remember: bool = True) -> np.ndarray | None:
    """A decoded block from memory, else from this machine's store (then kept in memory too, if ``remember``)."""
    found = CACHE.get(key)
    return found if found is not None else _from_store(key, href, shared, remember)


def _from_store(key: Hashable, href: str, shared: bool, remember: bool) -> np.ndarray | None:
    """A decoded block (or part) from this machine's store, if it goes there and is there."""
    store = _store_for(href, shared)
    found = None if store is None else store.get(key)
    if found is not None and remember:
        CACHE.put(key, found)
    return found


def _keep(
    key: Hashable,
    href: str,
    block: np.ndarray,
    shared: bool = False,
    remember: bool = True,
    lent: tuple[Hashable, tuple[int, int]] | None = None,
) -> None:
    """Keep a decoded block in memory (if ``remember``) and in the machine's store when it goes there: whole, or
    only the columns of ``lent`` (its key and columns, see ``source_block``)."""
    if remember:
        CACHE.put(key, block)
    store = _store_for(href, shared)
    if store is None:
        return
    if lent is None or (STORE_ALL_REMOTE and is_remote(href)):
        store.put(key, block)
    else:
        part_key, (start, stop) = lent
        store.put(part_key, np.ascontiguousarray(block[:, start:stop]))


@dataclass
class OpenFile:
    """An open dataset, its lock (a GDAL handle serves one thread at a time) and its warped views by grid."""

    dataset: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    warped: dict[Hashable, WarpedVRT] = field(default_factory=dict)
    broken: bool = False  # a read through it failed: it is let go, and never read through again (see ``_reading``)

    @cached_property
    def epsg(self) -> int | None:
        """The dataset's EPSG code (None without a CRS or without a code): asked for every window read, and
        rasterio's ``CRS.to_epsg`` takes about 26 us."""
        crs = self.dataset.crs
        return None if crs is None else crs.to_epsg()


_files: OrderedDict[str, OpenFile] = OrderedDict()
_files_lock = threading.Lock()
_opening: dict[str, threading.Lock] = {}
_max_open = MAX_OPEN_FILES  # a build may raise it (``use_open_files``)
CACHE = BlockCache(CACHE_BYTES)


_no_answer: dict[Hashable, tuple[float, str]] = {}  # file or block -> when a read of it got no answer, and why
_no_answer_lock = threading.Lock()


def _unanswered_meanwhile(key: Hashable, since: float) -> None:
    """Raise ``NoAnswerError`` if a read of ``key`` (a file's href, a block's key) by another thread got no answer from
    its server after ``since`` (while this thread waited for that read): a read ahead, which waited out the whole
    timeout, held this one for as long, and this one would wait as long again (10 minutes a shard, not 4)."""
    with _no_answer_lock:
        found = _no_answer.get(key)
    if found is not None and found[0] >= since:
        raise NoAnswerError(found[1])


@contextmanager
def _telling_waiters(key: Hashable) -> Iterator[None]:
    """Note a read of ``key`` that gets no answer from its server, for the threads waiting for it (see
    ``_unanswered_meanwhile``); a read that succeeds clears the note."""
    try:
        yield
    except Exception as err:
        reason = read_reason(err)
        if unreachable(reason):
            with _no_answer_lock:
                _no_answer[key] = (time.monotonic(), reason)
        raise
    with _no_answer_lock:
        _no_answer.pop(key, None)


def open_file(href: str) -> OpenFile:
    """The process's open handle of ``href``, opened on first use. Past ``MAX_OPEN_FILES`` (or what the build raised
    it to) the least recently used is let go, not closed: a thread may still be reading it, and it closes when the
    last one is done with it."""
    with _files_lock:
        found = _files.get(href)
        if found is not None:
            _files.move_to_end(href)
            return found
        opening = _opening.setdefault(href, threading.Lock())
    since = time.monotonic()
    with opening:  # one opener per file; the others wait for its handle
        with _files_lock:
            if href in _files:
                return _files[href]
        _unanswered_meanwhile(href, since)
        with _telling_waiters(href):
            handle = OpenFile(rasterio.open(href, sharing=False))
        _refuse_changed(href, handle)
        with _files_lock:
            _files[href] = handle
            while len(_files) > _max_open:
                _files.popitem(last=False)
        return handle


_sizes: dict[str, int] = {}  # each source file's size (by its href without query) when the build was planned


def expect_sizes(sizes: Mapping[str, int]) -> None:
    """Say the sizes the build's files had when it was planned (by href without query): a file opened here with
    another size was replaced since, and is refused."""
    _sizes.update(sizes)


def _refuse_changed(href: str, handle: OpenFile) -> None:
    """Raise when the file just opened is not the size the build was planned with: its samples would read another
    version of the file than those already written (for a remote file GDAL tells the size its open learnt)."""
    planned = _sizes.get(shown_href(href))
    now = None if planned is None else file_size(href)
    if planned is not None and now is not None and now != planned:
        handle.dataset.close()
        raise AssetReadError(
            f"could not read {shown_href(href)}: {CHANGED} ({planned} bytes then, {now} bytes now)"
        )


@contextmanager
def _reading(href: str) -> Iterator[OpenFile]:
    """The open handle of ``href``, its lock held, for one read. A read that fails breaks the handle for good: GDAL
    reads a COG's tile offsets as they are needed, and once loading them failed (a server that stopped answering)
    the same handle answers that block as all nodata, without an error, even when the server is back. So a failed
    read lets the handle go, and a thread that waited for it to read opens the file again."""
    while True:
        handle = open_file(href)
        with handle.lock:
            if handle.broken:  # failed while this thread waited: open_file now opens the file again
                continue
            try:
                yield handle
            except BaseException:
                handle.broken = True
                with _files_lock:
                    if _files.get(href) is handle:
                        del _files[href]
                raise
            return


def close_files() -> None:
    """Close every cached handle and empty the block cache (tests, and workers between builds)."""
    with _files_lock:
        for handle in _files.values():
            with handle.lock:
                for vrt in handle.warped.values():
                    vrt.close()
                handle.dataset.close()
        _files.clear()
    CACHE.clear()
    SPARE.clear()


def read_alone(alone: bool) -> None:
    """Say whether one shard task alone reads in this process: then the blocks its sweep has passed leave the
    memory cache at once (see ``BlockCache.eager``)."""
    CACHE.eager = alone


def drop_retired_blocks() -> None:
    """Forget the blocks the sweep has passed (see ``BlockCache.retire``): a shard task that runs alone in its
    process calls it after each run of patches, so its memory holds the blocks still ahead, not the bound."""
    CACHE.drop_retired()


def block_key(href: str, row: int, col: int, cols: tuple[int, int] | None = None) -> Hashable:
    """The cache key of a block, or of its columns ``cols`` (see ``source_block``)."""
    return ("block", href, row, col) if cols is None else ("block", href, row, col, *cols)


def source_block(
    href: str,
    row: int,
    col: int,
    *,
    shared: bool = False,
    cols: tuple[int, int] | None = None,
    lend: tuple[int, int] | None = None,
) -> np.ndarray:
    """Internal block ``(row, col)`` of band 1 of ``href``, decoded (cached). ``shared``: another stripe of the
    build reads it too, so it is also kept in (and looked for in) the machine's store.

    ``cols``: only the block's columns ``cols[0]:cols[1]`` are wanted (a stripe whose last patches reach a few
    pixels into a block the next stripe reads): the memory cache keeps those columns, and a block decoded for them
    goes whole to the store, for the next stripe. ``lend``: the whole block is wanted, and the stripe before reads
    its columns ``lend`` (as its ``cols``): decoded here first, the block goes to the store as those columns only.
    """
    key, part_key = block_key(href, row, col), block_key(href, row, col, cols)
    if cols is not None and (part := CACHE.get(part_key)) is not None:
        return part
    since = time.monotonic()
    with _one_reader(key):  # a block another thread is fetching (a read ahead, see ``mosaic``) is waited for
        if cols is not None and (part := CACHE.get(part_key)) is not None:
            return part
        remember = cols is None  # a part is kept in memory, not the whole block
        block = CACHE.get(key)
        if block is None and cols is not None and (part := _from_store(part_key, href, shared, True)) is not None:
            return part  # the next stripe decoded the block first and stored these columns
        if block is None:
            block = _from_store(key, href, shared, remember)
        if block is None:
            _unanswered_meanwhile(key, since)
            with _telling_waiters(key):
                block = _decode(href, row, col)
            lent = None if lend is None else (block_key(href, row, col, lend), lend)
            _keep(key, href, block, shared, remember, lent)
        if cols is None:
            return block
        part = block[:, cols[0] : cols[1]].copy()
        CACHE.put(part_key, part)
    SPARE.give(block)  # the whole block is in the store (or not needed again)
    return part


_readers: dict[Hashable, list[Any]] = {}  # block key -> [its lock, threads holding or waiting for it]
_readers_lock = threading.Lock()


@contextmanager
def _one_reader(key: Hashable) -> Iterator[None]:
    """Hold the lock of block ``key``: one thread at a time fetches and decodes a block, the others then find it."""
    with _readers_lock:
        entry = _readers.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _readers_lock:
            entry[1] -= 1
            if not entry[1]:
                del _readers[key]


def _decode(href: str, row: int, col: int) -> np.ndarray:
    with _reading(href) as handle:
        ds = handle.dataset
        bh, bw = ds.block_shapes[0]
        window = Window(col * bw, row * bh, min(bw, ds.width - col * bw), min(bh, ds.height - row * bh))
        out = SPARE.take((int(window.height), int(window.width)), ds.dtypes[0])
        return ds.read(1, window=window, out=out)


def warped_chunk(
    href: str, grid_key: Hashable, vrt_params: dict[str, Any], window: Window, dtype: str, fill: float
) -> np.ndarray:
    """A chunk of the file warped onto a grid, as stackstac reads it (a ``WarpedVRT`` over the whole grid)."""
    key = ("warped", href, grid_key, window.row_off, window.col_off, window.height, window.width)
    cached = _cached(key, href)
    if cached is not None:
        return cached
    with _reading(href) as handle:
        vrt = handle.warped.get(grid_key)
        if vrt is None:
            ds = handle.dataset
            vrt = WarpedVRT(ds, sharing=False, add_alpha=ds.nodata is None, **vrt_params)
            handle.warped[grid_key] = vrt
        result = vrt.read(window=window, out_dtype=dtype, masked=True)
    # the alpha band of a file without nodata says where the file has pixels
    result = np.ma.masked_array(result[0], mask=result[1] == 0) if result.shape[0] == 2 else result[0]
    chunk = np.ma.filled(result, fill_value=np.dtype(dtype).type(fill))
    _keep(key, href, chunk)
    return chunk


def resampling_of(name: str) -> Resampling:
    return Resampling[name]
