"""New files written past the page cache (``O_DIRECT``) where the filesystem takes it.

A buffered write copies every byte into page-cache pages the kernel first has to find and clear: on the development
machine (a VM that hands freed memory back to its host) 2.8 CPU s per GB of new data, where an ``O_DIRECT`` write of
the same bytes costs 0.1 and leaves the disk to do the rest. The build's Zarr shard files are written once, never read
back by the build, and reach the disk either way, so they go straight there (and leave the page cache to the source
files). Where ``O_DIRECT`` is refused (no such flag, a filesystem or alignment it does not take) the file is written
the ordinary way; ``EOSHARD_DIRECT_WRITES=0`` always does.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from eoshard.pipeline.settings import env_choice

ALIGN = 4096  # offsets, lengths and memory of O_DIRECT writes: a multiple of every logical block size in use
# what the build writes and does not read back is kept out of the page cache (here, and LMDB's committed pages)
BYPASS = env_choice("EOSHARD_DIRECT_WRITES", "1", ("0", "1")) == "1"
ENABLED = BYPASS and hasattr(os, "O_DIRECT")

# each thread's aligned buffer, kept from file to file (new pages cost as much as above)
_local = threading.local()


def _buffer(size: int) -> mmap.mmap:
    """This thread's page-aligned buffer of at least ``size`` bytes."""
    buffer: mmap.mmap | None = getattr(_local, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = mmap.mmap(-1, max(ALIGN, -(-size // ALIGN) * ALIGN))
        _local.buffer = buffer  # the old one goes with its last view
    return buffer


def write_new_file(path: Path, pieces: Sequence[bytes | memoryview]) -> None:
    """Create ``path`` (it must not exist) holding ``pieces`` one after another, past the page cache where it can.

    The pieces are copied into an aligned buffer, written whole in blocks of ``ALIGN`` bytes, and the file is cut
    back to their length; an ``OSError`` other than a refusal of ``O_DIRECT`` (a full disk) is raised as it comes."""
    if not ENABLED:
        _write_buffered(path, pieces)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o666)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        _write_buffered(path, pieces)  # a filesystem that has no O_DIRECT
        return
    try:
        size = sum(len(piece) for piece in pieces)
        padded = -(-size // ALIGN) * ALIGN
        buffer = _buffer(padded)
        view = memoryview(buffer)
        try:
            start = 0
            for piece in pieces:
                view[start : start + len(piece)] = piece
                start += len(piece)
            view[size:padded] = bytes(padded - size)
            done = _write_direct(fd, view[:padded])
            if done < padded:  # refused part of the way: the rest the ordinary way
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                os.lseek(fd, done, os.SEEK_SET)
                _write_all(fd, view[done:padded])
        finally:
            view.release()
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _write_direct(fd: int, data: memoryview) -> int:
    """Write ``data`` with ``O_DIRECT`` while the kernel takes it; the bytes written (a multiple of ``ALIGN``)."""
    done = 0
    while done < len(data):
        try:
            n = os.write(fd, data[done:])
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
            return done
        if n <= 0 or n % ALIGN:  # a short write that leaves the offset unaligned: finish without O_DIRECT
            return done + max(n, 0)
        done += n
    return done


def _write_all(fd: int, data: memoryview) -> None:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done:])


def _write_buffered(path: Path, pieces: Sequence[bytes | memoryview]) -> None:
    with path.open("xb") as f:
        f.writelines(pieces)
