"""A finished build's own files: the index, the STAC Collection, the Croissant card, then ``dataset.json``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eoshard.flows.config import BuildConfig
from eoshard.pipeline.faults import fault_point
from eoshard.pipeline.reflectance import product_radiometry
from eoshard.pipeline.shards.cards import write_cards
from eoshard.pipeline.shards.commits import CommitLog, atomic_write, remove_leftovers
from eoshard.pipeline.shards.describe import manifest_band_metadata
from eoshard.pipeline.shards.layout import (
    COLLECTION_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    DatasetLayout,
    LabelLayout,
    LmdbLayout,
    ZarrLayout,
    group_layouts,
)
from eoshard.pipeline.shards.lmdb_store import part_name
from eoshard.pipeline.shards.manifest import index_frame, summarise_records, write_collection, write_index
from eoshard.pipeline.shards.samples import format_version
from eoshard.pipeline.shards.spool import spool_dir

if TYPE_CHECKING:
    from eoshard.flows.build import BuildPlan


def finalize(plan: BuildPlan, log: CommitLog) -> dict[str, Any]:
    """Index, STAC Collection, then ``dataset.json`` (written last: its presence marks a finished build)."""
    config = plan.config
    out = config.output.path
    remove_leftovers(out)  # every shard is committed: temporary files of killed writers are garbage now
    log.unreadable_path.unlink(missing_ok=True)  # and the files runs could not read have been read since
    shutil.rmtree(spool_dir(out), ignore_errors=True)
    rows: list[Mapping[str, Any]] = []
    summary = summarise_records(log.records(), rows)
    frame = index_frame(rows, str(plan.grid.crs), config.patches.size)
    write_index(frame, out / INDEX_FILE)
    fault_point("finalize")
    manifest = dataset_layout(plan, summary, len(rows)).to_manifest()
    manifest["band_metadata"] = manifest_band_metadata(manifest)
    bbox = tuple(float(v) for v in plan.grid.extent.to_crs("EPSG:4326").boundingbox)
    write_collection(manifest, bbox, out / COLLECTION_FILE)
    write_cards(out, manifest, bbox)  # croissant.json
    fault_point("finalize")
    atomic_write(out / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
    return manifest


def _hr_manifest(plan: BuildPlan) -> dict[str, Any] | None:
    """The paired HR source (``hr`` in Zarr, ``hr_<band>`` in LMDB), or None."""
    if plan.hr is None or plan.config.hr is None:
        return None
    bands = list(plan.config.hr.bands)
    return {
        "bands": bands,
        "tensors": [f"hr_{b}" for b in bands],
        "resolution": plan.config.hr.resolution,
        "factor": plan.hr_factor,
        "shape": list(plan.layouts()["hr"][0]),
        "dtype": str(plan.hr.dtype),
        "nodata": 0,
        "products": [i["id"] for i in plan.hr_items],
        "dates": [str(i["properties"].get("datetime")) for i in plan.hr_items],
    }


def dataset_layout(plan: BuildPlan, summary: dict[str, Any], n_samples: int) -> DatasetLayout:
    """The layout of the dataset that ``plan`` builds, with the statistics of its commit records."""
    config = plan.config
    layouts = plan.layouts()
    base = abs(plan.grid.resolution.x)
    labels = None
    if plan.labels is not None:
        layers = {
            str(k): (str(v.dtype), base * plan.label_factor(str(k)) / plan.label_zoom(str(k)))
            for k, v in plan.labels.data_vars.items()
        }
        labels = LabelLayout(layers, dict(plan.class_names), summary["class_counts"])
    zarr = lmdb = None
    if "zarr" in config.output.formats:
        zarr = ZarrLayout(config.output.shard_size, len(plan.shards()), len(plan.patches))
    if "lmdb" in config.output.formats:
        lmdb = LmdbLayout(tuple(part_name(i) for i in range(config.output.lmdb_parts)))
    return DatasetLayout(
        name=config.name,
        grid=plan.grid,
        patch={
            "size": config.patches.size,
            "stride": config.patches.stride or config.patches.size,
            "mode": config.patches.mode,
            "min_labelled_fraction": config.patches.min_labelled_fraction,
        },
        bands=tuple(config.bands),
        groups=group_layouts(plan.cubes, plan.factors, base, {k: v[0] for k, v in layouts.items()}),
        dates=tuple(plan.dates),
        products=tuple(i["id"] for i in plan.items),
        timeseries=config.timeseries.model_dump(mode="json") | sensor_timeseries(config),
        n_samples=n_samples,
        keys=tuple(p.key for p in plan.patches),
        dropped={"too_few_dates": summary["dropped"]},
        splits={**config.splits.model_dump(mode="json"), "counts": summary["split_counts"]},
        statistics=summary["statistics"],
        labels=labels,
        hr=_hr_manifest(plan),
        zarr=zarr,
        lmdb=lmdb,
        checksums=summary["checksums"],
        format_version=format_version(plan.other_dates),
        sensor_dates={s: tuple(d) for s, d in plan.other_dates.items()},
        extra={
            "radiometry": {
                i["id"]: r for i in plan.items if (r := product_radiometry(i, config.bands)) is not None
            }
        },
    )


def sensor_timeseries(config: BuildConfig) -> dict[str, Any]:
    """The date selection of the sensors besides Sentinel-2 (``timeseries.s1`` of a 1.1 ``dataset.json``)."""
    if config.s1 is None:
        return {}
    return {"s1": {"min_valid_fraction": config.s1.min_valid_fraction, "min_dates": config.s1.min_dates}}
