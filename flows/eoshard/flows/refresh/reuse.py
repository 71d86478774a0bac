"""What a refresh takes from the existing dataset instead of the sources: held time steps of kept samples.

A kept sample's time steps of unchanged acquisitions are read back from the old shards (Zarr when the dataset has
it, else LMDB); its new steps come from the lazy cubes. Candidates the old dataset dropped (too few dates) have no
stored pixels, so all their steps come from the sources. Whether a date is kept depends on that date alone (its
valid fraction), so the old steps' decisions carry over; Zarr stores every date's fraction, LMDB only the kept ones
(the dropped ones then count as 0: still dropped, and an LMDB-only dataset never writes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
from safetensors.numpy import load

from eoshard.flows.refresh.errors import RefreshError
from eoshard.pipeline.cube import acquisition_key
from eoshard.pipeline.patches import Patch
from eoshard.pipeline.shards.reader import open_shards
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
    return OldDataset(
        path=str(path),
        use_zarr=manifest["formats"]["zarr"] is not None,
        groups={g: list(spec["bands"]) for g, spec in manifest["groups"].items()},
        n_dates=len(manifest["dates"]),
        steps=reused_steps(plan, manifest),
    )


def refreshed_shard_task(
    old: OldDataset, samples: Mapping[str, HeldSample], plan: BuildPlan, index: int, shard: list[Patch]
) -> Any:
    """The lazy task of shard ``index``: new steps of held samples, every step of the others, from the cubes."""
    from eoshard.flows.build import label_windows, shard_spec

    fresh = old.fresh
    held = [samples.get(p.key) for p in shard]
    images: dict[str, list[Any]] = {}
    for name, cube in plan.cubes.items():
        windows = [p.window(plan.factors[name]) for p in shard]
        images[name] = [
            cube.data[..., ys, xs] if h is None else cube.data[fresh][..., ys, xs]
            for h, (ys, xs) in zip(held, windows, strict=True)
        ]
    spec = shard_spec(plan, index, shard)
    task = partial(materialize_refreshed_shard, old=old, held=held)
    return dask.delayed(task, pure=True)(spec, images, label_windows(plan, shard))


def materialize_refreshed_shard(
    spec: ShardSpec,
    images: Mapping[str, Sequence[np.ndarray]],
    labels: Mapping[str, Sequence[np.ndarray]],
    *,
    old: OldDataset,
    held: Sequence[HeldSample | None],
) -> dict[str, Any]:
    """Put each held sample's old steps and new steps together, then make and write the shard as a build does."""
    full: dict[str, list[np.ndarray]] = {g: [] for g in images}
    fractions: list[np.ndarray | None] = []
    with _Reader(old) as reader:
        for n, sample in enumerate(held):
            if sample is None:
                for g, values in images.items():
                    full[g].append(np.asarray(values[n]))
                fractions.append(None)
                continue
            past, fraction = reader.read(sample)
            for g, values in images.items():
                full[g].append(_interleave(old.steps, past[g], np.asarray(values[n])))
            fractions.append(_interleave(old.steps, fraction, np.full(len(old.fresh), np.nan, np.float32)))
    return materialize_shard(spec, full, labels, fractions=fractions)


def _interleave(steps: Sequence[int | None], past: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """The new time axis: ``past[old]`` at reused steps, ``fresh`` (in order) at the others."""
    out = np.empty((len(steps), *past.shape[1:]), dtype=past.dtype)
    reused = [t for t, s in enumerate(steps) if s is not None]
    out[reused] = past[[s for s in steps if s is not None]]
    out[[t for t, s in enumerate(steps) if s is None]] = fresh
    return out


class _Reader:
    """Reads held samples back: every old step (zeros at dropped ones) and each step's valid fraction."""

    def __init__(self, old: OldDataset) -> None:
        self.old = old
        self.dataset = open_shards(old.path)
        self.root = self.dataset.zarr_group() if old.use_zarr else None

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.dataset.close()

    def read(self, sample: HeldSample) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if self.root is not None:
            arrays = {name: self.root[name] for name in [*self.old.groups, "valid_fraction"]}
            values = {name: np.asarray(array[sample.slot]) for name, array in arrays.items()}  # type: ignore[index]
            fraction = values.pop("valid_fraction").astype(np.float32)
            return values, fraction
        return self._read_lmdb(sample)

    def _read_lmdb(self, sample: HeldSample) -> tuple[dict[str, np.ndarray], np.ndarray]:
        assert sample.part is not None
        raw = self.dataset.read_value(sample.key, sample.part)
        if raw is None:
            raise RefreshError(
                f"sample {sample.key} is in the index of {self.old.path} but not in its LMDB {sample.part}: "
                "the dataset is damaged; run `eoshard verify` on it and build it anew"
            )
        tensors = load(raw)
        steps = tensors["time_index"].astype(np.int64)
        images = {}
        for group, bands in self.old.groups.items():
            first = tensors[bands[0]]
            values = np.zeros((self.old.n_dates, len(bands), *first.shape[1:]), dtype=first.dtype)
            values[steps] = np.stack([tensors[b] for b in bands], axis=1)
            images[group] = values
        fraction = np.zeros(self.old.n_dates, dtype=np.float32)
        fraction[steps] = tensors["valid_fraction"]
        return images, fraction
