"""STAC items as the cube readers take them: stackstac-ready dicts, grouped into acquisitions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pystac

from eoshard.pipeline.bands import canonical_assets
from eoshard.pipeline.errors import PipelineError


def epsg_of(properties: Mapping[str, Any]) -> int | None:
    """The EPSG code in ``proj:epsg`` or an EPSG ``proj:code`` of an item's (or an asset's) fields."""
    if properties.get("proj:epsg") is not None:
        return int(properties["proj:epsg"])
    code = properties.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":")[1])
    return None


def stackstac_ready(item: pystac.Item | Mapping[str, Any]) -> dict[str, Any]:
    """The item as a dict that stackstac reads: ``proj:epsg`` filled from ``proj:code`` where missing.

    stackstac reads only ``proj:epsg``, while pystac 1.15 writes only ``proj:code``; asset hrefs are made absolute.
    """
    if isinstance(item, pystac.Item):
        data = item.to_dict(transform_hrefs=False)
        for key, asset in item.assets.items():
            data["assets"][key]["href"] = asset.get_absolute_href() or asset.href
    else:
        data = {**item, "properties": dict(item["properties"]), "assets": dict(item["assets"])}
    epsg = epsg_of(data["properties"])
    if epsg is None:
        raise PipelineError(
            f"item {data.get('id')} has neither proj:epsg nor an EPSG proj:code: cannot place its pixels on a grid"
        )
    data["properties"]["proj:epsg"] = epsg
    return canonical_assets(data)


def acquisition_key(item: Mapping[str, Any]) -> str:
    """Products of one satellite, day and relative orbit form one acquisition (mosaicked together)."""
    props = item["properties"]
    day = str(props["datetime"])[:10]
    return f"{props.get('platform', '')}_{day}_R{props.get('sat:relative_orbit', '')}"
