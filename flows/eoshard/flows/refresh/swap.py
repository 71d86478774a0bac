"""Switching a dataset to its refreshed version atomically, and finishing a switch a crash interrupted.

The new version is written whole into a staging folder beside the dataset (``.NAME.refresh``). The switch is one
``renameat2(RENAME_EXCHANGE)`` of the two folders: a reader sees the old dataset or the new one, never a mix. A
journal beside them (``.NAME.refresh.json``, written before the exchange) names the new manifest's SHA-256, so a
rerun after a crash can tell whether the exchange happened: if it did, the staging folder holds the old version and
is deleted; if it did not, the staging folder is the new version in progress and the refresh resumes it.

Filesystems without ``RENAME_EXCHANGE`` (some network filesystems) get two renames instead, the journal written
first; a crash between them leaves no folder at the dataset's path, and the next ``refresh`` moves the new version
into place before anything else.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

from eoshard.flows.errors import FlowsError
from eoshard.flows.refresh.lock import lock_path
from eoshard.pipeline.faults import fault_point
from eoshard.pipeline.shards.commits import atomic_write
from eoshard.pipeline.shards.layout import MANIFEST_FILE

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


class SwapError(FlowsError, OSError):
    """The refreshed version could not be put in place."""


def staging_path(dataset: Path) -> Path:
    return dataset.with_name(f".{dataset.name}.refresh")


def journal_path(dataset: Path) -> Path:
    return dataset.with_name(f".{dataset.name}.refresh.json")


def manifest_digest(folder: Path) -> str | None:
    path = folder / MANIFEST_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step; False when the filesystem cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise SwapError(f"could not exchange {a} and {b}: {os.strerror(code)}; the dataset at {b} is unchanged")


def switch(dataset: Path) -> None:
    """Put the finished staging version in place of ``dataset`` (whose lock we hold), then delete the old one."""
    staging = staging_path(dataset)
    shutil.copy2(lock_path(dataset), lock_path(staging))  # the new version must be locked by us too
    atomic_write(journal_path(dataset), json.dumps({"new_manifest_sha256": manifest_digest(staging)}).encode())
    fault_point("swap")
    try:
        if not _exchange(staging, dataset):
            old = dataset.with_name(f".{dataset.name}.refresh-old")
            dataset.rename(old)
            fault_point("swap")
            staging.rename(dataset)
            old.rename(staging)
    except OSError as err:
        raise SwapError(
            f"could not put the refreshed version of {dataset} in place: {err}; run the refresh again to finish"
        ) from err
    finish(dataset)


def recover_missing(dataset: Path) -> None:
    """After a crash between the two renames of the fallback switch: move the new version into place."""
    journal, staging = journal_path(dataset), staging_path(dataset)
    if dataset.exists() or not journal.is_file():
        return
    expected = json.loads(journal.read_text())["new_manifest_sha256"]
    if manifest_digest(staging) != expected:
        raise SwapError(
            f"{dataset} is missing and {staging} is not the version the interrupted refresh was switching to; "
            f"look for the dataset in {dataset.with_name(f'.{dataset.name}.refresh-old')}"
        )
    staging.rename(dataset)


def finish(dataset: Path) -> bool:
    """Complete a switch that happened (delete the old version and the journal); True when there was one.

    A journal whose new manifest is not the dataset's names a switch that did not happen: it is dropped and the
    staging folder is left to be resumed.
    """
    journal, staging = journal_path(dataset), staging_path(dataset)
    if not journal.is_file():
        return False
    expected = json.loads(journal.read_text())["new_manifest_sha256"]
    switched = manifest_digest(dataset) == expected
    if switched:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(dataset.with_name(f".{dataset.name}.refresh-old"), ignore_errors=True)
    journal.unlink()
    return switched


def discard_staging(dataset: Path) -> bool:
    """Delete a staging folder left by an earlier refresh (never a part of the dataset); True when there was one."""
    staging = staging_path(dataset)
    if not staging.exists():
        return False
    shutil.rmtree(staging)
    return True
