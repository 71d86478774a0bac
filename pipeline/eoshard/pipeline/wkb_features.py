"""Polygons handed to exactextract as WKB, as its own GDAL and QGIS feature sources hand them over, and their cells
collected as arrays.

Its ``JSONFeatureSource`` takes GeoJSON-like dicts and writes each geometry as text for the C++ side to parse: on
the quarter tile's parcels that cost half as much again as the coverage computation itself. WKB carries the same
doubles exactly. Its ``JSONWriter`` makes a GeoJSON-like dict of every feature's results, which the caller would
only take apart again: ``CellWriter`` keeps the arrays alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from exactextract.feature import Feature, FeatureSource
from exactextract.writer import Writer


class WkbFeature(Feature):
    """A polygon's WKB and one integer field, ``n`` (its position in the caller's array)."""

    def __init__(self, n: int, wkb: bytes) -> None:
        super().__init__()
        self.n = n
        self.wkb = wkb

    def geometry(self) -> bytes:
        return self.wkb

    def get(self, name: str) -> int:
        if name != "n":
            raise KeyError(name)
        return self.n

    def fields(self) -> list[str]:
        return ["n"]


class WkbFeatureSource(FeatureSource):
    """``(n, wkb)`` pairs as exactextract features."""

    def __init__(self, items: Sequence[tuple[int, bytes]]) -> None:
        super().__init__()
        self.items = items

    def count(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[WkbFeature]:
        return (WkbFeature(n, wkb) for n, wkb in self.items)

    def srs_wkt(self) -> None:
        return None


class _Fields(Feature):
    """The target each result is copied to: the fields of one feature at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, Any] = {}

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value

    def set_geometry(self, geometry: Any) -> None:
        """The results carry no geometry (``include_geom`` off): nothing to keep."""

    def set_geometry_format(self) -> str:
        return "wkb"


class CellWriter(Writer):
    """The ``n``, ``cell_id`` and ``coverage`` of every feature, one list each, in the order the features come (a
    feature without cells gets empty arrays, so the lists stay aligned)."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: dict[str, list[Any]] = {"n": [], "cell_id": [], "coverage": []}
        self._fields = _Fields()

    def write(self, feature: Any) -> None:
        self._fields.values = {}
        feature.copy_to(self._fields)
        got = self._fields.values
        self.lists["n"].append(got["n"])
        for name, dtype in (("cell_id", np.int64), ("coverage", np.float64)):
            found = got.get(name)
            self.lists[name].append(np.empty(0, dtype) if found is None else found)

    def features(self) -> dict[str, list[Any]]:
        """What ``exact_extract`` returns: the lists."""
        return self.lists
