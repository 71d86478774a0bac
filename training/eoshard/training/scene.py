"""``eoshard-train predict``: read a GeoTIFF/COG (rasterio, optional extra) or a Zarr cube, write a COG or Zarr."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eoshard.training.errors import InputError
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


def _need_rasterio() -> Any:
    try:
        import rasterio
    except ImportError as err:
        raise InputError(
            "GeoTIFF input/output needs rasterio: install the extra with `pip install 'eoshard-training[geotiff]'` "
            "or use a Zarr input and a .zarr output"
        ) from err
    return rasterio


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
        rasterio = _need_rasterio()
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
    return Scene(padded_read(read_zarr, h, w, pad), h, w, attrs.get("crs"), attrs.get("transform"))


def predict(
    package: ModelPackage, source: Path, output: Path, tiling: Tiling, probabilities: bool = False,
    index: Sequence[int] | None = None, pad: str = "edge",
) -> Path:  # fmt: skip
    """Predict ``source`` into ``output`` (.tif -> COG, .zarr -> Zarr array) with the input's georeferencing."""
    scene = open_scene(Path(source), package, index, pad)
    s = package.scale
    sr = s > 1
    n_out = len(package.bands) if sr else int(package.item["properties"]["mlm:output"][0]["result"]["shape"][1])
    run = model_fn(package, probabilities=True)
    transform = None
    if scene.transform is not None:
        a, b, c, d, e, f = scene.transform[:6]
        transform = [a / s, b / s, c, d / s, e / s, f]
    bands_out = n_out if (probabilities or sr) else 1
    dtype = "float32" if (probabilities or sr) else "uint8"
    shape = (bands_out, scene.height * s, scene.width * s)
    writer = _cog_writer if Path(output).suffix.lower() in (".tif", ".tiff") else _zarr_writer
    with writer(Path(output), shape, dtype, scene.crs, transform, (tiling.block * s, tiling.block * s)) as write:
        for row, col, values in blend(run, scene.read, scene.height, scene.width, n_out, tiling, s):
            write(row, col, values if (probabilities or sr) else values.argmax(0)[None].astype("uint8"))
    return Path(output)


class _zarr_writer:  # noqa: N801 - used like a function
    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        dtype: str,
        crs: str | None,
        transform: Any,
        chunk: tuple[int, int],
    ) -> None:
        import zarr

        self.arr = zarr.create_array(str(path), shape=shape, dtype=dtype, chunks=(1, *chunk), overwrite=True)
        self.arr.attrs.update({"crs": crs, "transform": transform})

    def __enter__(self) -> Any:
        return lambda row, col, v: self.arr.__setitem__(
            (slice(None), slice(row, row + v.shape[1]), slice(col, col + v.shape[2])), v
        )

    def __exit__(self, *exc: object) -> None:
        return None


class _cog_writer:  # noqa: N801 - used like a function
    """Write blocks into a tiled temporary GeoTIFF, then copy it to a COG (GDAL's COG driver) on exit."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        dtype: str,
        crs: str | None,
        transform: Any,
        chunk: tuple[int, int],
    ) -> None:
        self.rasterio = _need_rasterio()
        from affine import Affine

        self.path = path
        self.tmp = tempfile.TemporaryDirectory()
        self.tmp_path = Path(self.tmp.name) / "strips.tif"
        profile = {
            "driver": "GTiff", "count": shape[0], "height": shape[1], "width": shape[2], "dtype": dtype,
            "crs": crs, "transform": Affine(*transform) if transform else None, "tiled": True,
            "blockxsize": 256, "blockysize": 256,
        }  # fmt: skip
        self.dst = self.rasterio.open(self.tmp_path, "w", **profile)

    def __enter__(self) -> Any:
        from rasterio.windows import Window

        def write(row: int, col: int, values: np.ndarray) -> None:
            self.dst.write(values, window=Window(col, row, values.shape[2], values.shape[1]))

        return write

    def __exit__(self, *exc: object) -> None:
        from rasterio.shutil import copy

        self.dst.close()
        if exc[0] is None:
            copy(self.tmp_path, self.path, driver="COG", compress="deflate")
        self.tmp.cleanup()
