"""The Sentinel-2 L2A scene classification (SCL): its classes, and valid pixels of numpy classes.

Apart from ``masks`` (the lazy masks of the cube), so that the build's shard tasks and the config read them
without loading the cube engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# The SCL classes of the L2A scene classification.
SCL_CLASSES: dict[int, str] = {
    0: "no data", 1: "saturated or defective", 2: "dark area pixels", 3: "cloud shadows", 4: "vegetation",
    5: "not vegetated", 6: "water", 7: "unclassified", 8: "cloud medium probability",
    9: "cloud high probability", 10: "thin cirrus", 11: "snow",
}  # fmt: skip
# Classes that make a pixel invalid by default: nodata, defective, cloud shadows, clouds and cirrus.
SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10)


def check_scl_classes(classes: Iterable[int]) -> tuple[int, ...]:
    """The classes as a sorted tuple, refused when one is not an SCL class."""
    found = tuple(sorted({int(c) for c in classes}))
    unknown = [c for c in found if c not in SCL_CLASSES]
    if unknown:
        raise ValueError(f"SCL classes {unknown} do not exist: use codes 0-11 ({SCL_CLASSES})")
    return found


def scl_valid(scl: np.ndarray, invalid: Sequence[int]) -> np.ndarray:
    """``scl_valid_mask`` on numpy classes (the build's direct reads): one table lookup per pixel for 8-bit ones."""
    if scl.dtype != np.uint8:
        return ~np.isin(scl, invalid)
    table = np.ones(256, dtype=bool)
    table[list(invalid)] = False
    return table[scl]
