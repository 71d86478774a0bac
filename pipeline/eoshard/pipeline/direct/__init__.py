"""Direct reads for the build: each shard task reads the source blocks it needs once, without a Dask graph.

The lazy cubes (``eoshard.pipeline.cube``) stay what a Jupyter user explores; the build takes this faster path to
the same pixels: `GroupSource` describes one resolution group as the cube engine would mosaic it, and
`read_group_window` returns a window of it as numpy, bit-identical to the stackstac engine's values.
"""

from eoshard.pipeline.direct.mosaic import read_group_window
from eoshard.pipeline.direct.sources import AssetSource, GroupSource, ProductSource, group_source, paired_source

__all__ = ["AssetSource", "GroupSource", "ProductSource", "group_source", "paired_source", "read_group_window"]
