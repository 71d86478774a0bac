"""Running a build plan's shards on Dask: commit log, parallel LMDB writers, resume; then `finalize`."""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
from distributed import Client, KilledWorker, as_completed
from distributed import Future as DaskFuture
from distributed.client import FutureCancelledError

from eoshard.catalog.credentials import redact_text
from eoshard.flows.block_cache import cache_bytes_for, open_files_for, smallest_memory_limit, store_bytes
from eoshard.flows.errors import FlowsError
from eoshard.flows.finalize import finalize
from eoshard.flows.signing import can_sign_again, modifier_names, signed_again
from eoshard.flows.worker_checks import (
    Expected,
    JoinedUnfitError,
    StallWatch,
    check_output_shared,
    check_workers,
    killed_worker_note,
    run_checked,
)
from eoshard.pipeline.cube import stackstac_ready
from eoshard.pipeline.direct import release_build, tune_malloc_for_commits
from eoshard.pipeline.errors import (
    AssetReadError,
    PipelineError,
    ShardWriteError,
    blames_the_file,
    changed_since_planning,
    read_remedy,
    refused,
    serves_no_ranges,
    shown_href,
    unreachable,
)
from eoshard.pipeline.faults import fault_point
from eoshard.pipeline.shards.commits import CommitLog, remove_leftovers
from eoshard.pipeline.shards.layout import LMDB_DIR, ZARR_DIR
from eoshard.pipeline.shards.lmdb_store import LmdbWriter, part_name
from eoshard.pipeline.shards.reads import (
    MAX_AHEAD_SHARDS,
    Meetings,
    Origins,
    ShardSources,
    held,
    meeting,
    read_shard,
)
from eoshard.pipeline.shards.samples import format_version
from eoshard.pipeline.shards.spool import read_spooled, release_spooled, spool_dir
from eoshard.pipeline.shards.task import ShardSpec
from eoshard.pipeline.shards.zarr_store import create_store

if TYPE_CHECKING:
    from eoshard.flows.build import BuildPlan

ShardTask = Callable[["BuildPlan", int, list[Any]], Any]
RERUN = "rerun the same build to finish"  # what a build's error says to do, once the cause is dealt with
SCHEDULER_LOST = "scheduler-connection-lost"  # why distributed cancels every future when its scheduler is gone


class SchedulerLostError(FlowsError):
    """The build's Dask scheduler went away (killed, its machine gone) while the shards were written."""


def worker_cache_bytes(plan: BuildPlan, workers: Mapping[str, Mapping[str, Any]]) -> int:
    """The block cache the build of ``plan`` gives each of ``workers`` (``scheduler_info()["workers"]``; 0: the
    default, see ``block_cache.cache_bytes_for``)."""
    limit = smallest_memory_limit(workers)
    return cache_bytes_for(plan.sources, plan.grid.shape[1], limit, patch_size=plan.config.patches.size)


MAX_FRUITLESS_SIGNINGS = 3  # signings in a row that let no shard be committed: the store refuses more than expiry


def run_shards(
    plan: BuildPlan,
    client: Client,
    shard_task: ShardTask,
    on_progress: Callable[[int, int], None] | None,
    then: str = RERUN,
) -> dict[str, Any]:
    """Write every uncommitted shard, then the index, STAC Collection and ``dataset.json`` (last). ``then``: what
    an error says to do to finish (a refresh's: run the refresh again)."""
    check_workers(client, then)
    config = plan.config
    out = config.output.path
    log = CommitLog(out)
    fingerprint = plan.fingerprint()
    if log.start(fingerprint):
        remove_leftovers(out)
        shutil.rmtree(spool_dir(out), ignore_errors=True)  # values of shards a killed build left
    else:
        if "zarr" in config.output.formats:
            create_store(
                out / ZARR_DIR,
                len(plan.patches),
                plan.layouts(),
                shard_size=config.output.shard_size,
                attrs={
                    "format_version": format_version(plan.other_dates),
                    "groups": plan.groups,
                    "dates": plan.dates,
                    **({"sensor_dates": plan.other_dates} if plan.other_dates else {}),
                    "keys": [p.key for p in plan.patches],
                },
                nan_fill=plan.nan_fill(),
            )
        log.record_plan(fingerprint)
    expected = check_output_shared(client, out, then)
    try:
        submitter = _write_shards(plan, client, shard_task, on_progress, then, log, expected)
    finally:
        expected.remove()  # before the dataset's files are listed and summed
    return finalize(submitter.plan, log)


