"""Polygons handed to exactextract as WKB, as its own GDAL and QGIS feature sources hand them over.

Its ``JSONFeatureSource`` takes GeoJSON-like dicts and writes each geometry as text for the C++ side to parse: on
the quarter tile's parcels that cost half as much again as the coverage computation itself. WKB carries the same
doubles exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from exactextract.feature import Feature, FeatureSource


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
