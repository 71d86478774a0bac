"""``eoshard-train predict``: read a GeoTIFF/COG (rasterio, optional extra) or a Zarr cube, write a COG or Zarr."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eoshard.training.errors import InputError
from eoshard.training.outputs import OutputSpec, need_rasterio, open_writer
from eoshard.training.package import ModelPackage
from eoshard.training.predict import Reader, Tiling, blend, model_fn, padded_read


@dataclass(frozen=True)
class Scene:
    """An input scene: a padded window reader, its size, CRS (WKT or EPSG string) and affine transform (6 values)."""

    read: Reader
    height: int
    width: int
    crs: str | None
    transform: list[float] | None
    nodata: float | None = None  # the input's nodata value (NaN for float scenes), None when it declares none


def _pick(names: Sequence[str | None], wanted: list[str], n_dates: int, index: Sequence[int] | None) -> list[int]:
    """0-based channel indices: explicit (1-based) ``index``, else names matched to the model's bands."""
    if index:
        return [i - 1 for i in index]
    if n_dates == 1 and all(b in names for b in wanted):
        return [list(names).index(b) for b in wanted]
    if len(names) == n_dates * len(wanted):
        return list(range(len(names)))
    raise InputError(
        f"cannot pick the model's bands {wanted} x {n_dates} dates from an input with bands {list(names)}; "
        "name the bands (GeoTIFF descriptions / Zarr attrs 'bands') or pass --band-index"
    )


def open_scene(path: Path, package: ModelPackage, index: Sequence[int] | None = None, pad: str = "edge") -> Scene:
    """A GeoTIFF/COG (by suffix .tif/.tiff) or a Zarr array/group (array ``image``), bands picked per the model."""
    if path.suffix.lower() in (".tif", ".tiff"):
        rasterio = need_rasterio()
        from rasterio.windows import Window

        src = rasterio.open(path)
        chans = [i + 1 for i in _pick(src.descriptions, package.bands, package.n_dates, index)]

        def read_tif(r: int, c: int, h: int, w: int) -> np.ndarray:
            return np.asarray(src.read(chans, window=Window(c, r, w, h)))

        t = src.transform
        return Scene(
            padded_read(read_tif, src.height, src.width, pad),
            src.height,
            src.width,
            src.crs.to_wkt(),
            [t.a, t.b, t.c, t.d, t.e, t.f],
            src.nodata,
        )
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except FileNotFoundError as err:
        raise InputError(f"{path} is neither a GeoTIFF (.tif) nor a Zarr store") from err
    arr: Any = node["image"] if isinstance(node, zarr.Group) else node
    attrs: dict[str, Any] = dict(arr.attrs)
    if arr.ndim not in (3, 4):
        raise InputError(f"{path}: expected a (C, H, W) or (T, C, H, W) array, got shape {arr.shape}")
    names = list(attrs.get("bands", [None] * arr.shape[-3]))
    per_date = arr.ndim == 4
    wanted = _pick(names if not per_date else names * arr.shape[0], package.bands, package.n_dates, index)
    if per_date and not index:
        wanted = [t * arr.shape[1] + names.index(b) for t in range(package.n_dates) for b in package.bands]

    def read_zarr(r: int, c: int, h: int, w: int) -> np.ndarray:
        block = np.asarray(arr[..., r : r + h, c : c + w]).reshape(-1, h, w)
        return block[wanted]

    h, w = arr.shape[-2:]
    nodata = attrs.get("nodata")
    return Scene(
        padded_read(read_zarr, h, w, pad), h, w, attrs.get("crs"), attrs.get("transform"),
        None if nodata is None else float(nodata),
    )  # fmt: skip


def valid_pixels(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) True where any channel holds data (finite and not ``nodata``); all True without a nodata value."""
    if nodata is None:
        return np.ones(block.shape[-2:], dtype=bool)
    has = np.isfinite(block) if np.isnan(nodata) else np.isfinite(block) & (block != nodata)
    return np.asarray(has.any(axis=0))


def band_means(
    block: np.ndarray, bands: Sequence[str], n_dates: int, nodata: float | None
) -> dict[str, np.ndarray]:
    """Each band's mean over the dates that hold data at a pixel (NaN where none does): the mask's operands."""
    stack = block.reshape(n_dates, len(bands), *block.shape[-2:]).astype(np.float64)
    ok = np.isfinite(stack) if nodata is None or np.isnan(nodata) else np.isfinite(stack) & (stack != nodata)
    count = ok.sum(axis=0)
    total = np.where(ok, stack, 0.0).sum(axis=0)
    means = np.full(total.shape, np.nan)
    np.divide(total, count, out=means, where=count > 0)
    return {b: means[i] for i, b in enumerate(bands)}


def package_mask(package: ModelPackage) -> str | None:
    """The band-math mask a package carries (``eoshard:mask`` in ``mlm:input``), if any."""
    mask = package.item["properties"]["mlm:input"][0].get("eoshard:mask")
    return str(mask) if mask else None


def predict(
    package: ModelPackage, source: Path, output: Path, tiling: Tiling, probabilities: bool = False,
    index: Sequence[int] | None = None, pad: str = "edge", mask: str | None = None,
) -> Path:  # fmt: skip
    """Predict ``source`` into ``output`` (.tif -> COG, .zarr -> Zarr array) with the input's georeferencing.

    Output pixels where the input holds no data, or where the band-math ``mask`` (default: the package's) is
    true, are nodata: 255 in a class map, NaN in probabilities and super-resolved bands.
    """
    from eoshard.training.bandmath import evaluate_mask, parse_mask

    scene = open_scene(Path(source), package, index, pad)
    s = package.scale
    sr = s > 1
    n_out = len(package.bands) if sr else int(package.item["properties"]["mlm:output"][0]["result"]["shape"][1])
    run = model_fn(package, probabilities=True)
    expression = mask or package_mask(package)
    tree = parse_mask(expression, package.bands) if expression else None
    transform = None
    if scene.transform is not None:
        a, b, c, d, e, f = scene.transform[:6]
        transform = [a / s, b / s, c, d / s, e / s, f]
    floats = probabilities or sr
    spec = OutputSpec(
        Path(output), (n_out if floats else 1, scene.height * s, scene.width * s), "float32" if floats else "uint8",
        scene.crs, transform, None if floats else package.classes, (package.out_bands or package.bands) if sr else None, tiling.block * s,
    )  # fmt: skip
    with open_writer(spec) as write:
        for row, col, values in blend(run, scene.read, scene.height, scene.width, n_out, tiling, s):
            h, w = values.shape[1] // s, values.shape[2] // s
            block = scene.read(row // s, col // s, h, w)
            off = ~valid_pixels(block, scene.nodata)
            if tree is not None:
                off |= evaluate_mask(tree, band_means(block, package.bands, package.n_dates, scene.nodata))
            off = off.repeat(s, 0).repeat(s, 1) if s > 1 else off
            out = values.astype("float32") if floats else values.argmax(0)[None].astype("uint8")
            out[:, off] = spec.nodata
            write(row, col, out)
    return Path(output)
