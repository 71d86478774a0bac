"""Spatially blocked train/val/test splits, deterministic from a seed."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

SPLITS = ("train", "val", "test")


def block_split(x: float, y: float, *, block_size: float, fractions: Sequence[float], seed: int) -> str:
    """The split of the ``block_size`` block that holds point ``(x, y)`` (a patch's top-left corner).

    Every patch of a block gets the same split, so neighbours inside a block never straddle splits; the block's
    split comes from SHA-256 of ``"<seed>:<bx>:<by>"`` against the cumulative ``fractions``.
    """
    bx, by = math.floor(x / block_size), math.floor(y / block_size)
    digest = hashlib.sha256(f"{seed}:{bx}:{by}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = sum(fractions)
    cumulative = 0.0
    for name, fraction in zip(SPLITS, fractions, strict=True):
        cumulative += fraction / total
        if u < cumulative:
            return name
    return SPLITS[len(fractions) - 1]
