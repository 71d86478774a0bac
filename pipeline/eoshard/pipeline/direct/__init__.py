"""Direct reads for the build: each shard task reads the source blocks it needs once, without a Dask graph.

The lazy cubes (``eoshard.pipeline.cube``) stay what a Jupyter user explores; the build takes this faster path to
the same pixels: `GroupSource` describes one resolution group as the cube engine would mosaic it, and
`read_group_window` returns a window of it as numpy, bit-identical to the stackstac engine's values.
"""

from eoshard.pipeline.direct.allocator import tune_malloc, tune_malloc_for_commits
from eoshard.pipeline.direct.blocks import (
    STORE_PREFIX,
    drop_retired_blocks,
    expect_sizes,
    read_alone,
    release_build,
    remove_block_store,
    store_name,
    use_block_cache,
    use_block_store,
    use_open_files,
)
from eoshard.pipeline.direct.mosaic import Sweep, prefetch_group_window, read_group_window
from eoshard.pipeline.direct.sources import AssetSource, GroupSource, ProductSource, group_source, paired_source
from eoshard.pipeline.direct.vsi import forget_remote_files

__all__ = [
    "STORE_PREFIX",
    "AssetSource",
    "GroupSource",
    "ProductSource",
    "Sweep",
    "drop_retired_blocks",
    "expect_sizes",
    "forget_remote_files",
    "group_source",
    "paired_source",
    "prefetch_group_window",
    "read_alone",
    "read_group_window",
    "release_build",
    "remove_block_store",
    "store_name",
    "tune_malloc",
    "tune_malloc_for_commits",
    "use_block_cache",
    "use_block_store",
    "use_open_files",
]
