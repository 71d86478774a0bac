"""Vector files whose geometries GDAL reads but GEOS cannot build (a GeoJSON ring left unclosed): which features."""

from __future__ import annotations

import warnings
from pathlib import Path

import pyogrio.raw
import shapely
import shapely.errors

# GDAL's warning before such a geometry, which the reader's error then names feature by feature
UNCLOSED_RING_WARNING = "Non closed ring detected"


def unbuildable_features(path: Path | str, layer: str | None = None) -> list[tuple[int, str]]:
    """(feature, GEOS's reason) of each feature whose geometry GEOS refuses, counted from 0 in the file's order."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=UNCLOSED_RING_WARNING)
        _, _, wkbs, _ = pyogrio.raw.read(path, layer=layer)
    bad = []
    for row, wkb in enumerate(wkbs):
        if wkb is None:
            continue
        try:
            shapely.from_wkb(wkb)
        except shapely.errors.GEOSException as err:
            bad.append((row, reason(err)))
    return bad


def reason(err: Exception) -> str:
    """GEOS's words without its exception's name ("IllegalArgumentException: ...")."""
    return str(err).split(": ", 1)[-1]


def unbuildable_message(path: Path | str, bad: list[tuple[int, str]], err: Exception) -> str:
    """The start of an error about the features GEOS refuses: the file, how many, each one's reason and what a
    polygon needs (the caller adds what to do)."""
    shown = "; ".join(f"feature {row}: {why}" for row, why in bad[:5]) or reason(err)
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    what = f"{len(bad)} feature{'s' if len(bad) != 1 else ''} whose geometry" if bad else "a geometry that"
    return (
        f"{path} holds {what} cannot be made into a shape ({shown}{more}; features counted from 0 in the file's "
        "order): a polygon's rings must be closed (the last point repeats the first) with at least 4 points"
    )
