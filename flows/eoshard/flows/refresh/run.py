"""``refresh_dataset``: bring a built dataset up to date with what its catalog gained since the build.

Under the dataset's lock: search the config's catalog, keep the dataset's own products plus acquisitions newer than
its watermark (and, with ``refresh.reprocessed``, new products of dates it holds). Nothing new: nothing is touched.
Otherwise the plan of a build over exactly those products is written into a staging folder, reading from the
sources only the steps the dataset does not hold (see ``reuse.py``), and switched in atomically (``swap.py``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import geopandas as gpd
import pystac
from distributed import Client

from eoshard.catalog.credentials import redact_url
from eoshard.catalog.errors import EmptySelectionError
from eoshard.flows.aoi import read_aoi
from eoshard.flows.build import FINGERPRINT_EXCLUDE, BuildPlan, plan_build, s1_products, search_products
from eoshard.flows.config import BuildConfig
from eoshard.flows.masking import with_landsat_bands, with_mask
from eoshard.flows.products import chosen_products
from eoshard.flows.redaction import public_config
from eoshard.flows.refresh import swap
from eoshard.flows.refresh.errors import RefreshError
from eoshard.flows.refresh.lock import dataset_lock
from eoshard.flows.refresh.reuse import held_samples, open_old, refreshed_shard_task
from eoshard.flows.refresh.watermark import newer_items, reprocessed_items, watermark
from eoshard.flows.shard_runner import run_shards
from eoshard.pipeline.shards.commits import CommitLog
from eoshard.pipeline.shards.layout import BUILD_DIR, MANIFEST_FILE
from eoshard.pipeline.shards.reader import read_layout


@dataclass(frozen=True)
class RefreshResult:
    path: Path
    up_to_date: bool
    new_products: tuple[str, ...] = ()
    reprocessed_products: tuple[str, ...] = ()
    added_dates: tuple[str, ...] = ()
    reread_dates: tuple[str, ...] = ()
    manifest: Mapping[str, Any] | None = None


# Config fields that may differ from the build's: where and how the products are found, how far the period reaches, and
# the refresh settings themselves. Any other change makes a different dataset: build it anew.
_MAY_CHANGE = {
    *(
        ("catalog", field)
        for field in ("source", "kind", "page_size", "modifier", "headers_from_env", "selection", "exclude")
    ),
    ("s1", "modifier"),
    ("hr", "modifier"),
    ("period", "end"),
    ("refresh",),
}


def check_config(config: BuildConfig, dataset: Path) -> BuildConfig:
    """Refuse a config that would not build this dataset (other than in ``_MAY_CHANGE``).

    Returns the config with ``timeseries.mask: auto`` pinned to the mask the build resolved it to, so the
    refreshed dates are masked as the held ones are, and with Landsat's band names where the build resolved to them.
    """
    plan_file = dataset / BUILD_DIR / "plan.json"
    if not plan_file.is_file():
        raise RefreshError(
            f"{dataset} has no {plan_file.name} under _build/, which a refresh compares its config with: the dataset "
            "was not made by eoshard build, or was copied without _build/ (copy that too)"
        )
    built = json.loads(plan_file.read_text())["config"]
    if config.timeseries.mask == "auto":
        config = with_mask(config, built.get("timeseries", {}).get("mask", "nodata"))
    config = with_landsat_bands(config, built.get("bands", []))
    now = public_config(config, exclude=FINGERPRINT_EXCLUDE)
    changed = sorted(
        f"{section}.{field}".rstrip(".")
        for section in {*built, *now}
        for field in _fields(built.get(section), now.get(section))
        if (section, field) not in _MAY_CHANGE and (section,) not in _MAY_CHANGE
    )
    if changed:
        raise RefreshError(
            f"the config differs from the one {dataset} was built with in {', '.join(changed)}: a refresh only "
            "adds acquisitions (it may change where the catalog is and period.end); build a new dataset for other changes"
        )
    return config


def _fields(built: Any, now: Any) -> list[str]:
    if isinstance(built, dict) and isinstance(now, dict):
        return [k for k in {*built, *now} if built.get(k) != now.get(k)]
    return [""] if built != now else []


def select_products(
    config: BuildConfig, manifest: Mapping[str, Any]
) -> tuple[list[pystac.Item], list[pystac.Item], list[pystac.Item]]:
    """The refresh's products (the dataset's own plus what is new), and of those the newer and reprocessed ones."""
    try:
        found = list(search_products(config))
    except EmptySelectionError:
        found = []
    sar = _s1_products(config)  # every one: a refresh reads the Sentinel-1 steps again (see reuse.py)
    held = set(manifest["products"])
    missing = held - {i.id for i in [*found, *sar]}
    if missing:
        raise RefreshError(
            f"{len(missing)} product(s) of the dataset are not found by the config's search of "
            f"{redact_url(config.catalog.source)} (e.g. {sorted(missing)[0]}): if the config's period or AOI now "
            "leaves them out, give the ones the dataset was built with; if the catalog dropped them, a refresh "
            "cannot add to the dataset: build it anew"
        )
    chosen = _chosen(config, found)  # what a build over the whole period would use
    newer = newer_items(chosen, watermark(manifest))
    reprocessed = reprocessed_items(chosen, manifest) if config.refresh.reprocessed else []
    if not config.refresh.reprocessed:
        _warn_of_late_products(chosen, newer, manifest)
    if reprocessed:  # the dates read again use what a build would: a superseded held copy is left out
        held &= {i.id for i in chosen}
    wanted = held | {i.id for i in [*newer, *reprocessed]}
    return [i for i in found if i.id in wanted] + sar, newer, reprocessed


def _warn_of_late_products(
    chosen: list[pystac.Item], newer: list[pystac.Item], manifest: Mapping[str, Any]
) -> None:
    """Products of days the dataset holds that it lacks (a tile of a pass published hours after the others): only
    ``refresh.reprocessed`` reads those dates again, so without it they are named, not silently left out."""
    days = {str(d)[:10] for d in manifest.get("dates", [])}
    known = set(manifest.get("products", [])) | {i.id for i in newer}
    late = sorted(
        i.id for i in chosen if i.id not in known and i.datetime and i.datetime.date().isoformat() in days
    )
    if late:
        warnings.warn(
            f"{len(late)} product(s) of dates the dataset holds are not in it (e.g. {late[0]}; a tile published after "
            "the others of its pass, or a new processing baseline): set refresh.reprocessed: true in the config to "
            "read those dates again with them",
            UserWarning,
            stacklevel=3,
        )


def _s1_products(config: BuildConfig) -> list[pystac.Item]:
    """The Sentinel-1 products of the config's ``s1`` section in its AOI and (new) period; none without one."""
    if config.s1 is None:
        return []
    area, area_crs = read_aoi(config.aoi)
    return list(s1_products(config, gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0]))


