"""The direct shard task: read a shard's windows from the source files, then make and write the shard.

No Dask graph is built or computed inside: the task reads each run of neighbouring patches in one window per
resolution group (blocks decoded once per process while cached), computes the run's labels in one pass, and
hands numpy arrays to ``materialize_shard``, the same function the graph engine feeds.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from odc.geo.geobox import GeoBox

from eoshard.pipeline.direct import (
    GroupSource,
    Sweep,
    drop_retired_blocks,
    expect_sizes,
    prefetch_group_window,
    read_alone,
    read_group_window,
    tune_malloc,
    use_block_cache,
    use_block_store,
    use_open_files,
)
from eoshard.pipeline.grid import nested_grid
from eoshard.pipeline.label_windows import LabelSource, label_layers
from eoshard.pipeline.landsat import qa_valid
from eoshard.pipeline.scl import scl_valid
from eoshard.pipeline.settings import check_settings, env_count
from eoshard.pipeline.shards.task import ShardSpec, materialize_shard

if TYPE_CHECKING:  # loaded with a build's sources that make reflectance or indices (xarray: see derived.py)
    from eoshard.pipeline.shards.derived import Derived


@dataclass(frozen=True)
class PatchOrder:
    """The build's patch order (``patches.stripe_order``): stripes ``width`` px wide (0: one stripe) with edges
    ``offset`` px left of the multiples of ``width``, each walked down; ``step`` is the stride of the patch
    lattice, which starts at column 0 (None: patches off a lattice, e.g. centred on parcels)."""

    width: int = 0
    offset: int = 0
    step: int | None = None


Meetings = tuple[tuple[float, float, float, float], ...]  # see ``meeting``
Origins = tuple[tuple[int, int], ...]  # a shard's patch origins, in sweep order
T = TypeVar("T")

# How many of the shards a worker runs next a task reads ahead for (remote files only, see ``read_shard``): on the
# quarter tile, about the time a new block row takes to come over the network (0: no reads ahead). A task is told
# of up to ``MAX_AHEAD_SHARDS``.
AHEAD_SHARDS = env_count("EOSHARD_AHEAD_SHARDS", 8)
MAX_AHEAD_SHARDS = 16


@dataclass(frozen=True)
class ShardSources:
    """What every shard task of a build reads from (one value per build, shared by the tasks)."""

    grid: GeoBox  # the base grid
    groups: Mapping[str, GroupSource]  # resolution groups by name, each on the base grid zoomed out
    factors: Mapping[str, int]  # zoom factor of each group
    labels: LabelSource | None = None
    scl: GroupSource | None = None  # the SCL on its own grid, with mask: scl
    scl_factor: int = 1
    scl_invalid: tuple[int, ...] = ()
    hr: GroupSource | None = None  # the paired finer source, one step
    hr_factor: int = 1
    label_zoom: int = 1  # label pixels per base pixel along each axis (``labels.resolution``)
    block_store: str | None = None  # the build's store of decoded blocks on each machine (see ``direct.blocks``)
    block_store_bytes: int = 0  # what waits in that store at once, estimated (0: its default bound)
    block_cache_bytes: int = 0  # each worker's block cache for a block row of the stripes (0: its default bound)
    open_files: int = 0  # the files each worker keeps open for a block row of the stripes (0: its default)
    order: PatchOrder | None = None  # None: no hints to the block cache
    qa: GroupSource | None = None  # Landsat's qa_pixel on its own grid, with mask: qa_pixel
    qa_factor: int = 1
    qa_bits: int = 0  # the QA_PIXEL bits that make a pixel invalid
    derived: Derived | None = None  # reflectance and indices from the groups' digital numbers (None: neither)
    file_sizes: Mapping[str, int] = field(default_factory=dict)  # href without query -> size when planned

    def for_shards(self, shards: Sequence[tuple[Origins, int]]) -> ShardSources:
        """The same sources with only the parcels that the windows of ``shards`` (each its patch origins and
        size on the base grid) touch: what the worker that runs them needs, whatever the AOI's size."""
        if self.labels is None or not shards:
            return self
        areas = np.array([_shard_area(self.grid, origins, size) for origins, size in shards], dtype=object)
        return replace(self, labels=self.labels.within(areas))

    def with_hrefs(self, hrefs: Mapping[str, str]) -> ShardSources:
        """The same sources with each asset href found in ``hrefs`` replaced (the items signed again)."""

        def again(group: GroupSource | None) -> GroupSource | None:
            return None if group is None else group.with_hrefs(hrefs)

        groups = {name: group.with_hrefs(hrefs) for name, group in self.groups.items()}
        return replace(self, groups=groups, scl=again(self.scl), hr=again(self.hr), qa=again(self.qa))


