"""Checks that a command can write where it is told to, before it spends minutes planning."""

from __future__ import annotations

import os
from pathlib import Path

from eoshard.flows.errors import FlowsError


def nearest_existing(path: Path) -> Path:
    """``path``, or the nearest folder above it that exists (a folder a build will make)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(path: Path, setting: str) -> None:
    """Refuse a folder (or the nearest existing folder above it) that this user cannot write into: a read-only
    mount, another user's folder, or a file where the folder should be. ``setting`` names where the path came
    from (``output.path``)."""
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise FlowsError(f"{setting} {path}: {existing} is a file, not a folder: set {setting} to a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        why = "is on a read-only file system" if read_only else "may not be written by this user"
        raise FlowsError(f"{setting} {path}: {existing} {why}: set {setting} to a folder you can write to")
