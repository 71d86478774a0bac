"""The commit log that makes builds resumable: a plan fingerprint and one atomic record per finished shard."""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from eoshard.pipeline.errors import PipelineError, ShardWriteError
from eoshard.pipeline.faults import fault_point
from eoshard.pipeline.shards.layout import BUILD_DIR, LMDB_DIR, MANIFEST_FILE, ZARR_DIR


class PlanMismatchError(PipelineError, ValueError):
    """The output folder holds a dataset or an unfinished build of another plan."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fault_point("atomic-write")
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ShardWriteError(f"could not write {path}: {err}") from err


def partial_path(path: Path) -> Path:
    """A temporary name of its own beside ``path`` (``NAME.<uuid>.partial``, as zarr's store names them) to write
    to and rename over ``path``; ``remove_leftovers`` deletes those a killed writer left."""
    return path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")


def remove_leftovers(root: Path) -> list[Path]:
    """Delete the temporary files a killed build left (ours ``.NAME.tmp``, zarr's ``NAME.<uuid>.partial``)."""
    leftovers = [  # one walk of the output (thousands of files for a whole tile, maybe on NFS), not one a pattern
        Path(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if (name.startswith(".") and name.endswith(".tmp")) or name.endswith(".partial")
    ]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


ADDED_PLAN_KEYS = ("labels_sha256", "file_sizes")  # recorded since the builds of 2026-12-05


class CommitLog:
    """``_build/plan.json`` (what is being built) and ``_build/commits/shard-NNNNNN.json`` (what is done)."""

    def __init__(self, root: Path) -> None:
        self.root = root / BUILD_DIR

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def unreadable_path(self) -> Path:
        return self.root / "unreadable.json"

    def unreadable(self) -> dict[str, list[str]]:
        """The files a run of this build could not read (their content was damaged), by product and band."""
        return json.loads(self.unreadable_path.read_text()) if self.unreadable_path.is_file() else {}

    def record_unreadable(self, product: str, band: str) -> None:
        """Note that a run could not read the file of ``product``'s ``band``: a rerun accepts it at another size
        (repaired, downloaded again), where it refuses any other file whose size changed."""
        known = self.unreadable()
        if band not in known.get(product, []):
            known[product] = sorted({*known.get(product, []), band})
            atomic_write(self.unreadable_path, record_json(known))

    def start(self, plan: dict[str, Any]) -> bool:
        """True when a build of this same plan was started before (resume); raises for another plan, unless the
        build of that plan committed no shard: then it is removed, and this one starts afresh (False). Files a run
        could not read may have another size now (repaired): the build resumes with them, and records the plan."""
        previous = self.recorded_plan()
        if not previous:
            self._refuse_unrecorded_dataset()
            return False
        # keys that plans of earlier versions lack, and files they did not check: compared without them
        previous |= {k: plan[k] for k in ADDED_PLAN_KEYS if k in plan and k not in previous}
        compared = _as_checked_before(plan, previous)
        repaired = self.unreadable()
        if previous != compared and _without_files(previous, repaired) == _without_files(compared, repaired):
            self.record_plan(plan)
            self.unreadable_path.unlink(missing_ok=True)
            return True
        if previous != compared:
            diffs = differences(previous, compared)
            changed = _listed(diffs)
            if (self.root.parent / MANIFEST_FILE).is_file():
                raise PlanMismatchError(
                    f"{self.root.parent} holds a finished dataset built from a different plan (differs in "
                    f"{changed}): build into a new output path, use `eoshard refresh` to add new acquisitions to "
                    "it, or delete the folder to rebuild it"
                )
            if not self.done():
                self._start_over(diffs)
                return False
            raise PlanMismatchError(
                f"{self.root.parent} holds an unfinished build of a different plan (differs in {changed}): "
                "use a new output path, or delete the folder to start over"
            )
        return True

    def _refuse_unrecorded_dataset(self) -> None:
        """A finished dataset whose bookkeeping is gone (copied without ``_build/``) is never built over."""
        out = self.root.parent
        if (out / MANIFEST_FILE).is_file():
            raise PlanMismatchError(
                f"{out} holds a dataset ({MANIFEST_FILE}) that no build records there ({BUILD_DIR}/plan.json is "
                "missing, e.g. a copy of a dataset without its bookkeeping): build into a new output path, or delete "
                "the folder to build it again"
            )

    def _start_over(self, changed: list[str]) -> None:
        """Remove an unfinished build that committed no shard: its stores may hold values of the old plan that no
        record vouches for (LMDB's are put before the record), which a resume would keep as they are."""
        out = self.root.parent
        for folder in (out / LMDB_DIR, out / ZARR_DIR, self.root):
            shutil.rmtree(folder, ignore_errors=True)
        logging.getLogger(__name__).warning(
            "%s held an unfinished build of another plan (it differed in %s) that had committed no shard: "
            "starting over with this one",
            out,
            _listed(changed, files=False),
        )

    def recorded_plan(self) -> dict[str, Any]:
        """The plan this build recorded (empty when none is)."""
        return json.loads(self.plan_path.read_text()) if self.plan_path.is_file() else {}

    def record_plan(self, plan: dict[str, Any]) -> None:
        atomic_write(self.plan_path, record_json(plan))

    def _path(self, shard: int) -> Path:
        return self.root / "commits" / f"shard-{shard:06d}.json"

    def commit(self, shard: int, record: dict[str, Any]) -> None:
        atomic_write(self._path(shard), record_json(record))

    def done(self) -> set[int]:
        folder = self.root / "commits"
        if not folder.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in folder.glob("shard-*.json")}

    def records(self) -> Iterator[dict[str, Any]]:
        """The commit records in shard order, read one at a time (the driver never holds them all)."""
        for k in sorted(self.done()):
            yield orjson.loads(self._path(k).read_bytes())


SHOWN_DIFFERENCES = 5


def _without_files(plan: dict[str, Any], files: dict[str, list[str]]) -> dict[str, Any]:
    """``plan`` without the sizes of ``files`` (bands by product)."""
    if not files or "file_sizes" not in plan:
        return plan
    sizes = {
        product: {band: size for band, size in bands.items() if band not in files.get(product, [])}
        for product, bands in plan["file_sizes"].items()
    }
    return {**plan, "file_sizes": sizes}


def _as_checked_before(plan: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """``plan`` without the sizes of the files of a product that ``previous`` recorded sizes of, other than
    those: a build of an earlier version checked fewer files (not the SCL or QA_PIXEL masks, before 2026-12-06)."""
    old, new = previous.get("file_sizes"), plan.get("file_sizes")
    if not old or not new:
        return plan
    sizes = {
        product: {band: size for band, size in bands.items() if band in old[product]} if product in old else bands
        for product, bands in new.items()
    }
    return {**plan, "file_sizes": sizes}


def _listed(changed: list[str], files: bool = True) -> str:
    """The keys two plans differ in, as a message lists them (the first few), and, with ``files``, what a file's size
    says about the samples written. Other products have other files: their sizes are not listed one by one."""
    shown = changed
    if "products" in changed:
        shown = [k for k in changed if not k.startswith("file_sizes.")]
        shown += ["file_sizes"] if len(shown) < len(changed) else []
        shown.sort()
    said = ", ".join(shown[:SHOWN_DIFFERENCES])
    if len(shown) > SHOWN_DIFFERENCES:
        said += f" and {len(shown) - SHOWN_DIFFERENCES} more"
    replaced = [
        k.removeprefix("file_sizes.").replace(".", " asset ") for k in changed if k.startswith("file_sizes.")
    ]
    if files and replaced and "products" not in changed:
        said += (
            f"; the file of product {replaced[0]} is not the size it was when this build started: it was replaced, "
            "and the samples written read the old one"
        )
    return said


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two JSON objects (``config.period.end``, ``labels_sha256``)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix or "the whole plan"]
    out: list[str] = []
    for key in sorted({*old, *new}):
        if old.get(key) != new.get(key):
            out += differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
    return out


def record_json(data: dict[str, Any]) -> bytes:
    """Compact JSON with sorted keys: what ``json.dumps(data, sort_keys=True, separators=(",", ":"))`` wrote, value
    for value (a record's numbers are finite: orjson writes NaN as null). orjson, not ``json``: a quarter tile's
    record (its histograms are 60,000 integers) took 8 ms to dump and 7 ms to read back with ``json``, 0.4 and 1.4
    with orjson; on a cluster's one driver that was most of a shard's commit."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
