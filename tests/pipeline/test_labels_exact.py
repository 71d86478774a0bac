"""Label layers against an independent exact reference: a plain per-pixel loop of shapely intersections."""

from __future__ import annotations

import pickle
import warnings

import geopandas as gpd
import numpy as np
import pytest
import shapely
from dask.base import tokenize
from odc.geo.geobox import GeoBox
from odc.geo.geom import BoundingBox
from shapely.geometry import Polygon, box

from eoshard.pipeline.label_windows import label_window
from eoshard.pipeline.labels import label_source, prepare_parcels, rasterize_labels
from tests.conftest import shared_path
from tests.laziness import computing_forbidden


def reference(parcels: gpd.GeoDataFrame, grid: GeoBox, class_column: str, id_column: str) -> dict[str, np.ndarray]:
    """Per pixel: every parcel's exact share; the biggest wins (first in id order on ties)."""
    parcels = parcels.to_crs(str(grid.crs)).sort_values(id_column, kind="stable")
    geoms = [shapely.make_valid(g) for g in parcels.geometry]
    codes, ids = parcels[class_column].to_numpy(), parcels[id_column].to_numpy()
    ny, nx = grid.shape
    t = grid.transform
    out = {
        "class": np.zeros((ny, nx), np.int32), "parcel_id": np.zeros((ny, nx), np.int64),
        "coverage": np.zeros((ny, nx)), "double_partial": np.zeros((ny, nx), bool),
        "double_full": np.zeros((ny, nx), bool),
    }  # fmt: skip
    tree = shapely.STRtree(geoms)
    for r in range(ny):
        for c in range(nx):
            cell = box(t.c + c * t.a, t.f + (r + 1) * t.e, t.c + (c + 1) * t.a, t.f + r * t.e)
            shares = []
            for i in sorted(tree.query(cell)):
                share = cell.intersection(geoms[i]).area / cell.area
                if share > 1e-9:
                    shares.append((share, i))
            if not shares:
                continue
            best = max(shares, key=lambda s: (s[0], -s[1]))[1]
            out["class"][r, c], out["parcel_id"][r, c] = codes[best], ids[best]
            out["coverage"][r, c] = (
                shapely.union_all([cell.intersection(geoms[i]) for _, i in shares]).area / cell.area
            )
            out["double_partial"][r, c] = len({codes[i] for _, i in shares}) > 1
            out["double_full"][r, c] = len(shares) > 1 and any(s >= 1 - 1e-9 for s, _ in shares)
    return out


def assert_equal_to_reference(parcels, grid, class_column: str, id_column: str, chunksize: int = 64) -> None:
    got = rasterize_labels(parcels, grid, class_column=class_column, id_column=id_column, chunksize=chunksize)
    expected = reference(parcels, grid, class_column, id_column)
    computed = got.compute(scheduler="synchronous")
    assert float(np.abs(computed["coverage"].values - expected["coverage"]).max()) <= 1e-6
    for name in ("class", "parcel_id", "double_partial", "double_full"):
        np.testing.assert_array_equal(computed[name].values, expected[name], err_msg=name)


def _grid(x0: float, y0: float, size: int, res: float, crs: str) -> GeoBox:
    return GeoBox.from_bbox(BoundingBox(x0, y0, x0 + size * res, y0 + size * res, crs), crs, resolution=res)


def test_real_french_lpis_parcels() -> None:
    parcels = gpd.read_file(shared_path("parcels", "fr_rpg_lpis_iacs_193parcels_epsg2154.gpkg"))
    parcels["code"] = parcels["code_group"].astype(np.int64)  # crop group codes, as the RPG publishes them
    # a 1.2 km window where the parcels are dense, off the 10 m lattice of the parcel vertices
    grid = _grid(859_103.0, 6_522_404.0, 120, 10.0, "EPSG:2154")
    assert_equal_to_reference(parcels, grid, "code", "id", chunksize=50)
    got = rasterize_labels(parcels, grid, class_column="code", id_column="id").compute()
    assert len(np.unique(got["parcel_id"].values)) > 20  # the window holds many parcels
    assert 0.3 < float(got["coverage"].values.mean()) < 1.0


def _synthetic() -> gpd.GeoDataFrame:
    geoms = [
        box(0, 0, 40, 40),  # pixel-aligned field
        box(40, 0, 80, 40),  # shares an edge exactly on pixel boundaries
        box(3.3, 41.7, 57.1, 79.9).difference(box(20, 55, 31, 66)),  # off-grid, with a hole
        box(57.1, 41.7, 79.2, 79.9),  # shares an off-grid edge with the holed field, another class
        box(10, 10, 30.5, 30.5),  # geocoding error: inside field 1, other class
        box(61.2, 3.1, 62.9, 4.4),  # smaller than a pixel
        box(0, 80, 80, 80.4),  # sliver
        shapely.MultiPolygon([box(82, 2, 88, 9), box(90.5, 20, 98, 38)]),  # multipolygon
        Polygon([(82, 40), (98, 60), (98, 40), (82, 60)]),  # bowtie: repaired with a warning
    ]
    return gpd.GeoDataFrame(
        {"code": [1, 2, 2, 3, 4, 5, 6, 7, 8], "pid": np.arange(101, 110)}, geometry=geoms, crs="EPSG:32633"
    )


