"""Dataset output on object stores (``s3://``, ``gs://``, ``file://``) through fsspec.

LMDB needs a local filesystem, so a build always writes into a local staging folder (``output.path``) and is then
published to ``output.url``: every file is uploaded first and ``dataset.json`` last, so a reader who finds the
manifest finds a complete dataset. Credentials come from each library's usual environment and config
(``AWS_*``/``~/.aws`` for s3fs, ``GOOGLE_APPLICATION_CREDENTIALS`` for gcsfs); they are never part of a URL that
eoshard prints or logs.
"""

from __future__ import annotations

from pathlib import Path

import fsspec

from eoshard.catalog.credentials import redact_url as _redact
from eoshard.flows.errors import FlowsError
from eoshard.pipeline.shards.layout import MANIFEST_FILE

MANIFEST = MANIFEST_FILE
LOCK = ".eoshard.lock"  # a build's or refresh's lock (refresh/lock.py): never part of what is published


class StorageError(FlowsError, OSError):
    """An output URL that cannot be written."""


def redact_url(url: str) -> str:
    """``url`` without user info or query parameters not known to be harmless, fit for a log (one redaction for
    every URL: ``eoshard.catalog.credentials.redact_url``)."""
    return _redact(url)


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``url`` and the path inside it."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise StorageError(
            f"cannot open output {redact_url(url)}: {err}. Install the filesystem's package "
            "(s3fs for s3://, gcsfs for gs://) and check the URL"
        ) from err
    return fs, str(path)


def publish(local: Path, url: str) -> list[str]:
    """Upload the dataset folder ``local`` to ``url``, the manifest last; returns the relative paths uploaded."""
    fs, root = filesystem(url)
    files = sorted(
        p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file() and not p.name.startswith(LOCK)
    )
    if MANIFEST not in files:
        raise StorageError(f"{local} holds no {MANIFEST}: only a finished dataset can be published")
    ordered = [f for f in files if f != MANIFEST] + [MANIFEST]
    try:
        if fs.exists(f"{root}/{MANIFEST}"):  # an older version stops counting as complete first
            fs.rm(f"{root}/{MANIFEST}")
        for parent in sorted({f"{root}/{rel}".rsplit("/", 1)[0] for rel in ordered}):
            fs.makedirs(parent, exist_ok=True)  # local and some remote filesystems need folders first
        for rel in ordered:
            fs.put_file(str(local / rel), f"{root}/{rel}")
    except OSError as err:
        raise StorageError(f"uploading {local} to {redact_url(url)} failed: {err}") from err
    return ordered


def fetch(url: str, local: Path) -> Path:
    """Download the dataset at ``url`` into the folder ``local`` (for LMDB, which reads only local files)."""
    fs, root = filesystem(url)
    try:
        fs.get(f"{root}/", str(local) + "/", recursive=True)
    except OSError as err:
        raise StorageError(f"downloading {redact_url(url)} failed: {err}") from err
    return local
