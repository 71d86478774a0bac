"""exactextract's shares against GEOS, and the decisions they feed settled exactly where float32 is too coarse."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import shapely.affinity
from affine import Affine
from shapely.geometry import Polygon, box

from eoshard.pipeline.coverage import parcel_shares, window_layers
from eoshard.pipeline.fractions import cell_claims
from tests.conftest import shared_path


def geos_layers(geoms: np.ndarray, attribute: np.ndarray, transform: Affine, shape: tuple[int, int]) -> dict:
    """The decisions of ``window_layers`` made from GEOS shares alone (double precision everywhere)."""
    best = np.full(shape, -1)
    best_share = np.zeros(shape)
    claims: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for index, geom in enumerate(geoms):
        for r, c, s in zip(*parcel_shares(geom, transform, shape), strict=True):
            claims.setdefault((int(r), int(c)), []).append((float(s), index))
            if s > best_share[r, c]:
                best[r, c], best_share[r, c] = index, s
    mixed = np.zeros(shape, bool)
    full = np.zeros(shape, bool)
    for (r, c), found in claims.items():
        mixed[r, c] = len({attribute[i] for _, i in found}) > 1
        full[r, c] = len(found) > 1 and any(s >= 1 - 1e-9 for s, _ in found)
    return {"best": best, "mixed": mixed, "full_and_claimed": full}


def test_a_hole_on_the_window_edge_gives_exact_shares() -> None:
    """The hole's side lies on the window's right edge: exactextract alone crashes the process on this."""
    geom = Polygon(box(3.3, 41.7, 57.1, 79.9).exterior, [box(20, 55, 31, 66).exterior])
    transform = Affine(4, 0, 0.0, 0, -4, 60.0)
    pixel, owner, shares = cell_claims(np.array([geom]), transform, (5, 5))
    assert set(owner.tolist()) == {0}
    rows, cols = np.divmod(pixel, 5)
    ref_rows, ref_cols, ref_shares = parcel_shares(geom, transform, (5, 5))
    cells = list(zip(rows.tolist(), cols.tolist(), strict=True))
    assert sorted(cells) == sorted(zip(ref_rows.tolist(), ref_cols.tolist(), strict=True))
    got = dict(zip(cells, shares.tolist(), strict=True))
    for r, c, s in zip(ref_rows.tolist(), ref_cols.tolist(), ref_shares.tolist(), strict=True):
        assert got[(r, c)] == pytest.approx(s, abs=1e-7)
    assert got[(4, 0)] == pytest.approx((4 - 3.3) * (44 - 41.7) / 16)  # the corner cell: 0.7 m x 2.3 m


def test_claims_name_each_polygon_by_its_place_among_all_given() -> None:
    """A polygon without area between two others is left out, and the others' claims keep their own indices."""
    first = box(1.5, 2.5, 9.5, 9.0)
    flat = Polygon([(0, 0), (10, 0), (20, 0)])  # no area: exactextract never sees it
    last = Polygon(box(12.0, 1.0, 19.0, 8.5).exterior, [box(14, 3, 16, 5).exterior])
    transform = Affine(4, 0, 0.0, 0, -4, 12.0)
    pixel, owner, shares = cell_claims(np.array([first, flat, last]), transform, (3, 5))
    assert sorted(set(owner.tolist())) == [0, 2]
    for n, geom in ((0, first), (2, last)):
        rows, cols, expected = parcel_shares(geom, transform, (3, 5))
        got = dict(zip(pixel[owner == n].tolist(), shares[owner == n].tolist(), strict=True))
        assert sorted(got) == sorted((rows * 5 + cols).tolist())
        for p, s in zip((rows * 5 + cols).tolist(), expected.tolist(), strict=True):
            assert got[p] == pytest.approx(s, abs=1e-7)


def test_a_collection_among_polygons_is_decided_as_geos_decides() -> None:
    """A geometry collection gets its shares from GEOS alone, beside exactextract's polygons, and the claims of
    both decide together: ties, mixes and double claims over the pixels they share."""
    collection = shapely.GeometryCollection([box(6.0, 2.0, 17.5, 13.0), shapely.LineString([(0, 0), (20, 20)])])
    geoms = np.array([box(1.0, 1.0, 10.0, 10.0), collection, box(12.0, 0.5, 19.0, 19.5), box(4.0, 4.0, 8.0, 8.0)])
    transform = Affine(2, 0, 0.0, 0, -2, 20.0)
    attribute = np.array([1, 2, 2, 3])
    got = window_layers(geoms, attribute, transform, (10, 10))
    expected = geos_layers(geoms, attribute, transform, (10, 10))
    for name, values in expected.items():
        np.testing.assert_array_equal(getattr(got, name), values, err_msg=name)
    assert got.mixed.any() and got.full_and_claimed.any() and (got.best == 1).any()


def test_a_split_cell_is_decided_as_geos_decides() -> None:
    """Two triangles halve a cell along its diagonal: a tie that float32 shares cannot break as doubles do."""
    left = Polygon([(0, 0), (10, 0), (0, 10)])
    right = Polygon([(10, 0), (10, 10), (0, 10)])
    skew = Polygon([(10, 0), (10, 10), (0, 10), (0, 9.999999)])  # a hair more than the half
    transform = Affine(10, 0, 0.0, 0, -10, 10.0)
    for geoms in (np.array([left, right]), np.array([right, left]), np.array([left, skew])):
        got = window_layers(geoms, np.array([1, 2]), transform, (1, 1))
        expected = geos_layers(geoms, np.array([1, 2]), transform, (1, 1))
        for name, values in expected.items():
            np.testing.assert_array_equal(getattr(got, name), values, err_msg=name)
    assert window_layers(np.array([left, skew]), np.array([1, 2]), transform, (1, 1)).best[0, 0] == 1


