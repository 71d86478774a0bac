"""Band math on cube groups: the lazy cubes' indices (``indices``) and a shard task's windows in memory
(``shards.derived``) share it, so both give the same float32 bits."""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numpy as np
import xarray as xr

from eoshard.pipeline.expressions import ExpressionError, expression_bands, parse_expression
from eoshard.pipeline.reflectance import to_reflectance


def band_values(cube: xr.DataArray, band: str) -> xr.DataArray:
    """One band of a group as reflectance: digital numbers become reflectance first (the BOA offset applied; the
    band alone, not its whole group)."""
    values = cube if cube.dtype.kind == "f" else to_reflectance(cube.sel(band=[band]))
    return values.sel(band=band, drop=True)


def evaluate(node: ast.expr, values: Mapping[str, xr.DataArray]) -> xr.DataArray:
    """The checked expression ``node`` (see ``parse_expression``) over the bands in ``values``, in float32."""
    # parse_expression has checked every node, so the cases below are all there is
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return np.float32(float(node.value))  # type: ignore[arg-type,return-value]
    if isinstance(node, ast.UnaryOp):
        operand = evaluate(node.operand, values)
        return -operand if isinstance(node.op, ast.USub) else operand
    assert isinstance(node, ast.BinOp)
    left, right = evaluate(node.left, values), evaluate(node.right, values)
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


def index_window(groups: Mapping[str, xr.DataArray], factors: Mapping[str, int], expression: str) -> np.ndarray:
    """``compute_index`` on windows in memory: ``groups`` are ``(time, band, y, x)`` windows of the cube's groups
    over one area, a group of factor ``f`` ``f`` times coarser than the base grid. Float32 ``(time, y, x)`` on the
    base grid: computed on the finest grid among the bands it reads, then repeated, as the lazy index is."""
    bands = expression_bands(expression)
    where = {str(b): name for name, group in groups.items() for b in group.band.values}
    finest = min(factors[where[b]] for b in bands)
    values = {b: _repeat(band_values(groups[where[b]], b), factors[where[b]] // finest) for b in bands}
    result = evaluate(parse_expression(expression), values).astype(np.float32, copy=False)
    return np.asarray(_repeat(result, finest).data)


def _repeat(values: xr.DataArray, f: int) -> xr.DataArray:
    """Each pixel of ``values`` repeated ``f`` x ``f`` times (its last two axes), as ``onto_grid`` does."""
    if f == 1:
        return values
    data = values.data.repeat(f, axis=-2).repeat(f, axis=-1)
    coords = {k: c for k, c in values.coords.items() if not {"y", "x"} & set(c.dims)}
    return xr.DataArray(data, dims=values.dims, coords=coords, attrs=values.attrs)