def test_adversarial_shapes() -> None:
    parcels = _synthetic()
    grid = _grid(0, 0, 25, 4.0, "EPSG:32633")
    with pytest.warns(UserWarning, match="1 of 9 label geometries were invalid"):
        assert_equal_to_reference(parcels, grid, "code", "pid", chunksize=7)
    got = rasterize_labels(parcels.iloc[:8], grid, class_column="code", id_column="pid").compute()
    # known values: field 1's interior is full (1.0); the nested parcel makes double_full inside it
    assert float(got["coverage"].values[-3, 2]) == 1.0
    assert bool(got["double_full"].values[-5, 4])  # y 18..22, x 16..20: inside both
    assert not got["double_partial"].values[-2, 9]  # pixel-aligned shared edge: nobody claims the other's pixel


def test_any_chunking_gives_the_same_layers_and_nothing_computes_early() -> None:
    parcels = _synthetic().iloc[:8]
    grid = _grid(0, 0, 25, 4.0, "EPSG:32633")
    with computing_forbidden():
        layers = [
            rasterize_labels(parcels, grid, class_column="code", id_column="pid", chunksize=c) for c in (5, 8, 64)
        ]
    results = [ds.compute(scheduler="threads") for ds in layers]
    for other in results[1:]:
        for name in results[0].data_vars:
            np.testing.assert_array_equal(other[name].values, results[0][name].values, err_msg=name)
    assert results[0]["class"].dtype == np.int32 and results[0]["coverage"].dtype == np.float32


def test_the_label_source_token_follows_every_parcel_and_attribute() -> None:
    parcels = gpd.read_file(shared_path("parcels", "fr_rpg_lpis_iacs_193parcels_epsg2154.gpkg"))
    parcels["code"] = parcels["code_group"].astype(np.int64)
    grid = _grid(859_103.0, 6_522_404.0, 120, 10.0, "EPSG:2154")

    def token(frame: gpd.GeoDataFrame, **options: object) -> str:
        return tokenize(label_source(frame, grid, class_column="code", id_column="id", **options))

    first = token(parcels)
    assert token(parcels.copy()) == first  # the same parcels read again: the same dask keys
    moved = parcels.copy()
    moved.loc[moved.index[100], "geometry"] = shapely.affinity.translate(moved.geometry.iloc[100], xoff=0.01)
    recoded = parcels.copy()
    recoded.loc[recoded.index[7], "code"] += 1
    renumbered = parcels.copy()
    renumbered.loc[renumbered.index[7], "id"] = -5
    others = {token(moved), token(recoded), token(renumbered), token(parcels, background=9)}
    others |= {token(parcels, double_by="id")}
    assert first not in others and len(others) == 5


def test_a_label_source_sent_to_a_worker_gives_the_same_windows() -> None:
    """A build pickles its parcels once for every worker, as WKB in one call: the real parcels come back bit for
    bit, and so does every layer of a window."""
    parcels = gpd.read_file(shared_path("parcels", "fr_rpg_lpis_iacs_193parcels_epsg2154.gpkg"))
    parcels["code"] = parcels["code_group"].astype(np.int64)
    grid = _grid(859_103.0, 6_522_404.0, 120, 10.0, "EPSG:2154")
    source = label_source(parcels, grid, class_column="code", id_column="id")
    source.tree  # noqa: B018  (built here; the copy builds its own)
    sent = pickle.loads(pickle.dumps(source, protocol=5))
    assert "tree" not in sent.__dict__ and len(sent.geoms) == len(source.geoms) == 193
    assert [g.wkb for g in sent.geoms] == [g.wkb for g in source.geoms]
    for name in ("codes", "ids", "compare"):
        np.testing.assert_array_equal(getattr(sent, name), getattr(source, name))
    assert (sent.background, sent.layers) == (source.background, source.layers)
    np.testing.assert_array_equal(label_window(sent, grid), label_window(source, grid))