def held(value: T, *after: Any) -> T:
    """``value`` itself: a task whose result a worker keeps for the shard tasks that name it (the build's sources,
    where the runs meet), and that the scheduler runs again where they go if the workers holding it die (scattered
    data dies with them, and the tasks that need it wait for it forever). ``after``: results it waits for, unused.
    It lives here, in the module the workers import for the shard tasks: a task's function from the flows would
    load their dataframes into every worker."""
    return value


def _shard_area(grid: GeoBox, origins: Origins, size: int) -> Any:
    """The outline (a shapely polygon in the grid's CRS) of the box around the patches at ``origins``."""
    rows, cols = zip(*origins, strict=True)
    return grid[min(rows) : max(rows) + size, min(cols) : max(cols) + size].extent.geom


@dataclass(frozen=True)
class Run:
    """Patches side by side in one patch row: read as one window."""

    row: int
    col0: int
    col1: int
    members: tuple[tuple[int, int], ...]  # (index into the shard's patches, column) of each patch


def patch_runs(origins: Sequence[tuple[int, int]], size: int) -> list[Run]:
    """The shard's patches grouped into runs of the same row whose windows touch or overlap."""
    runs: list[Run] = []
    order = sorted(range(len(origins)), key=lambda n: origins[n])
    for n in order:
        row, col = origins[n]
        last = runs[-1] if runs else None
        if last is not None and last.row == row and col <= last.col1:
            runs[-1] = Run(row, last.col0, max(last.col1, col + size), (*last.members, (n, col)))
        else:
            runs.append(Run(row, col, col + size, ((n, col),)))
    return runs


_reading = 0  # shard tasks reading in this process
_reading_lock = threading.Lock()


def read_shard(
    spec: ShardSpec, sources: ShardSources, size: int, meetings: Meetings = (), ahead: Sequence[Origins] = ()
) -> dict[str, Any]:
    """Read the windows of the shard's patches, then ``materialize_shard`` (see there for what it returns).

    ``meetings``: where the runs of shards given to different workers meet (see ``meeting``): the blocks both
    sides read go to the machine's store, so that one worker decodes them and the other reads them back.
    ``ahead``: the patch origins of the shards this worker runs next: their blocks of remote files are fetched in
    the background while this shard is read and made (see ``direct.mosaic.prefetch_group_window``).
    """
    images, labels, paired, masks = read_shard_windows(spec, sources, size, meetings, ahead)
    return materialize_shard(spec, images, labels, paired, masks=masks)


def read_shard_windows(
    spec: ShardSpec,
    sources: ShardSources,
    size: int,
    meetings: Meetings = (),
    ahead: Sequence[Origins] = (),
    ahead_sources: ShardSources | None = None,
) -> tuple[Any, Any, Any, Any]:
    """``read_shard``'s reads without the shard: per patch, its images by group, label layers, paired windows and
    valid mask (see ``materialize_shard``). ``ahead_sources``: what the next shards will read (default ``sources``).
    """
    global _reading
    check_settings()
    tune_malloc()
    use_block_store(sources.block_store, sources.block_store_bytes)
    use_block_cache(sources.block_cache_bytes)
    use_open_files(sources.open_files)
    expect_sizes(sources.file_sizes)
    for origins in ahead[:AHEAD_SHARDS]:  # first: a worker's first shards fetch their block row on both pools
        _read_ahead(origins, ahead_sources or sources, size, meetings)
    with _reading_lock:
        _reading += 1
        read_alone(_reading == 1)
    try:
        return _read_windows(spec, sources, size, meetings)
    finally:
        with _reading_lock:
            _reading -= 1
            read_alone(_reading == 1)


_ahead_done: dict[Origins, None] = {}  # shards read ahead for in this process (the latest ones)


