"""A built dataset's bytes, for tests that compare two datasets for identity."""

from __future__ import annotations

from pathlib import Path

import lmdb
import numpy as np
from safetensors.numpy import load


def dataset_files(root: Path) -> dict[str, bytes]:
    """Every file but the LMDB environments (compared by content: their pages depend on commit order)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "data.lmdb" not in p.parts
    }


def lmdb_contents(root: Path) -> dict[str, dict[bytes, bytes]]:
    """Every key and value of every LMDB part of the dataset at ``root``."""
    parts = {}
    for part in sorted((root / "data.lmdb").iterdir()):
        env = lmdb.open(str(part), readonly=True, lock=False)
        with env.begin() as txn:
            parts[part.name] = {bytes(k): bytes(v) for k, v in txn.cursor()}
        env.close()
    return parts


def lmdb_samples(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every sample of every LMDB part of the dataset at ``root``: key -> tensor name -> array."""
    return {key.decode(): load(value) for part in lmdb_contents(root).values() for key, value in part.items()}
