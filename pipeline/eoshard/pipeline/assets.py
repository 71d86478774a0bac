"""Each asset file checked against its item: the CRS, transform and shape the item declares are the file's.

A COG whose real CRS differs from the item's ``proj:epsg`` / ``proj:code`` would otherwise be read on the
wrong grid without a word (half the band nodata, the valid mask still saying valid). The check reads headers
only (:func:`read_asset_georef`), concurrently over the products (:func:`check_assets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import rasterio
from affine import Affine
from rasterio.crs import CRS

from eoshard.pipeline.direct.vsi import file_size
from eoshard.pipeline.errors import (
    BUILD_AGAIN,
    LEAVE_OUT,
    AssetReadError,
    PipelineError,
    read_remedy,
    shown_href,
    without_query,
)
from eoshard.pipeline.items import epsg_of

# transforms agree when every coefficient is within this many metres (or degrees) of the declared one
TRANSFORM_TOLERANCE = 1e-6


class GeorefMismatchError(PipelineError, ValueError):
    """An asset file's CRS, transform or shape disagrees with its item's projection fields."""


def declared_epsg(item: Mapping[str, Any], band: str) -> int | None:
    """The EPSG code the asset (else the item) declares in ``proj:epsg`` or ``proj:code``."""
    return epsg_of(item["assets"].get(band, {})) or epsg_of(item["properties"])


def check_asset_georef(
    item: Mapping[str, Any], band: str, crs: CRS | str | None, transform: Affine, shape: tuple[int, int]
) -> None:
    """Raise :class:`GeorefMismatchError` when the file's ``crs``/``transform``/``shape`` (as read from its
    header) disagree with what ``item`` declares for asset ``band``; fields the item leaves out are not checked.
    """
    asset = item["assets"][band]
    said: list[str] = []
    found: list[str] = []
    epsg = declared_epsg(item, band)
    file_crs = None if crs is None else CRS.from_user_input(crs)
    if epsg is not None and (file_crs is None or file_crs != CRS.from_epsg(epsg)):
        said.append(f"EPSG:{epsg}")
        found.append(
            "no CRS"
            if file_crs is None
            else (f"EPSG:{file_crs.to_epsg()}" if file_crs.to_epsg() else file_crs.to_string())
        )
    declared = asset.get("proj:transform")
    if declared and not Affine(*declared[:6]).almost_equals(transform, precision=TRANSFORM_TOLERANCE):
        said.append(f"transform {tuple(float(v) for v in declared[:6])}")
        found.append(f"transform {tuple(float(v) for v in tuple(transform)[:6])}")
    declared_shape = asset.get("proj:shape")
    if declared_shape and tuple(int(v) for v in declared_shape) != tuple(shape):
        said.append(f"shape {tuple(int(v) for v in declared_shape)}")
        found.append(f"shape {tuple(shape)}")
    if said:
        raise GeorefMismatchError(
            f"product {item.get('id')} asset {band} ({asset.get('href')}): the item says {', '.join(said)}, "
            f"the file says {', '.join(found)}; its pixels would land in the wrong place: fix the item's proj:* "
            "fields (or the file), or leave the product out"
        )


def read_asset_georef(
    item: Mapping[str, Any], band: str, then: str = BUILD_AGAIN, leave_out: str | None = LEAVE_OUT
) -> int | None:
    """Read the header of asset ``band`` of ``item`` and check it (:func:`check_asset_georef`); ``then`` and
    ``leave_out``: what to do once a file that could not be read is dealt with, and how to leave its product out
    (see ``read_remedy``). Returns the file's size in bytes (None: unknown), which the build's reads expect it to
    keep."""
    href = str(item["assets"][band]["href"])
    try:
        with rasterio.open(href) as ds:
            crs, transform, shape = ds.crs, ds.transform, (ds.height, ds.width)
            size = file_size(href)
    except rasterio.errors.RasterioIOError as err:
        raise AssetReadError(
            f"could not read asset {band} of product {item.get('id')} ({shown_href(href)}): "
            f"{without_query(str(err), href)}; "
            f"{read_remedy(str(err), then, leave_out)}"
        ) from err
    check_asset_georef(item, band, crs, transform, shape)
    return size


def check_assets(
    items: Sequence[Mapping[str, Any]],
    bands: Sequence[str],
    max_workers: int = 16,
    then: str = BUILD_AGAIN,
    leave_out: str | None = LEAVE_OUT,
) -> dict[str, dict[str, int]]:
    """Check every asset ``bands`` of ``items`` against its item, headers read concurrently; the first
    mismatch (in item and band order) is raised. ``then``, ``leave_out``: see ``read_asset_georef``. Returns each
    file's size in bytes, by product id and band (files of unknown size left out)."""
    pairs = [(item, band) for item in items for band in bands if band in item["assets"]]
    if not pairs:
        return {}
    with ThreadPoolExecutor(max_workers=min(max_workers, len(pairs))) as pool:
        futures = [pool.submit(read_asset_georef, item, band, then, leave_out) for item, band in pairs]
    sizes: dict[str, dict[str, int]] = {}
    for (item, band), future in zip(pairs, futures, strict=True):
        if (size := future.result()) is not None:
            sizes.setdefault(str(item["id"]), {})[band] = size
    return sizes