def _read_ahead(origins: Origins, sources: ShardSources, size: int, meetings: Meetings) -> None:
    """Start fetching the remote blocks a shard with patches at ``origins`` will read (once per shard)."""
    if origins in _ahead_done:
        return
    _ahead_done[origins] = None
    if len(_ahead_done) > 2 * MAX_AHEAD_SHARDS:
        del _ahead_done[next(iter(_ahead_done))]
    for run, rows, sweep in _runs(origins, sources, size, meetings):
        for name, group in sources.groups.items():
            f = sources.factors[name]
            prefetch_group_window(group, *_zoom_out(rows, run, f), sweep.scaled(1 / f))
        for source, f in ((sources.scl, sources.scl_factor), (sources.qa, sources.qa_factor)):
            if source is not None:
                prefetch_group_window(source, *_class_slices(f, rows, run), sweep.scaled(1 / f))
        if sources.hr is not None:
            f = sources.hr_factor
            prefetch_group_window(sources.hr, *_zoom_in(rows, run, f), sweep.scaled(f))


def _runs(
    origins: Sequence[tuple[int, int]], sources: ShardSources, size: int, meetings: Meetings
) -> Iterator[tuple[Run, slice, Sweep]]:
    """The runs of patches at ``origins``, each with its rows of the base grid and its place in the sweep."""
    for run in patch_runs(origins, size):
        sweep = run_sweep(sources.order, run, size, (sources.grid.shape[0], sources.grid.shape[1]), meetings)
        yield run, slice(run.row, run.row + size), sweep


def _read_windows(
    spec: ShardSpec, sources: ShardSources, size: int, meetings: Meetings
) -> tuple[Any, Any, Any, Any]:
    """Images, labels, paired and mask windows of each patch, read run by run."""
    n = len(spec.keys)
    names = list(sources.groups)
    if sources.derived is not None and sources.derived.indices:
        names.append(sources.derived.index_group)
    images: dict[str, list[Any]] = {name: [None] * n for name in names}
    labels: dict[str, list[Any]] = {}
    if sources.labels is not None:
        labels = {name: [None] * n for name in sources.labels.layers}
    paired: dict[str, list[Any]] = {"hr": [None] * n} if sources.hr is not None else {}
    masks: list[Any] | None = [None] * n if sources.scl is not None or sources.qa is not None else None
    for run, rows, sweep in _runs(spec.origins, sources, size, meetings):
        windows = {}
        for name, group in sources.groups.items():
            f = sources.factors[name]
            windows[name] = read_group_window(group, *_zoom_out(rows, run, f), sweep.scaled(1 / f))
        if sources.derived is not None:
            windows = sources.derived.windows(windows, sources.factors)
        for name, window in windows.items():
            _cut(images[name], run, window, size, sources.factors[name])
        if sources.labels is not None:
            z = sources.label_zoom
            grid = sources.grid if z == 1 else nested_grid(sources.grid, z)
            area = grid[rows.start * z : rows.stop * z, run.col0 * z : run.col1 * z]
            for layer, values in label_layers(sources.labels, area).items():
                _cut(labels[layer], run, values, size, 1, zoom_in=z)
        if sources.scl is not None and masks is not None:
            valid = partial(scl_valid, invalid=sources.scl_invalid)
            _cut(masks, run, _class_window(sources.scl, sources.scl_factor, rows, run, sweep, valid), size, 1)
        if sources.qa is not None and masks is not None:
            valid = partial(qa_valid, bits=sources.qa_bits)
            _cut(masks, run, _class_window(sources.qa, sources.qa_factor, rows, run, sweep, valid), size, 1)
        if sources.hr is not None:
            f = sources.hr_factor
            hr = read_group_window(sources.hr, *_zoom_in(rows, run, f), sweep.scaled(f))[0]
            _cut(paired["hr"], run, hr, size, 1, zoom_in=f)
        if _reading == 1:  # no other shard of this process may still need the blocks the sweep has passed
            drop_retired_blocks()
    return images, labels, paired, masks


def stripe_reach(order: PatchOrder, edge: int, size: int) -> int:
    """How far the last patches (``size`` px) left of a stripe edge at column ``edge`` reach over it: on the
    lattice, the last patch starting before the edge; off a lattice, a whole patch."""
    return size if order.step is None else (edge - 1) // order.step * order.step + size - edge


