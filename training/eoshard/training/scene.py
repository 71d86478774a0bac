"""``eoshard-train predict``: read a GeoTIFF/COG (rasterio, optional extra) or a Zarr cube, write a COG or Zarr."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eoshard.training.allocator import keep_freed_memory
from eoshard.training.band_names import bands_named, described
from eoshard.training.distributed import pick_device
from eoshard.training.errors import ConfigError, InputError
from eoshard.training.memory_errors import out_of_memory_told
from eoshard.training.outputs import OutputSpec, need_rasterio, open_writer
from eoshard.training.package import ModelPackage
from eoshard.training.predict import PAD_MODES, Reader, Tiling, blend, model_fn, padded_read
from eoshard.training.scene_attrs import scene_attrs
from eoshard.training.zarr_windows import ChunkWindows, cache_budget, row_span


@dataclass(frozen=True)
class Scene:
    """An input scene: a padded window reader, its size, CRS (WKT or EPSG string) and affine transform (6 values)."""

    read: Reader
    height: int
    width: int
    crs: str | None
    transform: list[float] | None
    nodata: float | None = None  # the input's nodata value (NaN for float scenes), None when it declares none
    dates: list[str] | None = None  # the acquisition times of the input, where it says (``eoshard predict``'s)
    close: Callable[[], None] = lambda: None  # lets go of the file and of what reading it changed in the process


def _pick(
    names: Sequence[str | None], wanted: list[str], n_dates: int, index: Sequence[int] | None, n_channels: int,
    common_names: Mapping[str, str] | None = None,
) -> list[int]:  # fmt: skip
    """0-based channel indices of the model's input (``n_dates`` x ``wanted``, date after date): the explicit
    (1-based) ``index``, else the bands named in ``names`` (each date's block of channels in turn; a name may be a
    wanted band's common name), else, where no channel is named, the channels in order."""
    need = n_dates * len(wanted)
    if index:
        return _checked_index(index, need, n_channels)
    if any(names):
        return _by_name(names, wanted, n_dates, common_names or {})
    if len(names) == need:
        if need > 1:
            warnings.warn(UnnamedBandsWarning(_in_file_order(wanted, n_dates)), stacklevel=3)
        return list(range(need))
    raise InputError(
        f"the input has {len(names)} unnamed bands, the model needs {len(wanted)} bands {wanted} x {n_dates} dates "
        f"= {need}: name the bands (GeoTIFF descriptions / Zarr attrs 'bands') or pass --band-index"
    )


class UnnamedBandsWarning(UserWarning):
    """A scene's bands carry no names: they are taken in the file's order."""


class EmptyMapWarning(UserWarning):
    """Every pixel of a prediction is nodata: the input holds none, or the mask covers it all."""


def _in_file_order(wanted: list[str], n_dates: int) -> str:
    order = ", ".join(wanted) + (f" for each of {n_dates} dates in turn" if n_dates > 1 else "")
    return (
        f"the input's bands carry no names: read in the file's order as {order}; if that is not their order, name "
        "them (GeoTIFF band descriptions / Zarr attrs 'bands') or pass --band-index"
    )


def _checked_index(index: Sequence[int], need: int, n_channels: int) -> list[int]:
    if len(index) != need:
        raise InputError(
            f"--band-index lists {len(index)} bands, the model needs {need} (its bands, date after date): pass {need}"
        )
    wrong = [i for i in index if not 1 <= i <= n_channels]
    if wrong:
        raise InputError(f"--band-index {wrong} out of range: the input has bands 1 to {n_channels}")
    return [i - 1 for i in index]


def _by_name(
    names: Sequence[str | None], wanted: list[str], n_dates: int, common_names: Mapping[str, str]
) -> list[int]:
    """Channels of ``wanted`` found by name, or by common name, in each of ``n_dates`` equal blocks of ``names``
    (dates in turn)."""
    if len(names) % n_dates:
        raise InputError(
            f"the input's {len(names)} bands do not split into the model's {n_dates} dates of equal band count: "
            "store the dates one after the other, each with the same bands, or pass --band-index"
        )
    per = len(names) // n_dates
    picked = []
    for t in range(n_dates):
        block = list(names[t * per : (t + 1) * per])
        stored = [_stored_name(n, wanted, common_names) for n in block]
        missing = [b for b in wanted if b not in stored]
        if missing:
            where = f"date {t + 1} of {n_dates} (bands {t * per + 1} to {(t + 1) * per}) " if n_dates > 1 else ""
            raise InputError(
                f"the input's {where}bands {block} lack the model's bands {missing}: name the bands "
                f"{described(wanted, common_names)} (GeoTIFF descriptions / Zarr attrs 'bands') or pass --band-index"
            )
        picked += [t * per + stored.index(b) for b in wanted]
    return picked


def _stored_name(name: str | None, wanted: list[str], common_names: Mapping[str, str]) -> str | None:
    """The model's band a channel's ``name`` stands for (itself, or the one band whose common name it is)."""
    same = bands_named(name, wanted, common_names) if name else []
    return same[0] if len(same) == 1 else name


def open_scene(path: Path, package: ModelPackage, index: Sequence[int] | None = None, pad: str = "edge") -> Scene:
    """A GeoTIFF/COG (by suffix .tif/.tiff) or a Zarr array/group (array ``image``), bands picked per the model."""
    if pad not in PAD_MODES:
        raise ConfigError(f"--pad {pad!r} unknown: expected one of {', '.join(PAD_MODES)} (numpy.pad modes)")
    if path.suffix.lower() in (".tif", ".tiff"):
        return _open_tif(path, package, index, pad)
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except FileNotFoundError as err:
        raise InputError(f"{path} is neither a GeoTIFF (.tif) nor a Zarr store") from err
    arr: Any = node["image"] if isinstance(node, zarr.Group) else node
    _real_numbers(path, arr.dtype)
    if arr.ndim not in (3, 4):
        raise InputError(f"{path}: expected a (C, H, W) or (T, C, H, W) array, got shape {arr.shape}")
    attrs = scene_attrs(path, dict(arr.attrs), arr.shape[-3])
    names: list[str | None] = list(attrs.bands) if attrs.bands is not None else [None] * arr.shape[-3]
    if arr.ndim == 4:  # (T, C, H, W): the model's dates are the first ones
        if arr.shape[0] < package.n_dates and not index:
            raise InputError(f"{path} holds {arr.shape[0]} dates, the model needs {package.n_dates}")
        names = names * min(arr.shape[0], package.n_dates)
    n_channels = int(np.prod(arr.shape[:-2]))
    wanted = _pick(names, package.bands, package.n_dates, index, n_channels, package.common_names)

    h, w = arr.shape[-2:]
    return Scene(
        padded_read(ChunkWindows(arr, wanted), h, w, pad), h, w, attrs.crs, attrs.transform, attrs.nodata_value,
        attrs.dates[: package.n_dates] if attrs.dates else None,  # the dates the model reads
    )  # fmt: skip


def _real_numbers(path: Path, dtype: Any) -> None:
    """Refuse values a model cannot take: complex ones (a SAR SLC: numpy dropped their imaginary part with a
    warning), text or booleans."""
    kind = "c" if str(dtype).startswith("complex") else np.dtype(dtype).kind  # rasterio's complex_int16 too
    if kind not in "uif":
        advice = "take their amplitude (abs) first" if kind == "c" else "convert the bands to numbers first"
        raise InputError(f"{path} holds {dtype} values where the model takes real numbers: {advice}")


def _open_tif(path: Path, package: ModelPackage, index: Sequence[int] | None, pad: str) -> Scene:
    rasterio = need_rasterio()
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    try:
        src = rasterio.open(path)
    except RasterioIOError as err:
        raise InputError(f"{path} cannot be opened as a GeoTIFF ({err}): pass an existing GeoTIFF/COG") from err
    try:
        _real_numbers(path, src.dtypes[0])
        picked = _pick(src.descriptions, package.bands, package.n_dates, index, src.count, package.common_names)
    except InputError:
        src.close()
        raise
    chans = [i + 1 for i in picked]

    cache_raised, cache_before = False, None

    def read_tif(r: int, c: int, h: int, w: int) -> np.ndarray:
        nonlocal cache_raised, cache_before
        if not cache_raised:  # at the first window: how tall the windows are is known from there
            cache_before = raise_gdal_cache(min(gdal_rows_bytes(src, len(chans), h), cache_budget()))
            cache_raised = True
        return np.asarray(src.read(chans, window=Window(c, r, w, h)))

    def close() -> None:
        from rasterio.env import set_gdal_config

        src.close()
        if cache_before is not None:  # GDAL drops the blocks past it
            set_gdal_config("GDAL_CACHEMAX", cache_before)

    t = src.transform
    return Scene(
        padded_read(read_tif, src.height, src.width, pad),
        src.height,
        src.width,
        src.crs.to_wkt() if src.crs else None,
        [t.a, t.b, t.c, t.d, t.e, t.f],
        src.nodata,
        close=close,
    )


def gdal_rows_bytes(src: Any, n_channels: int, height: int) -> int:
    """The decoded blocks of ``src`` that a row of windows ``height`` tall can span across the file (what GDAL's
    block cache must hold to decode each block once: see ``raise_gdal_cache``). A pixel-interleaved file's block
    holds every band, and GDAL caches them all when it decodes one."""
    from rasterio.enums import Interleaving

    bh, bw = src.block_shapes[0]
    bands = src.count if src.interleaving == Interleaving.pixel else n_channels
    return row_span(height, src.width, bh, bw) * bh * bw * bands * np.dtype(src.dtypes[0]).itemsize


def raise_gdal_cache(size: int) -> int | None:
    """GDAL's block cache (``GDAL_CACHEMAX``, 5 % of the memory by default) to at least ``size`` bytes; returns the
    size it had when it was raised (None: it was large enough), which the scene's ``close`` sets back.

    Windows overlap and come row after row, as in a Zarr scene (``zarr_windows``): with too small a cache GDAL let
    go of the blocks the next row of windows needed, and decoded them again. A model of 12 dates x 10 bands on 2048
    rows of a quarter tile's width (512 px blocks of all 120 bands; a row of 256 px windows spans 1440 MiB of them,
    the default cache holds 1205 MiB here): 47.1-49.9 s, 33.7-34.0 s with the cache raised (240 MiB more peak
    memory). Within ``cache_budget`` (a quarter of the available memory), and never lowered (a process may have
    set it); the scene's ``close`` sets it back, so a notebook's later reads keep their own cache."""
    from rasterio.env import get_gdal_config, set_gdal_config

    before = int(get_gdal_config("GDAL_CACHEMAX") or 0)
    if size <= before:
        return None
    set_gdal_config("GDAL_CACHEMAX", size)  # rasterio sets GDAL's cache size itself (GDALSetCacheMax64)
    return before


def _holds_data(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where a value is data: finite and not ``nodata`` (NaN and infinities are no data whether the input
    declares a nodata value or not)."""
    has = np.isfinite(values)
    if nodata is not None and not np.isnan(nodata):
        has &= values != nodata
    return has


def valid_pixels(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) True where any channel holds data."""
    return np.asarray(_holds_data(block, nodata).any(axis=0))


def band_means(
    block: np.ndarray, bands: Sequence[str], n_dates: int, nodata: float | None
) -> dict[str, np.ndarray]:
    """Each band's mean over the dates that hold data at a pixel (NaN where none does): the mask's operands."""
    stack = block.reshape(n_dates, len(bands), *block.shape[-2:]).astype(np.float64)
    ok = _holds_data(stack, nodata)
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
    on_tile: Callable[[int, int], None] | None = None, device: str = "auto", batch_size: int | None = None,
) -> Path:  # fmt: skip
    """Predict ``source`` into ``output`` (.tif -> COG, .zarr -> Zarr array) with the input's georeferencing.

    Output pixels where the input holds no data, or where the band-math ``mask`` (default: the package's) is
    true, are nodata: 255 in a class map, NaN in probabilities and super-resolved bands. ``on_tile(done, total)``
    follows the model's passes over the tiles. The model runs on ``device`` (``auto``: a GPU when torch sees one),
    ``batch_size`` tiles per pass (default: 1 on the CPU, where larger batches were no faster, 8 on a GPU).
    """
    if Path(output).suffix.lower() not in (".tif", ".tiff", ".zarr"):
        raise ConfigError(
            f"the output {output} ends in {Path(output).suffix or 'no suffix'}: give a .tif (a Cloud-Optimized "
            "GeoTIFF) or a .zarr path"
        )
    keep_freed_memory()
    scene = open_scene(Path(source), package, index, pad)
    at_once = f"{batch_size} at a time" if batch_size is not None else "as many at a time as the device's default"
    try:
        with out_of_memory_told(
            lambda said: (
                f"tiles of {tiling.block} x {tiling.block} px, {at_once}, need more memory than there is "
                f"({said}): predict with a smaller --block (256 by default) or --batch-size"
            )
        ):
            return _predict_scene(scene, package, output, tiling, probabilities, mask, on_tile, device, batch_size)
    finally:
        scene.close()


def _predict_scene(
    scene: Scene, package: ModelPackage, output: Path, tiling: Tiling, probabilities: bool, mask: str | None,
    on_tile: Callable[[int, int], None] | None, device: str, batch_size: int | None,
) -> Path:  # fmt: skip
    from eoshard.training.bandmath import evaluate_mask, parse_mask

    s = package.scale
    sr = s > 1
    n_out = len(package.bands) if sr else int(package.item["properties"]["mlm:output"][0]["result"]["shape"][1])
    dev = pick_device(device)
    batch = batch_size if batch_size is not None else (1 if dev.type == "cpu" else 8)
    if batch < 1:
        raise ConfigError(
            f"the batch size is how many tiles go through the model at once, at least 1, not {batch}"
        )
    run = model_fn(package, probabilities=True, device=dev)
    expression = mask or package_mask(package)
    tree = parse_mask(expression, package.bands, package.common_names) if expression else None
    transform = None
    if scene.transform is not None:
        a, b, c, d, e, f = scene.transform[:6]
        transform = [a / s, b / s, c, d / s, e / s, f]
    floats = probabilities or sr
    spec = OutputSpec(
        Path(output), (n_out if floats else 1, scene.height * s, scene.width * s), "float32" if floats else "uint8",
        scene.crs, transform, None if floats else package.classes, (package.out_bands or package.bands) if sr else None, tiling.block * s,
        scene.dates,
    )  # fmt: skip
    holding = mapped = 0  # input pixels that hold data, and those the mask leaves too
    with open_writer(spec) as write:
        for row, col, values in blend(
            run, scene.read, scene.height, scene.width, n_out, tiling, s, on_tile=on_tile, batch=batch
        ):
            h, w = values.shape[1] // s, values.shape[2] // s
            block = scene.read(row // s, col // s, h, w)
            off = ~valid_pixels(block, scene.nodata)
            holding += off.size - int(off.sum())
            if tree is not None:
                off |= evaluate_mask(tree, band_means(block, package.bands, package.n_dates, scene.nodata))
            mapped += off.size - int(off.sum())
            off = off.repeat(s, 0).repeat(s, 1) if s > 1 else off
            out = values.astype("float32") if floats else values.argmax(0)[None].astype("uint8")
            out[:, off] = spec.nodata
            write(row, col, out)
    if not mapped:
        why = "no pixel of the input holds data" if not holding else f"the mask {expression!r} covers every pixel"
        warnings.warn(EmptyMapWarning(f"{why}: {output} is nodata throughout"), stacklevel=3)
    return Path(output)
