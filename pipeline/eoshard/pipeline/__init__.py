"""Grids, lazy cubes, labels, patches and shards: the functions a notebook user calls.

```python
from eoshard.pipeline import grid_for_area, open_cube, rasterize_labels, patch_grid, extract_patches
grid = grid_for_area(area, resolution=10)
cubes = open_cube(items, grid, ["B02", "B03", "B04", "B08", "B11"])  # {"s2_10m": ..., "s2_20m": ...}
windows = extract_patches(cubes["s2_20m"], patch_grid(grid, 48, align=2))
ds = open_dataset("out/demo")  # a built dataset, as xarray
```
"""

from eoshard.pipeline.cube import ENGINES, band_groups, onto_grid, open_band_group, open_cube
from eoshard.pipeline.errors import (
    AssetReadError,
    BandError,
    DatasetError,
    GridError,
    ManifestError,
    PipelineError,
    ShardWriteError,
    UnsupportedProductError,
)
from eoshard.pipeline.grid import (
    attach_grid,
    grid_for_area,
    grid_of,
    group_factor,
    group_grid,
    utm_crs_for,
    zoom_factor,
)
from eoshard.pipeline.indices import STANDARD_INDICES, compute_index, compute_indices
from eoshard.pipeline.items import acquisition_key, stackstac_ready
from eoshard.pipeline.labels import prepare_parcels, rasterize_labels
from eoshard.pipeline.masks import open_valid_mask, valid_fraction
from eoshard.pipeline.paired import nested_grid, open_paired
from eoshard.pipeline.patches import (
    Patch,
    extract_patches,
    labelled_fractions,
    parcel_centred,
    patch_grid,
    select_labelled,
)
from eoshard.pipeline.reflectance import to_reflectance
from eoshard.pipeline.shards.layout import DatasetLayout, GroupLayout
from eoshard.pipeline.shards.reader import ShardedDataset, open_shards, read_layout
from eoshard.pipeline.shards.xarray_view import open_dataset, sample_image

__all__ = [
    "ENGINES",
    "STANDARD_INDICES",
    "AssetReadError",
    "BandError",
    "DatasetError",
    "DatasetLayout",
    "GridError",
    "GroupLayout",
    "ManifestError",
    "Patch",
    "PipelineError",
    "ShardWriteError",
    "ShardedDataset",
    "UnsupportedProductError",
    "acquisition_key",
    "attach_grid",
    "band_groups",
    "compute_index",
    "compute_indices",
    "extract_patches",
    "grid_for_area",
    "grid_of",
    "group_factor",
    "group_grid",
    "labelled_fractions",
    "nested_grid",
    "onto_grid",
    "open_band_group",
    "open_cube",
    "open_dataset",
    "open_paired",
    "open_shards",
    "open_valid_mask",
    "parcel_centred",
    "patch_grid",
    "prepare_parcels",
    "rasterize_labels",
    "read_layout",
    "sample_image",
    "select_labelled",
    "stackstac_ready",
    "to_reflectance",
    "utm_crs_for",
    "valid_fraction",
    "zoom_factor",
]
