"""Each shard task is told the patches of the shards its worker runs next, within that worker's run only."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from eoshard.flows.shard_runner import DirectShard, _ahead
from eoshard.pipeline.shards.reads import MAX_AHEAD_SHARDS


def _tasks(n: int) -> list[Any]:
    return [DirectShard(SimpleNamespace(origins=((128 * k, 0), (128 * k, 128))), 128) for k in range(n)]  # type: ignore[arg-type]


def test_the_next_shards_of_the_same_worker_and_no_further() -> None:
    tasks = _tasks(12)
    per = 5  # worker 0: 0-4, worker 1: 5-9, worker 2: 10-11
    assert _ahead(tasks, 0, per) == tuple(tasks[k].spec.origins for k in (1, 2, 3, 4))
    assert _ahead(tasks, 3, per) == (((512, 0), (512, 128)),)
    assert _ahead(tasks, 4, per) == ()  # the next shard is another worker's
    assert _ahead(tasks, 10, per) == (((1408, 0), (1408, 128)),)
    assert _ahead(tasks, 11, per) == ()


def test_at_most_the_bound_and_only_shards_that_read_their_own_pixels() -> None:
    tasks = _tasks(40)
    assert len(_ahead(tasks, 0, 40)) == MAX_AHEAD_SHARDS
    tasks[2] = object()  # a shard computed from a graph: nothing to read ahead
    assert _ahead(tasks, 0, 4) == (tasks[1].spec.origins, tasks[3].spec.origins)