def test_the_parcels_within_an_area_give_its_windows_the_same_layers() -> None:
    """A worker gets only the parcels its shards' windows touch (``LabelSource.within``): fewer than all, in the
    same order, and every window inside the area gets the layers the whole set gives it, edge windows included."""
    parcels = gpd.read_file(shared_path("parcels", "fr_rpg_lpis_iacs_193parcels_epsg2154.gpkg"))
    parcels["code"] = parcels["code_group"].astype(np.int64)
    grid = _grid(859_103.0, 6_522_404.0, 120, 10.0, "EPSG:2154")
    source = label_source(parcels, grid, class_column="code", id_column="id")
    area = grid[30:70, 40:100]
    within = source.within(np.array([area.extent.geom]))
    touching = shapely.intersects(source.geoms, area.extent.geom)
    assert 10 < len(within.geoms) == int(touching.sum()) < len(source.geoms)
    np.testing.assert_array_equal(within.ids, source.ids[touching])  # the same parcels, in the same order
    np.testing.assert_array_equal(within.codes, source.codes[touching])
    for window in (area, grid[30:50, 40:60], grid[50:70, 80:100], grid[45:46, 40:100]):
        np.testing.assert_array_equal(label_window(within, window), label_window(source, window))
    outside = grid[0:30, 0:40]  # a window the area does not hold: the parcels it needs are not all there
    assert not np.array_equal(label_window(within, outside), label_window(source, outside))


def test_parcel_ids_that_are_not_integers_are_refused_by_name() -> None:
    """Real Danish parcels: their field numbers (``Marknr``, "1-0"; named in the file's order) are
    text; the parcel_id layer is int64 (it
    raised numpy's ValueError, and empty or fractional ids were cast silently)."""
    from eoshard.pipeline.errors import PipelineError
    from eoshard.pipeline.grid import grid_for_area

    dk = gpd.read_file(shared_path("parcels", "fiboa", "dk", "Marker_2026.zip"))
    grid = grid_for_area(dk.union_all(), dk.crs)
    with pytest.raises(
        PipelineError, match=r"parcel id column 'Marknr' holds text \(e.g. \['1-0', '1-1', '1-2'\]\)"
    ):
        label_source(dk, grid, class_column="Afgkode", id_column="Marknr")
    cases = {"empty id\\(s\\)": [1.0, np.nan], "fractions": [215.5, 3.0], "numbers past int64": [2.0**64, 3.0]}
    for what, ids in cases.items():
        two = dk.iloc[:2].assign(pid=ids)
        with pytest.raises(PipelineError, match=rf"parcel id column 'pid' holds .*{what}"):
            label_source(two, grid, class_column="Afgkode", id_column="pid")
    with pytest.raises(PipelineError, match=r"parcel id column 'pid' holds the id 0 \(\['row 1'\]\), which the "):
        label_source(dk.iloc[:2].assign(pid=[5, 0]), grid, class_column="Afgkode", id_column="pid")
    text_numbers = dk.iloc[:2].assign(pid=["0042", " 7"])
    assert sorted(label_source(text_numbers, grid, class_column="Afgkode", id_column="pid").ids) == [7, 42]
    # a GeoJSON property may hold a list, or numbers and text mixed (sorting such a column raised pandas' TypeError)
    with pytest.raises(
        PipelineError, match=r"'pid' holds lists or objects, not single numbers \(e.g. \['\[1, 2\]'\]"
    ):
        label_source(dk.iloc[:3].assign(pid=[5, [1, 2], 4]), grid, class_column="Afgkode", id_column="pid")
    mixed = label_source(dk.iloc[:3].assign(pid=[5, "3", 4]), grid, class_column="Afgkode", id_column="pid")
    assert mixed.ids.tolist() == [3, 4, 5]  # sorted as numbers, the shapes with them
    on_grid = prepare_parcels(dk.iloc[:3], grid, "Afgkode").geometry
    assert [g.equals_exact(on_grid.iloc[i], 0) for g, i in zip(mixed.geoms, (1, 2, 0), strict=True)] == [True] * 3


def test_class_codes_past_the_int32_layer_are_refused() -> None:
    from eoshard.pipeline.classes import ClassColumnError
    from eoshard.pipeline.grid import grid_for_area

    dk = gpd.read_file(shared_path("parcels", "fiboa", "dk", "Marker_2026.zip")).iloc[:2]
    grid = grid_for_area(dk.union_all(), dk.crs)
    with pytest.raises(ClassColumnError, match=r"holds codes past the int32 class layer \(e.g. \[5000000000\]"):
        label_source(dk.assign(hcat=[5_000_000_000, 3]), grid, class_column="hcat")