def _write_shards(
    plan: BuildPlan,
    client: Client,
    shard_task: ShardTask,
    on_progress: Callable[[int, int], None] | None,
    then: str,
    log: CommitLog,
    expected: Expected,
) -> ShardSubmitter:
    """Submit every uncommitted shard and commit each as it completes (see ``run_shards``)."""
    out = plan.config.output.path
    shards = plan.shards()
    done = log.done()
    todo = {k: shard_task(plan, k, shard) for k, shard in enumerate(shards) if k not in done}
    if on_progress is not None:
        on_progress(len(done), len(shards))
    submitter = ShardSubmitter(plan, client, todo, expected)
    # shard and future by the future's key: a lookup per completion, not a scan
    running = {f.key: (k, f) for k, f in ((k, submitter.submit(k)) for k in todo)}
    writers = _lmdb_writers(plan, out)
    # one thread per LMDB environment: each is its environment's only writer; environments go in parallel
    executors = {part: ThreadPoolExecutor(max_workers=1, thread_name_prefix=part) for part in writers}
    pending: list[Future[None]] = []
    failures: list[PipelineError] = []
    count = len(done)
    watch = StallWatch(client, lambda: len(running))
    try:
        completed = as_completed([f for _, f in running.values()])
        for future in completed:
            shard, _ = running.pop(future.key)  # released once committed: results never pile up on the workers
            try:
                result = future.result()
            except ShardWriteError:
                raise  # a full disk fails every other shard too: stop now
            except FutureCancelledError as err:
                if err.reason != SCHEDULER_LOST:
                    raise
                address = getattr(client.scheduler, "address", "?")
                raise SchedulerLostError(
                    f"lost the Dask scheduler ({address}) while writing the shards: {_committed(pending, log)} of "
                    f"{len(shards)} shards are committed and stay valid; start the scheduler and its workers again, "
                    f"then {then}"
                ) from None
            except KilledWorker as err:  # its workers ran out of memory, or crashed: so would the other shards'
                count_note = f"{_committed(pending, log)} of {len(shards)} shards are committed and stay valid"
                note = killed_worker_note(client, shard, err, then, watch.seen)
                raise FlowsError(f"{note} ({count_note})") from None
            except JoinedUnfitError as err:  # every shard that worker takes would fail the same
                count_note = f"{_committed(pending, log)} of {len(shards)} shards are committed and stay valid"
                raise FlowsError(f"{err} ({count_note})") from None
            except Exception as err:
                if refused(str(err)) and submitter.can_submit_again(shard):
                    again = submitter.submit_again(shard, str(err))
                    running[again.key] = (shard, again)
                    completed.add(again)
                    continue
                if isinstance(err, PipelineError) and not isinstance(err, AssetReadError):
                    failures.append(err)  # the other shards go on and are committed as they complete
                    continue
                error = _asset_error(submitter.plan, shard, err, submitter.signatures, then)
                error.__cause__ = err
                if blames_the_file(str(err)) and (asset := failed_asset(submitter.plan, str(err))) is not None:
                    log.record_unreadable(asset[0], asset[1])  # a rerun accepts it repaired, at another size
                if changed_since_planning(str(err)):
                    raise _stopped(error, len(shards), _committed(pending, log), TWO_VERSIONS) from err
                if fails_every_shard(str(err)):
                    raise _stopped(error, len(shards), _committed(pending, log)) from err
                failures.append(error)
                continue
            finally:
                future.release()
            submitter.committed(shard)
            part = plan.lmdb_part(shard)
            if part is None:
                _commit(log, shard, result, None)
            else:
                pending.append(executors[part].submit(_commit, log, shard, result, writers[part]))
            del result
            pending = _raise_failed(pending)
            count += 1
            if on_progress is not None:
                on_progress(count, len(shards))
        committed = _committed(pending, log)
        if failures:
            raise _first_failure(failures, len(shards), committed)
    except BaseException:
        client.cancel([f for _, f in running.values()])
        raise
    finally:
        watch.stop()
        for executor in executors.values():
            executor.shutdown(wait=True)
        for writer in writers.values():
            writer.close()
        _release_workers(plan, client)
    return submitter


