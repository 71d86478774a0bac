"""What a refresh takes from the existing dataset instead of the sources: held time steps of kept samples.

A kept sample's time steps of unchanged acquisitions are read back from the old shards (Zarr when the dataset has
it, else LMDB); its new steps come from the lazy cubes. Candidates the old dataset dropped (too few dates) have no
stored pixels, so all their steps come from the sources. Whether a date is kept depends on that date alone (its
valid fraction), so the old steps' decisions carry over; Zarr stores every date's fraction, LMDB only the kept ones
(the dropped ones then count as 0: still dropped, and an LMDB-only dataset never writes them).

With an SCL mask the old steps' valid masks are read back too (the stored mask is the image mask and the SCL mask,
so and-ing it again with the image mask of the stored pixels gives it back unchanged); the new steps' SCL comes
from the sources. The paired HR layers (one mosaic, not a time series) are read back for held samples when the
mosaic's products are the old dataset's; when the period's end brings other HR products, every sample's HR
window comes from the sources. Float groups need nothing of their own: a dropped step is NaN (or absent) in the
stored values and invalid either way.

Sentinel-1 groups (format 1.1) are read again from the sources at every step: their products are searched anew,
so the refreshed dataset equals a single build over the whole period; only the Sentinel-2 steps are reused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load

from eoshard.flows.refresh.errors import RefreshError
from eoshard.pipeline.cube import acquisition_key
from eoshard.pipeline.direct import GroupSource
from eoshard.pipeline.patches import Patch
from eoshard.pipeline.sensors import group_sensor, is_main
from eoshard.pipeline.shards.reader import open_shards
from eoshard.pipeline.shards.reads import Meetings, Origins, ShardSources, read_shard_windows
from eoshard.pipeline.shards.task import ShardSpec, materialize_shard

if TYPE_CHECKING:
    from eoshard.flows.build import BuildPlan


@dataclass(frozen=True)
class HeldSample:
    """Where a kept sample of the old dataset lies."""

    key: str
    slot: int
    part: str | None


@dataclass(frozen=True)
class OldDataset:
    """The existing dataset as shard tasks read it: which new time steps it already holds, and where."""

    path: str
    use_zarr: bool
    groups: Mapping[str, Sequence[str]]
    n_dates: int
    steps: tuple[int | None, ...]  # per date of the new plan: its index among the old dates, None = from sources
    read_mask: bool = False  # the old steps' valid masks are read back (an SCL mask: not derived from the pixels)
    hr_bands: tuple[str, ...] = ()  # the HR bands read back for held samples; () = HR from the sources (or none)

    @property
    def fresh(self) -> list[int]:
        return [t for t, old in enumerate(self.steps) if old is None]


def reused_steps(plan: BuildPlan, manifest: Mapping[str, Any]) -> tuple[int | None, ...]:
    """Per date of ``plan``: the old date index when its acquisition's products are all old ones, else None."""
    old_dates = {d: i for i, d in enumerate(manifest["dates"])}
    old_products = set(manifest["products"])
    products: dict[str, set[str]] = {}
    for item in plan.items:
        products.setdefault(acquisition_key(item), set()).add(str(item["id"]))
    acquisitions = [str(a) for a in next(iter(plan.cubes.values())).acquisition.values]
    return tuple(
        old_dates.get(date) if products[key] <= old_products else None
        for date, key in zip(plan.dates, acquisitions, strict=True)
    )


def held_samples(path: Path) -> dict[str, HeldSample]:
    """The kept samples of the dataset at ``path`` by key."""
    with open_shards(path) as dataset:
        index = dataset.index(columns=["key", "zarr_index", "lmdb_part"])
    return {
        str(key): HeldSample(str(key), int(slot), None if part is None else str(part))
        for key, slot, part in index.itertuples(index=False, name=None)
    }


def open_old(path: Path, plan: BuildPlan, manifest: Mapping[str, Any]) -> OldDataset:
    """Describe the existing dataset at ``path`` for the refresh of it into ``plan``."""
    old_hr = manifest.get("hr")
    same_hr = old_hr is not None and sorted(old_hr["products"]) == sorted(str(i["id"]) for i in plan.hr_items)
    return OldDataset(
        path=str(path),
        use_zarr=manifest["formats"]["zarr"] is not None,
        groups={g: list(spec["bands"]) for g, spec in manifest["groups"].items() if is_main(group_sensor(g))},
        n_dates=len(manifest["dates"]),
        steps=reused_steps(plan, manifest),
        read_mask=plan.valid is not None,
        hr_bands=tuple(old_hr["bands"]) if old_hr is not None and same_hr else (),
    )


