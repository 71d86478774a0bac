"""What a GIS needs beside the pixels: class colours, a QGIS style (QML) and a STAC ``classification`` sidecar.

QGIS loads ``NAME.qml`` beside ``NAME.tif`` as the layer's style, so the class map opens with the class names and
colours of the package; ``NAME.json`` describes the same classes as a STAC Item with the ``classification``
extension (``classification:classes`` with ``value``, ``name``, ``color_hint``) for other tools.
"""

from __future__ import annotations

import colorsys
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from eoshard.training.errors import InputError

CLASSIFICATION_SCHEMA = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
CLASS_NODATA = 255  # the class map is uint8; classes are 0..254


def class_colours(codes: list[int]) -> dict[int, tuple[int, int, int]]:
    """A distinct, stable colour per class code (golden-angle hues); the background (0) is grey."""
    colours: dict[int, tuple[int, int, int]] = {}
    for code in codes:
        if code == 0:
            colours[code] = (128, 128, 128)
            continue
        r, g, b = colorsys.hsv_to_rgb((code * 0.618034) % 1.0, 0.65, 0.9)
        colours[code] = (round(r * 255), round(g * 255), round(b * 255))
    return colours


def class_names(classes: dict[int, str], n_out: int) -> dict[int, str]:
    """Every output code with a name: the package's classes, ``background`` for 0, ``class <k>`` otherwise."""
    return {k: classes.get(k, "background" if k == 0 else f"class {k}") for k in range(n_out)}


def write_qml(path: Path, names: dict[int, str]) -> Path:
    """A QGIS paletted-raster style with one entry per class (value, colour, label)."""
    colours = class_colours(sorted(names))
    entries = "\n".join(
        f'        <paletteEntry value="{k}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" label={quoteattr(names[k])}/>'
        for k, (r, g, b) in colours.items()
    )
    path.write_text(
        f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" nodataColor="">
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
"""
    )
    return path


def write_classification(
    path: Path,
    raster: Path,
    names: dict[int, str],
    crs: str | None,
    transform: list[float] | None = None,
    shape: tuple[int, int] | None = None,
    dates: list[str] | None = None,
) -> Path:
    """A STAC Item (``classification`` extension) describing the class map ``raster``: its footprint in
    longitude and latitude (when its grid is known), the period of the input's ``dates`` (else the time it was
    made, as ``datetime``), and its classes."""
    colours = class_colours(sorted(names))
    classes = [
        {"value": k, "name": names[k], "color_hint": "{:02X}{:02X}{:02X}".format(*colours[k])}
        for k in sorted(names)
    ]
    asset: dict[str, Any] = {
        "href": f"./{raster.name}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"], "classification:classes": classes,
        "raster:bands": [{"nodata": CLASS_NODATA, "data_type": "uint8"}], "proj:wkt2": crs,
    }  # fmt: skip
    item: dict[str, Any] = {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [CLASSIFICATION_SCHEMA, PROJECTION_SCHEMA],
        "id": raster.stem, "geometry": None, "links": [], "properties": _when(dates), "assets": {"classes": asset},
    }  # fmt: skip
    if crs and transform and shape:
        asset.update({"proj:shape": list(shape), "proj:transform": list(transform[:6])})
        ring = outline_4326(crs, transform, shape)
        lons, lats = [x for x, _ in ring], [y for _, y in ring]
        item["bbox"] = [min(lons), min(lats), max(lons), max(lats)]
        item["geometry"] = {"type": "Polygon", "coordinates": [ring]}
    path.write_text(json.dumps(item, indent=2))
    return path


def _when(dates: list[str] | None) -> dict[str, Any]:
    """STAC's time of an item: the period of the input's dates, else now (``datetime`` may be null only beside a
    start and an end)."""
    if dates:
        stamps = sorted(d if d.endswith("Z") or "+" in d[10:] else f"{d}Z" for d in dates)
        return {"datetime": None, "start_datetime": stamps[0], "end_datetime": stamps[-1]}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"datetime": now, "created": now}


def outline_4326(crs: str, transform: list[float], shape: tuple[int, int]) -> list[list[float]]:
    """The raster's outline in longitude and latitude, counter-clockwise as GeoJSON asks: its four edges, 20 points
    each, through the whole affine transform (a rotated or south-up grid's too) and into EPSG:4326. A grid that lies
    where its CRS has no place on Earth is an ``InputError``."""
    import rasterio
    from rasterio._err import CPLE_BaseError  # what rasterio raises for GDAL's errors (no public name)
    from rasterio.warp import transform as reproject_points

    height, width = shape
    steps = np.linspace(0.0, 1.0, 20, endpoint=False)
    cols = np.concatenate([steps * width, np.full(20, width), (1 - steps) * width, np.zeros(20)])
    rows = np.concatenate([np.zeros(20), steps * height, np.full(20, height), (1 - steps) * height])
    a, b, c, d, e, f = transform[:6]
    xs, ys = a * cols + b * rows + c, d * cols + e * rows + f
    try:
        with rasterio.Env():  # PROJ's complaint goes to logging
            lons, lats = reproject_points(crs, "EPSG:4326", xs.tolist(), ys.tolist())
    except CPLE_BaseError:
        lons = lats = [math.inf]  # PROJ raises once per transformer, then answers inf
    # PROJ passes a geographic CRS's degrees through unchecked: a latitude past the pole has no place either
    if not (np.abs(lats) <= 90).all() or not (np.abs(lons) <= 360).all():  # inf and NaN fail both
        raise InputError(
            f"the input's grid (transform {list(transform[:6])}, {height} x {width} px) lies where its CRS has no "
            "place on Earth: check that the transform and the CRS belong together"
        )
    ring = [[float(x), float(y)] for x, y in zip(lons, lats, strict=True)]
    twice_area = sum(p[0] * q[1] - q[0] * p[1] for p, q in zip(ring, ring[1:] + ring[:1], strict=True))  # shoelace
    ring = ring if twice_area > 0 else ring[::-1]
    return [*ring, ring[0]]
