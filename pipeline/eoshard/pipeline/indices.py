"""Spectral indices and band math, lazily in float32 from the cube's source values.

Expressions are parsed and checked by ``expressions`` (only band names, numbers, ``+ - * /``, unary signs and
parentheses); nothing is ever evaluated by Python itself.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox

from eoshard.pipeline.cube import onto_grid
from eoshard.pipeline.expressions import (
    STANDARD_INDICES,
    ExpressionError,
    expression_bands,
    formula,
    parse_expression,
)
from eoshard.pipeline.grid import grid_of, group_grid
from eoshard.pipeline.reflectance import to_reflectance

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
    values = {b: onto_grid(_band(cubes[where[b]], b), target) for b in bands}
    result = _evaluate(parse_expression(expression), values).astype(np.float32)
    result.attrs = {"expression": formula(expression)}
    return result


def compute_indices(
    cubes: Mapping[str, xr.DataArray], grid: GeoBox, indices: Mapping[str, str]
) -> dict[str, xr.DataArray]:
    """``compute_index`` for each ``name: expression``."""
    return {name: compute_index(cubes, grid, expr).rename(name) for name, expr in indices.items()}


def _band(cube: xr.DataArray, band: str) -> xr.DataArray:
    values = cube if cube.dtype.kind == "f" else to_reflectance(cube)
    return values.sel(band=band, drop=True)


def _evaluate(node: ast.expr, values: Mapping[str, xr.DataArray]) -> xr.DataArray:
    # parse_expression has checked every node, so the cases below are all there is
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return np.float32(float(node.value))  # type: ignore[arg-type,return-value]
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return -operand if isinstance(node.op, ast.USub) else operand
    assert isinstance(node, ast.BinOp)
    left, right = _evaluate(node.left, values), _evaluate(node.right, values)
    if isinstance(node.op, ast.Add):
        return left + right
    if isinstance(node.op, ast.Sub):
        return left - right
    if isinstance(node.op, ast.Mult):
        return left * right
    return left / _nonzero(right)


def _nonzero(values: xr.DataArray) -> xr.DataArray:
    """Zero denominators become NaN (no division warnings, no infinities)."""
    if isinstance(values, xr.DataArray):
        return values.where(values != 0)
    if values == 0:
        raise ExpressionError("the expression divides by the number 0")
    return values
