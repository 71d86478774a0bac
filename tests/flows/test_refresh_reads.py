"""A refresh's shard tasks read as a build's (``cube.reads: direct``): the new steps only, through the build's
read recipes cut to them; through the lazy cubes' graph where the build reads so."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import dask.array
import pytest

from eoshard.flows.build import BuildPlan, plan_build
from eoshard.flows.refresh.reuse import (
    HeldSample,
    OldDataset,
    fresh_sources,
    read_refreshed_shard,
    refreshed_shard_task,
)
from eoshard.flows.shard_runner import DirectShard, GraphShard
from tests.flows.test_build_plan import _config


def _plan(demo_data: Any, tmp_path: Path, **changes: Any) -> BuildPlan:
    config = _config(demo_data, tmp_path, timeseries={"mask": "scl"}, **changes)
    with pytest.warns(UserWarning, match="were repaired"):
        return plan_build(config)


def _old(plan: BuildPlan, held_steps: int) -> OldDataset:
    """The plan's dataset as if built from its first ``held_steps`` dates."""
    n = len(plan.dates)
    steps = tuple(t if t < held_steps else None for t in range(n))
    return OldDataset("unused", True, dict(plan.groups), held_steps, steps, read_mask=True)


def test_the_new_steps_are_read_through_the_builds_recipes_cut_to_them(demo_data: Any, tmp_path: Path) -> None:
    plan = _plan(demo_data, tmp_path)
    assert plan.sources is not None and plan.sources.scl is not None
    n = len(plan.dates)
    assert n >= 4
    old = _old(plan, n - 2)
    fresh = fresh_sources(plan.sources, old)
    for name, group in plan.sources.groups.items():
        assert fresh.groups[name].steps == group.steps[n - 2 :], name
        assert fresh.groups[name].bands == group.bands and fresh.groups[name].grid == group.grid
    assert fresh.scl is not None and fresh.scl.steps == plan.sources.scl.steps[n - 2 :]
    assert fresh.labels is plan.sources.labels and fresh.grid == plan.sources.grid
    shard = plan.shards()[0]
    held = [HeldSample(p.key, k, "part-00") for k, p in enumerate(shard)]
    task = refreshed_shard_task(old, {h.key: h for h in held}, plan, 0, shard)
    assert isinstance(task, DirectShard) and task.spec.keys == tuple(p.key for p in shard)
    assert isinstance(task.task, partial) and task.task.func is read_refreshed_shard
    assert task.task.keywords == {"old": old, "held": tuple(held)}


def test_a_build_through_the_graph_refreshes_through_it(demo_data: Any, tmp_path: Path) -> None:
    plan = _plan(demo_data, tmp_path, cube={"reads": "graph"})
    assert plan.sources is None
    shard = plan.shards()[0]
    task = refreshed_shard_task(_old(plan, 2), {}, plan, 0, shard)
    assert isinstance(task, GraphShard) and isinstance(task.task, partial)  # over the cubes' windows
    assert all(isinstance(w, dask.array.Array) for windows in task.args[1].values() for w in windows)
