"""Spectral indices and band math, lazily in float32 from the cube's source values.

Expressions are parsed and checked by ``expressions`` (only band names, numbers, ``+ - * /``, unary signs and
parentheses); nothing is ever evaluated by Python itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox

from eoshard.pipeline.band_math import band_values, evaluate
from eoshard.pipeline.cube import onto_grid
from eoshard.pipeline.expressions import (
    STANDARD_INDICES,
    ExpressionError,
    expression_bands,
    formula,
    parse_expression,
)
from eoshard.pipeline.grid import grid_of, group_grid

# the expressions' names stay importable from here
__all__ = [
    "STANDARD_INDICES",
    "ExpressionError",
    "compute_index",
    "compute_indices",
    "expression_bands",
    "formula",
]


def compute_index(cubes: Mapping[str, xr.DataArray], grid: GeoBox, expression: str) -> xr.DataArray:
    """Lazy float32 ``(time, y, x)`` of ``expression`` over the bands of ``cubes`` (groups on ``grid``).

    It lies on the finest grid among the bands it reads; coarser bands are repeated onto it (the grids nest
    exactly). Digital numbers become reflectance first (the recorded BOA offset applied), nodata is NaN,
    and so is a division by zero.
    """
    bands = expression_bands(expression)
    where = {str(b): name for name, cube in cubes.items() for b in cube.band.values}
    missing = [b for b in bands if b not in where]
    if missing:
        raise ExpressionError(
            f"expression {formula(expression)!r} reads band(s) {missing} that the cube does not hold "
            f"(it has {sorted(where)}): add them to the bands"
        )
    if not bands:
        raise ExpressionError(
            f"expression {formula(expression)!r} reads no band: an index is computed from bands, e.g. "
            "(B08 - B04) / (B08 + B04); name at least one band of the cube"
        )
    finest = min(abs(grid_of(cubes[where[b]]).resolution.x) for b in bands)
    target = group_grid(grid, finest)
    values = {b: onto_grid(band_values(cubes[where[b]], b), target) for b in bands}
    result = evaluate(parse_expression(expression), values).astype(np.float32)
    result.attrs = {"expression": formula(expression)}
    return result


def compute_indices(
    cubes: Mapping[str, xr.DataArray], grid: GeoBox, indices: Mapping[str, str]
) -> dict[str, xr.DataArray]:
    """``compute_index`` for each ``name: expression``."""
    return {name: compute_index(cubes, grid, expr).rename(name) for name, expr in indices.items()}
