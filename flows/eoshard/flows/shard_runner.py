"""Running a build plan's shards on Dask: commit log, parallel LMDB writers, resume, and the final manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
from distributed import Client, as_completed

from eoshard.pipeline.cube import stackstac_ready
from eoshard.pipeline.errors import AssetReadError, PipelineError, ShardWriteError
from eoshard.pipeline.faults import fault_point
from eoshard.pipeline.shards.commits import CommitLog, atomic_write, remove_leftovers
from eoshard.pipeline.shards.lmdb_store import LmdbWriter, part_name
from eoshard.pipeline.shards.manifest import index_frame, summarise_records, write_collection, write_index
from eoshard.pipeline.shards.samples import FORMAT_VERSION
from eoshard.pipeline.shards.zarr_store import create_store

if TYPE_CHECKING:
    from eoshard.flows.build import BuildPlan

ShardTask = Callable[["BuildPlan", int, list[Any]], Any]


def run_shards(
    plan: BuildPlan, client: Client, shard_task: ShardTask, on_progress: Callable[[int, int], None] | None
) -> dict[str, Any]:
    """Write every uncommitted shard, then the index, STAC Collection and ``dataset.json`` (last)."""
    config = plan.config
    out = config.output.path
    log = CommitLog(out)
    fingerprint = plan.fingerprint()
    if log.start(fingerprint):
        remove_leftovers(out)
    else:
        if "zarr" in config.output.formats:
            create_store(
                out / "data.zarr",
                len(plan.patches),
                plan.layouts(),
                shard_size=config.output.shard_size,
                attrs={
                    "format_version": FORMAT_VERSION,
                    "groups": plan.groups,
                    "dates": plan.dates,
                    "keys": [p.key for p in plan.patches],
                },
                nan_fill=plan.nan_fill(),
            )
        log.record_plan(fingerprint)
    shards = plan.shards()
    done = log.done()
    todo = {k: shard_task(plan, k, shard) for k, shard in enumerate(shards) if k not in done}
    if on_progress is not None:
        on_progress(len(done), len(shards))
    futures = client.compute(list(todo.values()))
    index_of = {f.key: k for f, k in zip(futures, todo, strict=True)}
    writers = _lmdb_writers(plan, out)
    # one thread per LMDB environment: each is its environment's only writer; environments go in parallel
    executors = {part: ThreadPoolExecutor(max_workers=1, thread_name_prefix=part) for part in writers}
    pending: list[Future[None]] = []
    failures: list[PipelineError] = []
    try:
        for count, future in enumerate(as_completed(futures), start=len(done) + 1):
            shard = index_of[future.key]
            try:
                result = future.result()
            except ShardWriteError:
                raise  # a full disk fails every other shard too: stop now
            except PipelineError as err:
                failures.append(err)  # the other shards go on and are committed as they complete
                continue
            except Exception as err:
                error = _asset_error(plan, shard, err)
                error.__cause__ = err
                failures.append(error)
                continue
            part = plan.lmdb_part(shard)
            if part is None:
                _commit(log, shard, result, None)
            else:
                pending.append(executors[part].submit(_commit, log, shard, result, writers[part]))
            pending = _raise_failed(pending)
            if on_progress is not None:
                on_progress(count, len(shards))
        for p in pending:
            p.result()
        if failures:
            raise _first_failure(failures, len(shards), len(log.done()))
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        for executor in executors.values():
            executor.shutdown(wait=True)
        for writer in writers.values():
            writer.close()
    return finalize(plan, log)


def _lmdb_writers(plan: BuildPlan, out: Path) -> dict[str, LmdbWriter]:
    if "lmdb" not in plan.config.output.formats:
        return {}
    parts = [part_name(i) for i in range(plan.config.output.lmdb_parts)]
    return {part: LmdbWriter(out / "data.lmdb" / part) for part in parts}


def _raise_failed(pending: list[Future[None]]) -> list[Future[None]]:
    for p in pending:
        if p.done():
            p.result()  # raises the writer's error here, in the driver
    return [p for p in pending if not p.done()]


def _commit(log: CommitLog, shard: int, result: dict[str, Any], writer: LmdbWriter | None) -> None:
    """LMDB values first (one transaction), then the commit record: a recorded shard is complete everywhere."""
    fault_point("lmdb-put")
    if writer is not None:
        writer.put_many(result["records"])
    fault_point("commit-record")
    record = {k: v for k, v in result.items() if k != "records"}
    log.commit(shard, {"shard": shard, **record})


def _first_failure(failures: list[PipelineError], n_shards: int, n_committed: int) -> PipelineError:
    """The first shard's error, saying how many failed and how many are committed (and stay valid)."""
    first = failures[0]
    note = f" ({len(failures)} of {n_shards} shards failed, {n_committed} are committed)"
    error = type(first)(f"{first}{note}")
    error.__cause__ = first.__cause__ or first
    return error


