"""What a GIS needs beside the pixels: class colours, a QGIS style (QML) and a STAC ``classification`` sidecar.

QGIS loads ``NAME.qml`` beside ``NAME.tif`` as the layer's style, so the class map opens with the class names and
colours of the package; ``NAME.json`` describes the same classes as a STAC Item with the ``classification``
extension (``classification:classes`` with ``value``, ``name``, ``color_hint``) for other tools.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

CLASSIFICATION_SCHEMA = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
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


def write_classification(path: Path, raster: Path, names: dict[int, str], crs: str | None) -> Path:
    """A STAC Item (``classification`` extension) describing the class map ``raster``."""
    colours = class_colours(sorted(names))
    classes = [
        {"value": k, "name": names[k], "color_hint": "{:02X}{:02X}{:02X}".format(*colours[k])}
        for k in sorted(names)
    ]
    item = {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [CLASSIFICATION_SCHEMA],
        "id": raster.stem, "geometry": None, "bbox": None, "links": [],
        "properties": {"datetime": None, "start_datetime": None, "end_datetime": None},
        "assets": {"classes": {
            "href": f"./{raster.name}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"], "classification:classes": classes,
            "raster:bands": [{"nodata": CLASS_NODATA, "data_type": "uint8"}], "proj:wkt2": crs,
        }},
    }  # fmt: skip
    path.write_text(json.dumps(item, indent=2))
    return path