def test_a_missing_geometry_is_dropped_not_counted_as_repaired() -> None:
    import warnings

    from eoshard.pipeline.grid import grid_for_area
    from eoshard.pipeline.labels import prepare_parcels

    si = gpd.read_file(shared_path("parcels", "si_raba_lulc_88polygons_epsg32633.gpkg"))
    grid = grid_for_area(si.union_all(), si.crs)
    bow_tie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    si.loc[0, "geometry"] = shapely.affinity.translate(bow_tie, *si.geometry.iloc[0].centroid.coords[0])
    si.loc[1, "geometry"] = None
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        prepared = prepare_parcels(si, grid, "LULC_ID")
    assert [str(w.message) for w in said] == [
        "1 of 87 label geometries were invalid and were repaired with make_valid"
    ]
    assert len(prepared) == 87 and prepared.geometry.is_valid.all()


def test_parcels_without_a_class_on_the_grid_are_counted_in_one_warning() -> None:
    from eoshard.pipeline.grid import grid_for_area
    from eoshard.pipeline.labels import UnclassifiedParcelsWarning, rasterize_labels

    bb = gpd.read_file(shared_path("parcels", "fiboa", "de_bb", "antrag.zip"))  # 29 of 100 have no crop code
    assert (int(bb["code"].isna().sum()), int((bb["egs_code"] == 0).sum())) == (29, 29)
    for column in ("code", "egs_code"):  # a missing name, and the background's own code
        with pytest.warns(UnclassifiedParcelsWarning) as said:
            rasterize_labels(bb, grid_for_area(bb.union_all(), bb.crs), class_column=column)
        assert [str(w.message) for w in said if w.category is UnclassifiedParcelsWarning] == [
            f"29 of the 100 parcels on the grid have no class in column {column!r} (blank, missing or 0): their "
            "pixels are background (0) in the class layer; give them a class, or drop them from the labels if that "
            "is not what they are"
        ]
    west = bb.geometry.centroid.x < bb.geometry.centroid.x.median()
    grid = grid_for_area(bb[west].union_all(), bb.crs)
    on_grid = bb.to_crs(str(grid.crs)).intersects(shapely.box(*grid.extent.boundingbox))
    expected = int((on_grid & bb["code"].isna()).sum()), int(on_grid.sum())
    assert expected[1] < 100
    with pytest.warns(
        UnclassifiedParcelsWarning, match=rf"^{expected[0]} of the {expected[1]} parcels on the grid"
    ):
        rasterize_labels(bb, grid, class_column="code")
    classified = bb[bb["code"].notna()]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnclassifiedParcelsWarning)
        rasterize_labels(classified, grid_for_area(classified.union_all(), classified.crs), class_column="code")


def test_parcel_ids_past_2_to_the_53_are_stored_exactly() -> None:
    """The layers of a window stack as float64: an id past 2**53 came back rounded (2**63 - 1 as -2**63)."""
    from eoshard.pipeline.label_windows import layer_values

    ids = [2**53 + 1, 2**62 + 12345, 2**63 - 1, -(2**63) + 7]
    squares = [box(500_000 + 100 * i, 4_000_000, 500_080 + 100 * i, 4_000_080) for i in range(4)]
    parcels = gpd.GeoDataFrame({"code": [1, 2, 3, 4], "pid": ids}, geometry=squares, crs="EPSG:32633")
    grid = GeoBox.from_bbox((500_000, 4_000_000, 500_400, 4_000_100), "EPSG:32633", resolution=10)
    source = label_source(parcels, grid, class_column="code", id_column="pid")
    direct = layer_values(label_window(source, grid), "parcel_id")  # as a shard task computes it
    lazy = rasterize_labels(parcels, grid, class_column="code", id_column="pid", chunksize=16)["parcel_id"]
    for layer in (direct, lazy.values):
        assert layer.dtype == np.int64
        assert [int(layer[5, 10 * i + 4]) for i in range(4)] == ids  # inside each square
        assert int(layer[5, 9]) == 0 and int(layer[0, 0]) == 0  # between squares, and the row above them


def test_a_geometry_that_does_not_reproject_is_refused_by_row() -> None:
    """One far-off vertex (a digitising slip in EPSG:3035) became Inf in UTM, and make_valid raised GEOS' NaN/Inf."""
    from eoshard.pipeline.errors import PipelineError
    from eoshard.pipeline.grid import grid_for_area
    from eoshard.pipeline.labels import prepare_parcels

    si = gpd.read_file(shared_path("parcels", "si_raba_lulc_88polygons_epsg32633.gpkg"))
    grid = grid_for_area(si.union_all(), si.crs)
    laea = si.to_crs(3035)
    x, y = laea.geometry.iloc[3].representative_point().coords[0]
    laea.loc[laea.index[3], "geometry"] = Polygon([(x, y), (-68_779_075, 3_637_099), (x + 10, y + 10)])
    with pytest.raises(PipelineError, match=r"^1 label geometries have points that do not exist in the grid's CRS "
                       r"EPSG:32633 \(rows 3; their coordinates in EPSG:3035 are far outside"):  # fmt: skip
        prepare_parcels(laea, grid, "LULC_ID")