def refreshed_shard_task(
    old: OldDataset, samples: Mapping[str, HeldSample], plan: BuildPlan, index: int, shard: list[Patch]
) -> Any:
    """The task of shard ``index``: new steps of held samples, every step of the others, from the sources.

    A ``DirectShard`` that reads its windows as a build's shard task does (``read_refreshed_shard``) when the plan
    reads directly, else a ``GraphShard`` over windows of the lazy cubes.
    """
    from eoshard.flows.build import label_windows, shard_spec
    from eoshard.flows.shard_runner import DirectShard, GraphShard

    fresh = old.fresh
    held = [samples.get(p.key) for p in shard]
    if plan.sources is not None:
        task = partial(read_refreshed_shard, old=old, held=tuple(held))
        return DirectShard(shard_spec(plan, index, shard), plan.config.patches.size, task)
    images: dict[str, list[Any]] = {}
    for name, cube in plan.cubes.items():
        windows = [plan.window(name, p) for p in shard]
        images[name] = [
            cube.data[..., ys, xs] if h is None or name not in old.groups else cube.data[fresh][..., ys, xs]
            for h, (ys, xs) in zip(held, windows, strict=True)
        ]
    masks = None
    if plan.valid is not None:
        valid = plan.valid.data
        masks = [
            valid[(slice(None), *w)] if h is None else valid[fresh][(slice(None), *w)]
            for h, w in zip(held, (plan.window("valid", p) for p in shard), strict=True)
        ]
    paired: dict[str, list[Any]] = {}
    if plan.hr is not None:
        hr = plan.hr.data
        paired["hr"] = [
            None if h is not None and old.hr_bands else hr[(slice(None), *plan.window("hr", p))]
            for h, p in zip(held, shard, strict=True)
        ]
    spec = shard_spec(plan, index, shard)
    task = partial(materialize_refreshed_shard, old=old, held=held)
    return GraphShard(task, (spec, images, label_windows(plan, shard), paired, masks))


def read_refreshed_shard(
    spec: ShardSpec,
    sources: ShardSources,
    size: int,
    meetings: Meetings = (),
    ahead: Sequence[Origins] = (),
    *,
    old: OldDataset,
    held: Sequence[HeldSample | None],
) -> dict[str, Any]:
    """A refreshed shard read directly, as ``read_shard`` reads a build's: the new steps (``fresh_sources``) when
    every sample is held, else every step, of which the held samples keep the new ones (a candidate the old
    dataset dropped needs all its steps from the sources, and the shard's blocks are read once for all)."""
    fresh = fresh_sources(sources, old)
    everything = any(h is None for h in held)
    images, labels, paired, masks = read_shard_windows(
        spec, sources if everything else fresh, size, meetings, ahead, ahead_sources=fresh
    )
    if everything:
        steps = old.fresh
        images = {
            g: [v if h is None or g not in old.groups else v[steps] for v, h in zip(values, held, strict=True)]
            for g, values in images.items()
        }
        if masks is not None:
            masks = [m if h is None else m[steps] for m, h in zip(masks, held, strict=True)]
    if old.hr_bands and sources.hr is not None:  # a held sample's HR is read back (the new steps' read has none)
        windows = paired.get("hr", [None] * len(held))
        paired = {**paired, "hr": [None if h is not None else w for w, h in zip(windows, held, strict=True)]}
    return materialize_refreshed_shard(spec, images, labels, paired, masks, old=old, held=held)


def fresh_sources(sources: ShardSources, old: OldDataset) -> ShardSources:
    """The shard sources of the steps the old dataset lacks: its groups and the valid mask's source keep those
    steps only (other sensors' groups keep theirs: they are read anew every time); no HR when it is read back."""
    steps = old.fresh

    def only_fresh(group: GroupSource) -> GroupSource:
        return replace(group, steps=tuple(group.steps[t] for t in steps))

    return replace(
        sources,
        groups={name: only_fresh(g) if name in old.groups else g for name, g in sources.groups.items()},
        scl=None if sources.scl is None else only_fresh(sources.scl),
        qa=None if sources.qa is None else only_fresh(sources.qa),
        hr=None if old.hr_bands else sources.hr,
        derived=None if sources.derived is None else sources.derived.at_steps(steps, old.groups),
    )