def _chosen(config: BuildConfig, found: list[pystac.Item]) -> list[pystac.Item]:
    """The products the rules of ``eoshard select`` keep (all of a saved selection), as ``eoshard build`` does;
    none that ``catalog.exclude`` names."""
    if not found:
        return []
    area, area_crs = read_aoi(config.aoi)
    try:
        return chosen_products(config, found, gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0])
    except EmptySelectionError:
        return []


def refresh_dataset(
    config: BuildConfig,
    connect: Callable[[], AbstractContextManager[Client]],
    on_progress: Callable[[int, int], None] | None = None,
) -> RefreshResult:
    """Refresh the dataset at ``config.output.path``; ``connect`` gives a Dask client when there is work."""
    dataset = config.output.path
    swap.recover_missing(dataset)
    if not (dataset / MANIFEST_FILE).is_file():
        raise RefreshError(
            f"no finished dataset at {dataset} (its dataset.json is missing): run `eoshard build` with this config "
            "first (or again, to finish an interrupted build)"
        )
    with dataset_lock(dataset, "eoshard refresh"):
        swap.finish(dataset)
        config = check_config(config, dataset)
        manifest = read_layout(dataset).to_manifest()
        items, newer, reprocessed = select_products(config, manifest)
        if not newer and not reprocessed:
            swap.discard_staging(dataset)  # a leftover of a refresh whose products vanished again
            return RefreshResult(dataset, up_to_date=True)
        plan = _staged_plan(config, items, {i.id for i in [*newer, *reprocessed]})
        old = open_old(dataset, plan, manifest)
        with connect() as client:
            new_manifest = run_shards(
                plan, client, partial(refreshed_shard_task, old, held_samples(dataset)), on_progress,
                then="run the refresh again to finish",
            )  # fmt: skip
        swap.switch(dataset)
    fresh = [d for d, step in zip(plan.dates, old.steps, strict=True) if step is None]
    return RefreshResult(
        dataset,
        up_to_date=False,
        new_products=tuple(i.id for i in newer),
        reprocessed_products=tuple(i.id for i in reprocessed),
        added_dates=tuple(d for d in fresh if d not in manifest["dates"]),
        reread_dates=tuple(d for d in fresh if d in manifest["dates"]),
        manifest=new_manifest,
    )


def _staged_plan(config: BuildConfig, items: list[pystac.Item], new: set[str]) -> BuildPlan:
    """The plan of a build over ``items``, writing into the staging folder (a stale staging plan is dropped).

    Only the ``new`` products' files are read, so only theirs are checked against their items; the sizes of the
    others' files are those the dataset's plan recorded, as a single build over ``items`` would record them.
    """
    staging = swap.staging_path(config.output.path)
    staged = config.model_copy(update={"output": config.output.model_copy(update={"path": staging})})
    plan = plan_build(staged, items, checked=new, then="run the refresh again")
    recorded = CommitLog(config.output.path).recorded_plan().get("file_sizes", {})
    held = {item.id for item in items} - new
    kept = {product: sizes for product, sizes in recorded.items() if product in held}
    if kept:
        plan = replace(plan, file_sizes={**kept, **plan.file_sizes})
    previous = staging / BUILD_DIR / "plan.json"
    if not previous.is_file() or json.loads(previous.read_text()) != json.loads(json.dumps(plan.fingerprint())):
        swap.discard_staging(config.output.path)  # not the same plan: nothing in it to resume
    return plan