def _asset_error(plan: BuildPlan, shard: int, err: Exception) -> PipelineError:
    """Name the product and asset whose file failed (stackstac quotes the href in its message)."""
    message = str(err)
    for item in plan.items:
        ready = stackstac_ready(item)
        for band, asset in ready["assets"].items():
            href = str(asset.get("href", ""))
            if href and (href in message or href.removeprefix("file://") in message):
                return AssetReadError(
                    f"could not read asset {band} of product {ready['id']} ({href}) while making shard {shard}: "
                    f"{message.splitlines()[0] if message else type(err).__name__}. The shards committed so far "
                    "stay valid: repair or remove the product, then rerun the same build to finish"
                )
    return PipelineError(f"shard {shard} failed: {type(err).__name__}: {message}")


def finalize(plan: BuildPlan, log: CommitLog) -> dict[str, Any]:
    """Index, STAC Collection, then ``dataset.json`` (written last: its presence marks a finished build)."""
    config = plan.config
    out = config.output.path
    remove_leftovers(out)  # every shard is committed: temporary files of killed writers are garbage now
    records = log.records()
    rows = [row for r in records for row in r["rows"]]
    summary = summarise_records(records)
    frame = index_frame(rows, str(plan.grid.crs), config.patches.size)
    write_index(frame, out / "index.parquet")
    fault_point("finalize")
    manifest = _manifest(plan, summary, len(rows))
    bbox = tuple(float(v) for v in plan.grid.extent.to_crs("EPSG:4326").boundingbox)
    write_collection(manifest, bbox, out / "collection.json")
    fault_point("finalize")
    atomic_write(out / "dataset.json", json.dumps(manifest, indent=2).encode())
    return manifest


def read_index(path: Path) -> gpd.GeoDataFrame:
    return gpd.read_parquet(path / "index.parquet")


def _class_names(plan: BuildPlan) -> dict[str, str]:
    labels = plan.config.labels
    if labels is None or not labels.class_name_column:
        return {}
    parcels = gpd.read_file(labels.path, layer=labels.layer, ignore_geometry=True)
    pairs = parcels[[labels.class_column, labels.class_name_column]].drop_duplicates()
    return {str(int(c)): str(n) for c, n in sorted(pairs.itertuples(index=False, name=None))}


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


def _manifest(plan: BuildPlan, summary: dict[str, Any], n_samples: int) -> dict[str, Any]:
    config = plan.config
    size = config.patches.size
    layouts = plan.layouts()
    groups = {
        name: {
            "bands": plan.groups[name],
            "resolution": abs(plan.grid.resolution.x) * plan.factors[name],
            "factor": plan.factors[name],
            "shape": list(layouts[name][0]),
            "dtype": str(cube.dtype),
            "nodata": "nan" if cube.dtype.kind == "f" else 0,
            **({"expressions": cube.attrs["expressions"]} if "expressions" in cube.attrs else {}),
        }
        for name, cube in plan.cubes.items()
    }
    labels = None
    if plan.labels is not None:
        labels = {
            "layers": {
                str(k): {
                    "dtype": str(v.dtype),
                    "resolution": abs(plan.grid.resolution.x) * plan.label_factor(str(k)),
                }
                for k, v in plan.labels.data_vars.items()
            },
            "background": 0,
            "classes": _class_names(plan),
            "class_counts": summary["class_counts"],
        }
    zarr_format = None
    if "zarr" in config.output.formats:
        zarr_format = {
            "path": "data.zarr",
            "shard_size": config.output.shard_size,
            "n_shards": len(plan.shards()),
            "n_slots": len(plan.patches),
        }
    lmdb_format = None
    if "lmdb" in config.output.formats:
        lmdb_format = {"path": "data.lmdb", "parts": [part_name(i) for i in range(config.output.lmdb_parts)]}
    return {
        "format_version": FORMAT_VERSION,
        "name": config.name,
        "crs": str(plan.grid.crs),
        "transform": list(plan.grid.transform)[:6],
        "shape": list(plan.grid.shape),
        "resolution": abs(plan.grid.resolution.x),
        "patch": {
            "size": size,
            "stride": config.patches.stride or size,
            "mode": config.patches.mode,
            "min_labelled_fraction": config.patches.min_labelled_fraction,
        },
        "bands": list(config.bands),
        "groups": groups,
        "dates": plan.dates,
        "products": [i["id"] for i in plan.items],
        "timeseries": config.timeseries.model_dump(mode="json"),
        "n_samples": n_samples,
        "n_candidates": len(plan.patches),
        "keys": [p.key for p in plan.patches],
        "dropped": {"too_few_dates": summary["dropped"]},
        "splits": {**config.splits.model_dump(mode="json"), "counts": summary["split_counts"]},
        "statistics": summary["statistics"],
        "labels": labels,
        "hr": _hr_manifest(plan),
        "formats": {"zarr": zarr_format, "lmdb": lmdb_format},
        "checksums": summary["checksums"],
    }