def materialize_refreshed_shard(
    spec: ShardSpec,
    images: Mapping[str, Sequence[np.ndarray]],
    labels: Mapping[str, Sequence[np.ndarray]],
    paired: Mapping[str, Sequence[np.ndarray | None]],
    masks: Sequence[np.ndarray] | None,
    *,
    old: OldDataset,
    held: Sequence[HeldSample | None],
) -> dict[str, Any]:
    """Put each held sample's old steps and new steps together, then make and write the shard as a build does."""
    full: dict[str, list[np.ndarray]] = {g: [] for g in images}
    full_paired: dict[str, list[np.ndarray]] = {name: [] for name in paired}
    full_masks: list[np.ndarray] = []
    fractions: list[np.ndarray | None] = []
    with _Reader(old) as reader:
        for n, sample in enumerate(held):
            past = None if sample is None else reader.read(sample)
            for g, values in images.items():
                fresh = np.asarray(values[n])
                if past is None or g not in old.groups:  # a Sentinel-1 group: every step from the sources
                    full[g].append(fresh)
                else:
                    full[g].append(_interleave(old.steps, past.images[g], fresh))
            for name, windows in paired.items():
                window = windows[n]
                full_paired[name].append(np.asarray(window) if window is not None or past is None else past.hr)
            if masks is not None:
                fresh_mask = np.asarray(masks[n], dtype=bool)
                full_masks.append(fresh_mask if past is None else _interleave(old.steps, past.mask, fresh_mask))
            nan = np.full(len(old.fresh), np.nan, np.float32)
            fractions.append(None if past is None else _interleave(old.steps, past.fraction, nan))
    return materialize_shard(
        spec, full, labels, full_paired, fractions=fractions, masks=None if masks is None else full_masks
    )


def _interleave(steps: Sequence[int | None], past: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """The new time axis: ``past[old]`` at reused steps, ``fresh`` (in order) at the others."""
    out = np.empty((len(steps), *past.shape[1:]), dtype=past.dtype)
    reused = [t for t, s in enumerate(steps) if s is not None]
    out[reused] = past[[s for s in steps if s is not None]]
    out[[t for t, s in enumerate(steps) if s is None]] = fresh
    return out


@dataclass(frozen=True)
class _Past:
    """What the old dataset holds of one sample, on the old time axis (nodata and invalid at dropped steps)."""

    images: dict[str, np.ndarray]
    fraction: np.ndarray
    mask: Any = None  # (T_old, P, P) bool when ``read_mask``
    hr: Any = None  # (C_hr, P*f, P*f) when ``hr_bands``


class _Reader:
    """Reads held samples back: every old step (nodata at dropped ones) and each step's valid fraction."""

    def __init__(self, old: OldDataset) -> None:
        self.old = old
        self.dataset = open_shards(old.path)
        self.root = self.dataset.zarr_group() if old.use_zarr else None

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.dataset.close()

    def read(self, sample: HeldSample) -> _Past:
        if self.root is None:
            return self._read_lmdb(sample)
        names = [*self.old.groups, "valid_fraction"]
        names += ["valid_mask"] if self.old.read_mask else []
        names += ["hr"] if self.old.hr_bands else []
        values = {name: np.asarray(self.root[name][sample.slot]) for name in names}  # type: ignore[index]
        fraction = values.pop("valid_fraction").astype(np.float32)
        mask, hr = values.pop("valid_mask", None), values.pop("hr", None)
        return _Past(values, fraction, mask, hr)

    def _read_lmdb(self, sample: HeldSample) -> _Past:
        assert sample.part is not None
        raw = self.dataset.read_value(sample.key, sample.part)
        if raw is None:
            raise RefreshError(
                f"sample {sample.key} is in the index of {self.old.path} but not in its LMDB {sample.part}: "
                "the dataset is damaged; run `eoshard verify` on it and build it anew"
            )
        tensors = load(raw)
        steps = tensors["time_index"].astype(np.int64)
        images = {group: self._on_old_axis(steps, [tensors[b] for b in bands], axis=1)
                  for group, bands in self.old.groups.items()}  # fmt: skip
        fraction = np.zeros(self.old.n_dates, dtype=np.float32)
        fraction[steps] = tensors["valid_fraction"]
        mask = self._on_old_axis(steps, [tensors["valid_mask"]], axis=None) if self.old.read_mask else None
        hr = np.stack([tensors[f"hr_{b}"] for b in self.old.hr_bands]) if self.old.hr_bands else None
        return _Past(images, fraction, mask, hr)

    def _on_old_axis(self, steps: np.ndarray, kept: list[np.ndarray], axis: int | None) -> np.ndarray:
        """The kept steps' values at their places on the old time axis; nodata (0, NaN, false) elsewhere."""
        stacked = np.stack(kept, axis=axis) if axis is not None else kept[0]
        fill = np.nan if stacked.dtype.kind == "f" else 0
        values = np.full((self.old.n_dates, *stacked.shape[1:]), fill, dtype=stacked.dtype)
        values[steps] = stacked
        return values