def _release_workers(plan: BuildPlan, client: Client) -> None:
    """Every worker lets go of what the build's reads left: its machine's store of decoded blocks (a killed build's
    goes when its output is built again, see ``direct.blocks.use_block_store``), its decoded blocks and its open
    files (``direct.blocks.release_build``)."""
    if plan.sources is None:
        return
    with contextlib.suppress(Exception):  # a lost worker keeps nothing that matters: the next build's start trims
        client.run(release_build, plan.sources.block_store)


@dataclass(frozen=True)
class DirectShard:
    """A shard whose task reads its own pixels: submitted with the build's shared sources (sent once, see ``held``).

    ``task`` is called as ``read_shard(spec, sources, size, meetings, ahead)`` is (a refresh's puts the held
    samples' old steps beside the new ones it reads)."""

    spec: ShardSpec
    size: int
    task: Callable[..., dict[str, Any]] = read_shard


@dataclass(frozen=True)
class GraphShard:
    """A shard read through the cubes' graph: ``task(*args)``, whose ``args`` hold windows of the lazy cubes (the
    cluster computes them first, as the graph's tasks)."""

    task: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]


class ShardSubmitter:
    """Submits the shard tasks: neighbours (in patch order) to the same worker, in order, so that a worker decodes
    the source blocks its shards share once (see ``eoshard.pipeline.direct.blocks``), and every task told where the
    runs meet; a lost worker's shards go to the others (loose restrictions). Shards read through the cubes' graph
    share its chunks as tasks, where the scheduler places them.

    A shard whose reads the store refused (HTTP 401/403) is submitted again: after the items are signed again
    (``eoshard.flows.signing``) when it was refused with the newest signatures. Signatures refused
    ``MAX_FRUITLESS_SIGNINGS`` times in a row with no shard committed in between are not a matter of expiry:
    the shard fails with the error that says so.
    """

    def __init__(self, plan: BuildPlan, client: Client, todo: dict[int, Any], expected: Expected) -> None:
        self.plan, self.client, self.todo, self.expected = plan, client, todo, expected
        self.workers = sorted(client.scheduler_info().get("workers", {}))
        self.per = max(1, -(-len(todo) // max(1, len(self.workers))))
        self.tasks = list(todo.values())
        self.positions = {k: position for position, k in enumerate(todo)}
        meetings = _meetings(plan, self.tasks, self.per)
        # sent once, not inside every task (on 100 workers they are two thirds of the size of a task's own spec)
        self.meetings: DaskFuture = self._held(meetings)
        self.token = uuid.uuid4().hex[:8]
        self.shared: DaskFuture | dict[str, DaskFuture] | None = None  # the sources, on every worker or one each
        if any(isinstance(t, DirectShard) for t in self.tasks):
            self.shared = self._scatter()
        self.signatures = 0  # how often the items were signed again
        self.signed_with: dict[int, int] = {}  # shard -> the signatures its task was submitted with
        self.fruitless = 0  # signings since a shard read with the newest signatures was committed

    def _sources(self) -> ShardSources | None:
        """The plan's sources, with what waits in each machine's block store for the most workers on one machine,
        and the block cache and open files the workers need for a block row of the stripes."""
        if self.plan.sources is None:
            return None
        workers = self.client.scheduler_info().get("workers", {})
        hosts = Counter(str(w.get("host")) for w in workers.values())
        wanted = store_bytes(self.plan.sources, max(hosts.values(), default=1))
        cache = worker_cache_bytes(self.plan, workers)
        files = open_files_for(self.plan.sources)
        return replace(self.plan.sources, block_store_bytes=wanted, block_cache_bytes=cache, open_files=files)

    def _scatter(self) -> DaskFuture | dict[str, DaskFuture]:
        """The sources on the workers: on each, with only the parcels its run of shards touches (the AOI's
        parcels on every worker would make each worker's memory follow the AOI); the same on all where there are
        no parcels, or no workers to give runs to.

        A run's sources are a task's result, not scattered data: the scheduler keeps the task, so when the worker
        that holds them dies they are made again where its shards go (scattered data would die with it, and its
        shards with it)."""
        sources = self._sources()
        if sources is None or sources.labels is None or not self.workers:
            return self._held(sources)
        runs: dict[str, list[tuple[Origins, int]]] = {}
        for position, task in enumerate(self.tasks):
            if isinstance(task, DirectShard):
                runs.setdefault(self._worker(position), []).append((task.spec.origins, task.size))
        with warnings.catch_warnings():
            # one run's parcels, sent once: what distributed's warning about large graphs asks for
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            return {
                # after the meetings, a task with no restriction: distributed (2026.8) gives a task that waits for
                # no other and may run on other workers than its own (``allow_other_workers``) to a new worker only
                # when its own is that one, so once every worker has died it would never run again
                worker: self.client.submit(
                    held,
                    sources.for_shards(shards),
                    self.meetings,
                    workers=[worker],
                    allow_other_workers=True,
                    pure=False,
                )
                for worker, shards in runs.items()
            }

    def _held(self, value: Any) -> DaskFuture:
        """``value`` as a task's result that the workers fetch when their tasks need it (see ``held``)."""
        return self.client.submit(held, value, pure=False)

    def _worker(self, position: int) -> str:
        """The worker given the run of shards that the task at ``position`` belongs to."""
        return self.workers[position // self.per]

    def submit(self, k: int) -> DaskFuture:
        position, task = self.positions[k], self.todo[k]
        self.signed_with[k] = self.signatures
        if isinstance(task, DirectShard):
            where: dict[str, Any] = {}
            if self.workers:
                where = {"workers": [self._worker(position)], "allow_other_workers": True}
            again = f"-{self.signatures}" if self.signatures else ""
            shared = self.shared[self._worker(position)] if isinstance(self.shared, dict) else self.shared
            return self.client.submit(
                run_checked, self.expected, task.task, task.spec, shared, task.size, self.meetings,
                _ahead(self.tasks, position, self.per), key=f"shard-{k}-{self.token}{again}", priority=-position,
                pure=False, **where,
            )  # fmt: skip
        # a graph's shard goes where the scheduler places it: restrictions would reach every task of its graph, and
        # distributed (2026.8) never runs again a restricted task that waits for no other (the graph's reads) once
        # every worker it could run on has died, so the build would hang (see ``_scatter``)
        checked = dask.delayed(run_checked, pure=True)(self.expected, task.task, *task.args)
        return self.client.compute(checked, priority=-position)

    def committed(self, k: int) -> None:
        if self.signed_with.get(k) == self.signatures:
            self.fruitless = 0

    def can_submit_again(self, k: int) -> bool:
        """Whether shard ``k``, refused by the store, is worth submitting again."""
        if self.signed_with[k] < self.signatures:
            return True  # refused with older signatures than the newest
        return can_sign_again(self.plan) and self.fruitless < MAX_FRUITLESS_SIGNINGS

    def submit_again(self, k: int, message: str) -> DaskFuture:
        """Shard ``k`` submitted again, after signing the items again when its signatures were the newest."""
        if self.signed_with[k] == self.signatures:
            logging.getLogger(__name__).warning(
                "the store refused to serve shard %d's files (%s): signing the products again with %s and "
                "submitting the refused shards again", k, _first_line(message), modifier_names(self.plan.config),
            )  # fmt: skip
            self.plan = signed_again(self.plan)
            self.shared = self._scatter()
            self.signatures += 1
            self.fruitless += 1
        return self.submit(k)


def _first_line(message: str) -> str:
    """The first line of a reader's message, without signatures (they are credentials)."""
    return redact_text(message.strip().splitlines()[0]) if message.strip() else "no message"


def _ahead(tasks: list[Any], position: int, per: int) -> tuple[Origins, ...]:
    """The patch origins of the shards the same worker runs after the one at ``position`` (see ``read_shard``)."""
    end = min(len(tasks), (position // per + 1) * per, position + 1 + MAX_AHEAD_SHARDS)
    return tuple(tuple(t.spec.origins) for t in tasks[position + 1 : end] if isinstance(t, DirectShard))


def _meetings(plan: BuildPlan, tasks: list[Any], per: int) -> Meetings:
    """Where each worker's run of ``per`` shards meets the next worker's (see ``read_shard``)."""
    order = plan.sources.order if plan.sources is not None else None
    found: Meetings = ()
    for start in range(per, len(tasks), per):
        before, after = tasks[start - 1], tasks[start]
        if isinstance(before, DirectShard) and isinstance(after, DirectShard):
            found += meeting(order, before.spec.origins, after.spec.origins, before.size)
    return found


def _lmdb_writers(plan: BuildPlan, out: Path) -> dict[str, LmdbWriter]:
    if "lmdb" not in plan.config.output.formats:
        return {}
    parts = [part_name(i) for i in range(plan.config.output.lmdb_parts)]
    tune_malloc_for_commits()  # each value's LMDB pages reused from commit to commit, not faulted in afresh
    return {part: LmdbWriter(out / LMDB_DIR / part) for part in parts}


def _committed(pending: list[Future[None]], log: CommitLog) -> int:
    """How many shards are committed once the commits under way are done (a build that stops says so)."""
    for commit in pending:
        commit.result()
    return len(log.done())


def _raise_failed(pending: list[Future[None]]) -> list[Future[None]]:
    for p in pending:
        if p.done():
            p.result()  # raises the writer's error here, in the driver
    return [p for p in pending if not p.done()]


def _commit(
    log: CommitLog,
    shard: int,
    result: dict[str, Any],
    writer: LmdbWriter | None,
) -> None:
    """LMDB values first (one transaction), then the commit record: a recorded shard is complete everywhere."""
    fault_point("lmdb-put")
    spool = result.get("spool")
    if writer is not None:
        if spool is None:
            writer.put_many(result["records"])
        else:
            writer.put_many(read_spooled(spool))
    fault_point("commit-record")
    record = {k: v for k, v in result.items() if k not in ("records", "spool")}
    log.commit(shard, {"shard": shard, **record})
    if spool is not None:
        release_spooled(spool)


def fails_every_shard(message: str) -> bool:
    """Whether a reader's error is one every other shard meets too: a server that cannot be reached or does not
    answer, that refuses the build's credentials (signing again is tried before), or that serves no byte ranges:
    waiting for each shard to fail in turn (minutes each, on a server that stopped answering) tells nothing more."""
    return unreachable(message) or refused(message) or serves_no_ranges(message)


SAME_SERVER = "the others read from the same server"
TWO_VERSIONS = "samples read from two versions of a file would not agree"


def _stopped(error: PipelineError, n_shards: int, n_committed: int, why: str = SAME_SERVER) -> PipelineError:
    """``error``, saying that the build stopped at it, ``why``, and how many shards are committed."""
    return type(error)(
        f"{error} (the build stopped at this shard: {why}; {n_committed} of {n_shards} shards are committed)"
    )


def _first_failure(failures: list[PipelineError], n_shards: int, n_committed: int) -> PipelineError:
    """The first shard's error, saying how many failed and how many are committed (and stay valid)."""
    first = failures[0]
    note = f" ({len(failures)} of {n_shards} shards failed, {n_committed} are committed)"
    error = type(first)(f"{first}{note}")
    error.__cause__ = first.__cause__ or first
    return error


def failed_asset(plan: BuildPlan, message: str) -> tuple[str, str, str] | None:
    """The product id, band and href (without query) of the file a reader's ``message`` quotes (None: none)."""
    for item in plan.items:
        ready = stackstac_ready(item)
        for band, asset in ready["assets"].items():
            href = shown_href(str(asset.get("href", "")))
            if href and (href in message or href.removeprefix("file://") in message):
                return str(ready["id"]), str(band), href
    return None


def _asset_error(
    plan: BuildPlan, shard: int, err: Exception, signings: int = 0, then: str = RERUN
) -> PipelineError:
    """Name the product and asset whose file failed (stackstac quotes the href in its message); ``signings``: how
    often the build signed its products again."""
    message = str(err)
    found = failed_asset(plan, message)
    if found is not None:
        product, band, href = found
        remedy = f"The shards committed so far stay valid: {read_remedy(message, then=then)}"
        if changed_since_planning(message):
            remedy = (
                "The shards committed so far read it as it was: build into a new output path, or delete this "
                "one, to read every sample from the files as they are now"
                if then == RERUN
                else f"The refresh's staged shards read it as it was: {then}, which starts them over"
            )
        elif refused(message) and signings:
            remedy = (
                "The shards committed so far stay valid: the store refused the files again after the build "
                f"signed the products again {signings} times ({modifier_names(plan.config)}): its "
                f"credentials or signatures are wrong, not expired; check them, then {then}"
            )
        return AssetReadError(
            f"could not read asset {band} of product {product} ({href}) while making shard "
            f"{shard}: {_first_line(message) if message.strip() else type(err).__name__}. {remedy}"
        )
    return PipelineError(f"shard {shard} failed: {type(err).__name__}: {redact_text(message)}")
