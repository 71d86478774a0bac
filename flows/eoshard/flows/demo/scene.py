"""Render Sentinel-2 L2A-like pixels of the demo world for one tile and one acquisition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import geopandas as gpd
import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize

from eoshard.flows.demo.world import WORLD_CRS, World

# Band name -> native resolution in metres, in the order of the ESA product.
BAND_RESOLUTIONS: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20,
}  # fmt: skip
SCL_RESOLUTION = 20
BOA_ADD_OFFSET = 1000  # processing baseline >= 04.00: DN = reflectance * 10000 + 1000
QUANTIFICATION = 10_000

_SPECTRA = {  # reflectance per band, in BAND_RESOLUTIONS order
    "soil": [0.10, 0.12, 0.15, 0.19, 0.22, 0.24, 0.26, 0.28, 0.29, 0.30, 0.34, 0.28],
    "veg": [0.03, 0.04, 0.07, 0.04, 0.10, 0.30, 0.40, 0.45, 0.46, 0.46, 0.22, 0.11],
    "forest": [0.02, 0.03, 0.05, 0.03, 0.08, 0.22, 0.28, 0.32, 0.33, 0.33, 0.15, 0.07],
    "water": [0.06, 0.06, 0.05, 0.03, 0.02, 0.015, 0.012, 0.01, 0.01, 0.01, 0.005, 0.003],
    "road": [0.15, 0.17, 0.19, 0.21, 0.22, 0.23, 0.24, 0.25, 0.25, 0.26, 0.28, 0.26],
    "cloud": [0.55, 0.60, 0.60, 0.62, 0.63, 0.64, 0.65, 0.66, 0.66, 0.50, 0.45, 0.35],
}
# class code -> (peak vegetation fraction, day of year of the peak, width in days)
_PHENOLOGY = {1: (0.95, 140, 45), 2: (0.9, 215, 40), 3: (0.85, 115, 40), 4: (0.7, 170, 200),
              5: (0.85, 225, 45), 6: (0.8, 190, 35)}  # fmt: skip

SCL_NODATA, SCL_SHADOW, SCL_VEG, SCL_BARE, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10


@dataclass(frozen=True)
class Tile:
    """An MGRS tile excerpt: its name, UTM CRS and 10 m grid (origin at a multiple of 60 m)."""

    name: str
    epsg: int
    x0: float
    y0: float
    size: int = 540  # pixels at 10 m

    def transform(self, resolution: int) -> Affine:
        return Affine(resolution, 0.0, self.x0, 0.0, -resolution, self.y0)

    def shape(self, resolution: int) -> tuple[int, int]:
        n = self.size * 10 // resolution
        return (n, n)


@dataclass(frozen=True)
class Acquisition:
    """One overpass: when, how cloudy, and whether the swath edge cuts the tiles."""

    start: datetime
    cloud_target: float
    swath_edge_x: float | None  # world x (EPSG:32632) east of which the swath has no data
    seed: int


@dataclass(frozen=True)
class Scene:
    """The uint16 pixels of one product: band name (and ``SCL``) -> 2-D array at native resolution."""

    arrays: dict[str, np.ndarray]
    cloud_cover: float
    nodata_percentage: float


def _world_coords(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """World (EPSG:32632) coordinates of the tile's 10 m pixel centres."""
    idx = np.arange(tile.size) * 10.0 + 5.0
    xs, ys = np.meshgrid(tile.x0 + idx, tile.y0 - idx)
    if f"EPSG:{tile.epsg}" == WORLD_CRS:
        return xs, ys
    to_world = Transformer.from_crs(tile.epsg, WORLD_CRS, always_xy=True)
    wx, wy = to_world.transform(xs.ravel(), ys.ravel())
    return np.asarray(wx).reshape(xs.shape), np.asarray(wy).reshape(ys.shape)


def _land_cover(world: World, tile: Tile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class code, parcel index (+1, 0 = none) and a water/road code (1 water, 2 road) on the 10 m grid."""
    crs = f"EPSG:{tile.epsg}"
    shape, transform = tile.shape(10), tile.transform(10)
    parcels = world.parcels.to_crs(crs)
    codes = rasterize(
        zip(parcels.geometry, parcels["class_code"], strict=True), shape, transform=transform, dtype="int32"
    )
    index = rasterize(
        zip(parcels.geometry, np.arange(1, len(parcels) + 1), strict=True), shape, transform=transform,
        dtype="int32",
    )  # fmt: skip
    other = gpd.GeoSeries([world.water, world.roads], crs=WORLD_CRS).to_crs(crs)
    cover = rasterize(zip(other, [1, 2], strict=True), shape, transform=transform, dtype="uint8")
    return codes, index, cover


@dataclass(frozen=True)
class TileLayers:
    """What a tile's scenes share whatever the date: world coordinates of its 10 m pixels and its land cover (see
    ``_world_coords`` and ``_land_cover``), read-only."""

    world: World
    wx: np.ndarray
    wy: np.ndarray
    codes: np.ndarray
    index: np.ndarray
    cover: np.ndarray


_layers: dict[Tile, TileLayers] = {}


def tile_layers(world: World, tile: Tile) -> TileLayers:
    """The tile's layers, made once per world and tile (every acquisition of a tile used to make them again)."""
    found = _layers.get(tile)
    if found is None or found.world is not world:
        if len(_layers) >= 8:
            _layers.clear()
        arrays = (*_world_coords(tile), *_land_cover(world, tile))
        for array in arrays:
            array.flags.writeable = False
        found = _layers[tile] = TileLayers(world, *arrays)
    return found