def run_sweep(
    order: PatchOrder | None, run: Run, size: int, grid_shape: tuple[int, int], meetings: Meetings = ()
) -> Sweep:
    """Where ``run`` lies in the build's sweep, on the base grid of ``grid_shape`` (see ``direct.mosaic.Sweep``).

    The columns just right of a stripe edge are read by both stripes when the last patches left of the edge
    reach over it. On a lattice, the patches after the run start a ``step`` lower (none below the grid's last
    whole patch), or a ``step`` right in its row. ``meetings``: where the workers' runs of shards meet.
    """
    grid_height, grid_width = grid_shape
    if order is None:
        return Sweep(meetings=meetings)
    last = max(col for _, col in run.members)
    shared = []
    if order.width:
        first_stripe = (run.col0 + order.offset) // order.width
        last_stripe = (last + order.offset) // order.width
        for edge in (first_stripe * order.width - order.offset, (last_stripe + 1) * order.width - order.offset):
            reach = stripe_reach(order, edge, size)
            if 0 < edge < grid_width and reach > 0:
                shared.append((float(edge), float(edge + reach)))
    if order.step is None:
        return Sweep(tuple(shared), meetings=meetings)
    below = run.row + order.step
    done_row = float(below) if below + size <= grid_height else math.inf
    after = last + order.step  # the next patch of the row, if it lies in the grid and the stripe
    row_ends = after + size > grid_width or (
        bool(order.width) and (after + order.offset) // order.width != (last + order.offset) // order.width
    )
    # where the run ends its stripe's row, no later read needs the blocks above ``done_row`` right of it either
    # (blocks reaching past the grid's last patch, or into the next stripe: those are shared, in the store)
    return Sweep(tuple(shared), done_row, math.inf if row_ends else float(after), meetings)


def meeting(
    order: PatchOrder | None, before: Sequence[tuple[int, int]], after: Sequence[tuple[int, int]], size: int
) -> Meetings:
    """Where the sweep passes from one worker's shards to another's, given the patch origins of the last shard
    before and the first after: ``(lo, hi, x0, x1)``, such that a block in the columns ``x0:x1`` (the stripe, with
    the reach of its last patches) that ends below row ``lo`` and starts above row ``hi`` is read on both sides
    (``after``'s first patch row starts at ``lo``, ``before``'s last ends at ``hi``). None between two stripes:
    the columns they share go to the store anyway."""
    if not before or not after:
        return ()
    last, first = before[-1], after[0]  # a shard's patches are in sweep order
    x0, x1 = -math.inf, math.inf
    if order is not None and order.width:
        stripe = (last[1] + order.offset) // order.width
        if (first[1] + order.offset) // order.width != stripe:
            return ()
        x0, x1 = (
            float(stripe * order.width - order.offset),
            float((stripe + 1) * order.width - order.offset + size),
        )
    return ((float(first[0]), float(last[0] + size), x0, x1),)


def _class_window(
    source: GroupSource, f: int, rows: slice, run: Run, sweep: Sweep, valid: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The ``(time, h, w)`` valid mask from the classes (SCL) or bits (QA_PIXEL) of a run on the base grid: ``valid``
    of the pixels of ``source`` (``f`` times coarser) that cover it, repeated and cut to it (a patch need not start
    on a class pixel's edge: the patches align with the bands' groups, not the mask's). ``valid`` goes pixel by
    pixel, so it runs on the coarse pixels, before they are repeated."""
    window = _class_slices(f, rows, run)
    r0, c0 = window[0].start, window[1].start
    values = valid(read_group_window(source, *window, sweep.scaled(1 / f))[:, 0])
    if f > 1:
        values = values.repeat(f, axis=-2).repeat(f, axis=-1)
    dy, dx = rows.start - r0 * f, run.col0 - c0 * f
    return values[..., dy : dy + rows.stop - rows.start, dx : dx + run.col1 - run.col0]


def _zoom_out(rows: slice, run: Run, factor: int) -> tuple[slice, slice]:
    return slice(rows.start // factor, rows.stop // factor), slice(run.col0 // factor, run.col1 // factor)


def _zoom_in(rows: slice, run: Run, factor: int) -> tuple[slice, slice]:
    return slice(rows.start * factor, rows.stop * factor), slice(run.col0 * factor, run.col1 * factor)


def _class_slices(f: int, rows: slice, run: Run) -> tuple[slice, slice]:
    """The pixels of a class source ``f`` times coarser that cover the run (its edges need not be on theirs)."""
    return slice(rows.start // f, -(-rows.stop // f)), slice(run.col0 // f, -(-run.col1 // f))


def _cut(target: list[Any], run: Run, window: np.ndarray, size: int, factor: int, *, zoom_in: int = 1) -> None:
    """Put each member patch's columns of ``window`` (a run read at 1/``factor`` or ``zoom_in`` x) in ``target``."""
    for n, col in run.members:
        start = (col - run.col0) * zoom_in // factor
        target[n] = window[..., start : start + size * zoom_in // factor]
