"""Grids, lazy cubes, labels, patches and shards: the functions a notebook user calls.

```python
from eoshard.pipeline import grid_for_area, open_cube, rasterize_labels, patch_grid, extract_patches
grid = grid_for_area(area, resolution=10)
cubes = open_cube(items, grid, ["B02", "B03", "B04", "B08", "B11"])  # {"s2_10m": ..., "s2_20m": ...}
windows = extract_patches(cubes["s2_20m"], patch_grid(grid, 48, align=2))
ds = open_dataset("out/demo")  # a built dataset, as xarray
```
"""

from typing import TYPE_CHECKING, Any

import lazy_loader

if TYPE_CHECKING:
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
    from eoshard.pipeline.expressions import STANDARD_INDICES
    from eoshard.pipeline.grid import (
        attach_grid,
        grid_for_area,
        grid_of,
        group_factor,
        group_grid,
        nested_grid,
        utm_crs_for,
        zoom_factor,
    )
    from eoshard.pipeline.indices import compute_index, compute_indices
    from eoshard.pipeline.items import acquisition_key, stackstac_ready
    from eoshard.pipeline.labels import prepare_parcels, rasterize_labels
    from eoshard.pipeline.masks import open_valid_mask, valid_fraction
    from eoshard.pipeline.paired import open_paired
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

# each public name and the module that defines it, imported when the name is first asked for (design record
# 0020): importing one module of the package, as the CLI and the shard tasks do, loads no other
_lazy_getattr, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "cube": ["ENGINES", "band_groups", "onto_grid", "open_band_group", "open_cube"],
        "errors": [
            "AssetReadError",
            "BandError",
            "DatasetError",
            "GridError",
            "ManifestError",
            "PipelineError",
            "ShardWriteError",
            "UnsupportedProductError",
        ],
        "expressions": ["STANDARD_INDICES"],
        "grid": [
            "attach_grid",
            "grid_for_area",
            "grid_of",
            "group_factor",
            "group_grid",
            "nested_grid",
            "utm_crs_for",
            "zoom_factor",
        ],
        "indices": ["compute_index", "compute_indices"],
        "items": ["acquisition_key", "stackstac_ready"],
        "labels": ["prepare_parcels", "rasterize_labels"],
        "masks": ["open_valid_mask", "valid_fraction"],
        "paired": ["open_paired"],
        "patches": [
            "Patch",
            "extract_patches",
            "labelled_fractions",
            "parcel_centred",
            "patch_grid",
            "select_labelled",
        ],
        "reflectance": ["to_reflectance"],
        "shards.layout": ["DatasetLayout", "GroupLayout"],
        "shards.reader": ["ShardedDataset", "open_shards", "read_layout"],
        "shards.xarray_view": ["open_dataset", "sample_image"],
    },
)


def __getattr__(name: str) -> Any:
    """A public name, imported on first use; any other gets Python's wording (and its "Did you mean", from
    ``__dir__``) instead of lazy_loader's."""
    if name in __all__:
        return _lazy_getattr(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