def test_real_parcels_at_2_5_m_decide_as_geos_decides() -> None:
    """Slovenian land-use polygons (holes, shared edges, slivers) on a 2.5 m grid, window by window."""
    parcels = gpd.read_file(shared_path("parcels", "si_raba_lulc_88polygons_epsg32633.gpkg"))
    geoms = shapely.make_valid(parcels.geometry.to_numpy())
    tree = shapely.STRtree(geoms)
    minx, miny, maxx, maxy = parcels.total_bounds
    checked = 0
    for y in np.arange(np.floor(maxy / 2.5) * 2.5, miny, -200.0)[:4]:
        for x in np.arange(np.floor(minx / 2.5) * 2.5, maxx, 200.0)[:4]:
            transform = Affine(2.5, 0, float(x), 0, -2.5, float(y))
            hits = np.sort(tree.query(box(x, y - 160, x + 160, y), predicate="intersects"))
            if hits.size == 0:
                continue
            attribute = hits % 3
            got = window_layers(geoms[hits], attribute, transform, (64, 64))
            expected = geos_layers(geoms[hits], attribute, transform, (64, 64))
            for name, values in expected.items():
                np.testing.assert_array_equal(getattr(got, name), values, err_msg=name)
            claims: dict[tuple[int, int], list[float]] = {}
            for g in geoms[hits]:
                for r, c, share in zip(*parcel_shares(g, transform, (64, 64)), strict=True):
                    claims.setdefault((int(r), int(c)), []).append(float(share))
            single = [(rc, found[0]) for rc, found in claims.items() if len(found) == 1]
            assert max(abs(got.coverage[rc] - share) for rc, share in single) <= 1e-7
            checked += int((got.best >= 0).sum())
    assert checked > 10_000  # the windows hold many parcels


def test_real_parcels_give_the_same_bytes_whatever_the_chunking() -> None:
    """A pixel's shares depend on it and its parcels only, not on the window exactextract was asked for."""
    from eoshard.pipeline.labels import rasterize_labels
    from tests.pipeline.test_labels_exact import _grid

    parcels = gpd.read_file(shared_path("parcels", "fr_rpg_lpis_iacs_193parcels_epsg2154.gpkg"))
    parcels["code"] = parcels["code_group"].astype(np.int64)
    grid = _grid(859_103.0, 6_522_404.0, 150, 10.0, "EPSG:2154")  # off the parcels' 10 m vertex lattice
    results = [
        rasterize_labels(parcels, grid, class_column="code", id_column="id", chunksize=c).compute(
            scheduler="synchronous"
        )
        for c in (150, 64, 17)
    ]
    assert int((results[0]["parcel_id"] != 0).sum()) > 5_000
    for other in results[1:]:
        for name in results[0].data_vars:
            np.testing.assert_array_equal(other[name].values, results[0][name].values, err_msg=name)


@pytest.mark.parametrize(
    "name", ["si_raba_lulc_88polygons_epsg32633.gpkg", "fr_rpg_lpis_iacs_193parcels_epsg2154.gpkg"]
)
def test_polygons_as_wkb_give_exactextract_the_same_shares_as_its_geojson_features(name: str) -> None:
    """``WkbFeatureSource`` hands exactextract the same doubles its own GeoJSON features do: every parcel's cells and
    float32 shares are equal, bit for bit, holes and multipolygons included."""
    from exactextract import exact_extract
    from exactextract.feature import JSONFeatureSource
    from exactextract.raster import NumPyRasterSource

    from eoshard.pipeline.wkb_features import WkbFeatureSource

    parcels = gpd.read_file(shared_path("parcels", name)).geometry.to_numpy()
    holed = parcels[2].difference(parcels[2].centroid.buffer(4))  # a parcel with a hole
    pair = shapely.MultiPolygon([parcels[0], shapely.affinity.translate(parcels[0], 500.0)])  # and a multipolygon
    assert shapely.get_num_interior_rings(holed) == 1 and pair.is_valid
    geoms = np.array([*parcels, holed, pair])
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    width, height = int((maxx - minx) // 2.5) + 3, int((maxy - miny) // 2.5) + 3
    raster = NumPyRasterSource(
        np.zeros((height, width), np.uint8),
        xmin=minx - 2.5, ymin=maxy + 2.5 - height * 2.5, xmax=minx - 2.5 + width * 2.5, ymax=maxy + 2.5,
    )  # fmt: skip
    as_json = JSONFeatureSource(
        [{"type": "Feature", "properties": {"n": n}, "geometry": g.__geo_interface__} for n, g in enumerate(geoms)]
    )
    as_wkb = WkbFeatureSource(list(enumerate(shapely.to_wkb(geoms))))
    tables = [
        exact_extract(raster, source, ["cell_id", "coverage"], include_cols=["n"], output="pandas")
        for source in (as_json, as_wkb)
    ]
    assert tables[0]["n"].tolist() == tables[1]["n"].tolist() == list(range(len(geoms)))
    for column in ("cell_id", "coverage"):
        for a, b in zip(tables[0][column], tables[1][column], strict=True):
            assert np.asarray(a).size > 0
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
