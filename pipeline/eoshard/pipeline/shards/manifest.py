"""The dataset's index (GeoParquet), STAC Collection and statistics summary, written once all shards are done."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pystac
import shapely

from eoshard.pipeline.shards import stats
from eoshard.pipeline.shards.cards import add_label_extension, eo_bands
from eoshard.pipeline.shards.commits import atomic_write
from eoshard.pipeline.shards.describe import with_sample_metadata
from eoshard.pipeline.shards.layout import INDEX_FILE, LMDB_DIR, MANIFEST_FILE, ZARR_DIR
from eoshard.pipeline.shards.splits import SPLITS


def footprint(transform: Sequence[float], size: int) -> shapely.Polygon:
    a, _, c, _, e, f = transform[:6]
    return shapely.box(c, f + e * size, c + a * size, f)


def index_frame(rows: Sequence[Mapping[str, Any]], crs: str, size: int) -> gpd.GeoDataFrame:
    """One row per sample, sorted by Zarr slot, footprints as geometry."""
    frame = pd.DataFrame(list(rows))
    frame = frame.sort_values("zarr_index", kind="stable").reset_index(drop=True)
    geometry = [footprint(t, size) for t in frame["transform"]]
    return with_sample_metadata(gpd.GeoDataFrame(frame, geometry=geometry, crs=crs))


def write_index(frame: gpd.GeoDataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def summarise_records(
    records: Iterable[Mapping[str, Any]], rows: list[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Merge the commit records' statistics: per-band summaries, class counts, dropped and split counts.

    One record at a time, in order (the float moments are merged in the same order as all at once, bit for bit):
    memory holds the merged statistics, not every shard's. The records' index rows are appended to ``rows``."""
    floats: dict[str, stats.Partial] = {}  # float bands: moments merged one record after the other
    integers: dict[str, stats.HistogramTotal] = {}  # by band, in order of first appearance (floats' too)
    class_counts = stats.HistogramTotal()
    splits = {name: 0 for name in SPLITS}
    checksums: dict[str, str] = {}
    dropped = 0
    for r in records:
        for band, data in r["histograms"].items():
            if band not in integers:
                integers[band] = stats.HistogramTotal()
            if isinstance(data, dict):  # a float band's statistics (see ``stats.dump``)
                part = stats.load(data)
                floats[band] = stats.combine([floats[band], part]) if band in floats else part
            else:  # an integer histogram; a float band's shard without samples holds an empty one
                integers[band].add(data)
        class_counts.add(r["class_counts"])
        for row in r["rows"]:
            splits[row["split"]] += 1
        if rows is not None:
            rows.extend(r["rows"])
        checksums.update(r["checksums"])
        dropped += int(r["dropped"])
    return {
        "statistics": {
            band: stats.summary(floats[band] if band in floats else total.result())
            for band, total in integers.items()
        },
        "class_counts": {str(k): v for k, v in sorted(class_counts.result().items())},
        "dropped": dropped,
        "split_counts": splits,
        "checksums": dict(sorted(checksums.items())),
    }


def write_collection(manifest: Mapping[str, Any], bbox_4326: Sequence[float], path: Path) -> None:
    """A STAC Collection describing the dataset, with its files as assets."""
    dates = manifest["dates"]
    start, end = (pd.Timestamp(dates[0]).to_pydatetime(), pd.Timestamp(dates[-1]).to_pydatetime())
    collection = pystac.Collection(
        id=manifest["name"],
        description=(
            f"eoshard dataset {manifest['name']}: {manifest['n_samples']} samples of "
            f"{manifest['patch']['size']} px, bands {', '.join(manifest['bands'])}, format {manifest['format_version']}"
        ),
        extent=pystac.Extent(
            pystac.SpatialExtent([list(bbox_4326)]),
            pystac.TemporalExtent([[start.replace(tzinfo=None), end.replace(tzinfo=None)]]),
        ),
        license="other",
        summaries=pystac.Summaries({"eo:bands": eo_bands(manifest)}),
    )
    add_label_extension(collection, manifest)
    collection.extra_fields["eoshard:format_version"] = manifest["format_version"]
    collection.extra_fields["eoshard:n_samples"] = manifest["n_samples"]
    classes = (manifest.get("labels") or {}).get("classes")
    if classes:  # code -> name, as in dataset.json
        collection.extra_fields["eoshard:classes"] = dict(classes)
    for name, href, media in (
        ("manifest", f"./{MANIFEST_FILE}", "application/json"),
        ("index", f"./{INDEX_FILE}", "application/vnd.apache.parquet"),
        ("zarr", f"./{ZARR_DIR}", "application/vnd+zarr"),
        ("lmdb", f"./{LMDB_DIR}", "application/x-lmdb"),
    ):
        collection.add_asset(name, pystac.Asset(href, media_type=media, roles=["data"]))
    collection.add_asset(
        "croissant", pystac.Asset("./croissant.json", media_type="application/ld+json", roles=["metadata"])
    )
    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True).encode())