def _vegetation(codes: np.ndarray, index: np.ndarray, doy: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    vigour = np.concatenate([[1.0], rng.uniform(0.8, 1.1, index.max())])[index]
    veg = np.full(codes.shape, 0.75, dtype=np.float32)  # unlabelled land: forest and meadows
    for code, (peak, centre, width) in _PHENOLOGY.items():
        value = peak * np.exp(-(((doy - centre) / width) ** 2))
        veg[codes == code] = value
    return np.clip(veg * vigour, 0.0, 1.0).astype(np.float32)


def _cloud_density(wx: np.ndarray, wy: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Smooth cloud field in world coordinates, so both tiles of an overpass see the same clouds."""
    rng = np.random.default_rng(acq.seed)
    density = np.zeros(wx.shape, dtype=np.float64)
    n = int(4 + 40 * acq.cloud_target)
    for cx, cy, r in zip(
        rng.uniform(718_000, 729_000, n), rng.uniform(5_319_000, 5_327_000, n), rng.uniform(400, 1500, n),
        strict=True,
    ):  # fmt: skip
        density += np.exp(-((wx - cx) ** 2 + (wy - cy) ** 2) / (2 * r * r))
    if acq.cloud_target <= 0.0:
        return np.zeros_like(density)
    threshold = np.quantile(density, 1.0 - acq.cloud_target) if acq.cloud_target < 1 else -1.0
    return np.clip((density - threshold) / max(threshold, 1e-6), 0.0, 1.0)


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape[-2] // k, a.shape[-1] // k
    return a.reshape(*a.shape[:-2], h, k, w, k).mean(axis=(-3, -1))


def _block_any(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape[0] // k, a.shape[1] // k
    return np.asarray(a.reshape(h, k, w, k).any(axis=(1, 3)))


def render_scene(world: World, tile: Tile, acq: Acquisition) -> Scene:
    """Pixels of the tile at the acquisition: fields follow their phenology, clouds and swath edges apply."""
    layers = tile_layers(world, tile)
    wx, wy, codes, index, cover = layers.wx, layers.wy, layers.codes, layers.index, layers.cover
    doy = acq.start.timetuple().tm_yday
    veg = _vegetation(codes, index, doy)
    cloud = _cloud_density(wx, wy, acq)
    shadow = (_cloud_density(wx + 350.0, wy - 250.0, acq) > 0.2) & (cloud < 0.05)
    nodata = (
        np.zeros(wx.shape, bool) if acq.swath_edge_x is None else wx + 0.3 * (wy - 5_322_000) > acq.swath_edge_x
    )

    rng = np.random.default_rng(acq.seed * 1000 + tile.epsg)
    spectra = {k: np.asarray(v, dtype=np.float32)[:, None, None] for k, v in _SPECTRA.items()}
    ground = spectra["soil"] * (1 - veg) + spectra["veg"] * veg
    ground = np.where(codes == 0, spectra["forest"] * 0.8 + spectra["soil"] * 0.2, ground)
    ground = np.where(cover == 1, spectra["water"], ground)
    ground = np.where(cover == 2, spectra["road"], ground)
    rows = 0.008 * np.sin(wx / 18.0).astype(np.float32)  # sowing rows: texture within fields
    ground = ground * (1 + rows) + rng.normal(0, 0.006, ground.shape).astype(np.float32)
    ground = np.where(shadow, ground * 0.45, ground)
    alpha = np.clip(cloud * 1.6, 0, 1).astype(np.float32)
    refl = ground * (1 - alpha) + spectra["cloud"] * alpha

    scl10 = np.where(veg > 0.3, SCL_VEG, SCL_BARE).astype(np.uint8)
    scl10[cover == 1] = SCL_WATER
    scl10[shadow] = SCL_SHADOW
    scl10[(cloud > 0) & (cloud < 0.15)] = SCL_CIRRUS
    scl10[cloud >= 0.15] = SCL_CLOUD_MEDIUM
    scl10[cloud >= 0.5] = SCL_CLOUD_HIGH

    arrays: dict[str, np.ndarray] = {}
    for i, (band, res) in enumerate(BAND_RESOLUTIONS.items()):
        k = res // 10
        values = _block_mean(refl[i], k) if k > 1 else refl[i]
        dn = np.clip(np.round(values * QUANTIFICATION) + BOA_ADD_OFFSET, 1, 65535).astype(np.uint16)
        dn[_block_any(nodata, k) if k > 1 else nodata] = 0
        arrays[band] = dn
    nodata20 = _block_any(nodata, 2)
    scl = scl10[::2, ::2].copy()
    scl[nodata20] = SCL_NODATA
    arrays["SCL"] = scl
    valid = scl != SCL_NODATA
    cloudy = np.isin(scl, [SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS]) & valid
    cloud_cover = 100.0 * cloudy.sum() / max(valid.sum(), 1)
    return Scene(arrays, round(float(cloud_cover), 4), round(100.0 * float((~valid).mean()), 4))
