"""Each worker of a build holds only the parcels its run of shards touches, not the AOI's; what all the shard tasks
share is sent to the workers once, not inside every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eoshard.flows.build import plan_build, shard_task
from eoshard.flows.cluster import dask_client
from eoshard.flows.shard_runner import ShardSubmitter, _meetings
from eoshard.flows.worker_checks import check_output_shared
from eoshard.pipeline.label_windows import label_window
from tests.flows.test_build_plan import _config
from tests.flows.test_local_cluster import _imported


def test_each_worker_holds_only_the_parcels_of_its_shards(demo_data, tmp_path: Path) -> None:
    """The sources go to each worker with the parcels its shards' windows touch, and to that worker only: every
    patch's label window is the same from them as from all the AOI's parcels, and each worker holds fewer."""
    with pytest.warns(UserWarning, match="were repaired"):
        plan = plan_build(_config(demo_data, tmp_path))
    assert plan.sources is not None and plan.sources.labels is not None and plan.sources.label_zoom == 1
    whole = plan.sources.labels
    todo = {k: shard_task(plan, k, shard) for k, shard in enumerate(plan.shards())}
    with dask_client(n_workers=2) as client:
        submitter = ShardSubmitter(plan, client, todo, check_output_shared(client, tmp_path, "rerun"))
        assert isinstance(submitter.shared, dict) and sorted(submitter.shared) == submitter.workers
        held = {worker: client.gather(future) for worker, future in submitter.shared.items()}
        placed = client.who_has(list(submitter.shared.values()))
        # the task that made them loaded nothing the shard tasks do not (design record 0020)
        assert list(client.run(_imported).values()) == [(True, [])] * 2
        meetings = client.gather(submitter.meetings)
    assert placed == {future.key: (worker,) for worker, future in submitter.shared.items()}
    counts = sorted(len(sources.labels.geoms) for sources in held.values())
    assert 0 < counts[0] <= counts[1] < len(whole.geoms)
    grid, windows = plan.sources.grid, 0
    for position, task in enumerate(todo.values()):
        labels = held[submitter.workers[position // submitter.per]].labels
        for row, col in task.spec.origins:
            window = grid[row : row + task.size, col : col + task.size]
            np.testing.assert_array_equal(label_window(labels, window), label_window(whole, window))
            windows += 1
    assert windows == len(plan.patches) and len(todo) >= 2
    # where the two workers' runs meet: one value for every task, sent once
    assert meetings == _meetings(plan, list(todo.values()), submitter.per) and len(meetings) >= 1
