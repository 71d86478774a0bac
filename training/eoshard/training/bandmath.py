"""Band-math masks (e.g. an NDWI water mask): a small, safe expression language over band names.

``(B03 - B08) / (B03 + B08) > 0`` is parsed with :mod:`ast` and evaluated with numpy on arrays named by band;
only numbers, band names, ``+ - * / **``, unary minus, comparisons and ``& | ~`` (and ``and``/``or``/``not``)
are accepted: nothing is executed. A band may be named by its common name where the package records it
(``(green - nir) / (green + nir) > 0``).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from eoshard.training.band_names import bands_named, described
from eoshard.training.errors import ConfigError

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
}  # fmt: skip
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}  # fmt: skip


def parse_mask(
    expression: str, bands: Sequence[str], common_names: Mapping[str, str] | None = None
) -> ast.Expression:
    """Parse and check ``expression`` against the available ``bands``, or their ``common_names`` (band -> common
    name), which come back as the bands they name; raise ``ConfigError`` on anything else."""
    common = common_names or {}
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ConfigError(f"mask expression {expression!r} is not valid: {err.msg}") from err
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            same = bands_named(node.id, bands, common)
            if len(same) != 1:
                what = f"which stands for {same}, more than one of" if same else "which is not one of"
                raise ConfigError(
                    f"mask expression {expression!r} names {node.id!r}, {what} the model's bands "
                    f"{described(bands, common)}: use those names" + (" or their common names" if common else "")
                )
            node.id = same[0]
        allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Name, ast.Constant,
                   ast.Load, ast.USub, ast.UAdd, ast.Invert, ast.Not, ast.And, ast.Or, *_BINARY, *_COMPARE)  # fmt: skip
        if not isinstance(node, allowed) or (
            isinstance(node, ast.Constant) and not isinstance(node.value, float | int)
        ):
            raise ConfigError(
                f"mask expression {expression!r} uses {type(node).__name__}: only numbers, band names, "
                "+ - * / **, comparisons and & | ~ (and/or/not) are allowed"
            )
    return tree


def evaluate_mask(tree: ast.Expression, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """``True`` where the expression holds; NaN operands (no data) give ``False``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.asarray(_eval(tree.body, values))
    return (
        np.asarray(result, dtype=bool) & np.isfinite(result) if result.dtype.kind == "f" else result.astype(bool)
    )


def _eval(node: ast.AST, values: Mapping[str, np.ndarray]) -> Any:
    match node:
        case ast.Constant(value=v):
            return v
        case ast.Name(id=name):
            return values[name].astype(np.float64)
        case ast.UnaryOp(op=ast.USub(), operand=x):
            return -_eval(x, values)
        case ast.UnaryOp(op=ast.UAdd(), operand=x):
            return _eval(x, values)
        case ast.UnaryOp(op=ast.Invert() | ast.Not(), operand=x):
            return ~np.asarray(_eval(x, values), dtype=bool)
        case ast.BinOp(left=a, op=op, right=b):
            return _BINARY[type(op)](_eval(a, values), _eval(b, values))
        case ast.BoolOp(op=bool_op, values=items):
            parts = [np.asarray(_eval(v, values), dtype=bool) for v in items]
            joined = parts[0]
            for p in parts[1:]:
                joined = joined & p if isinstance(bool_op, ast.And) else joined | p
            return joined
        case ast.Compare(left=a, ops=ops, comparators=rest):
            left = _eval(a, values)
            result: Any = True
            for cmp, b in zip(ops, rest, strict=True):
                right = _eval(b, values)
                result = result & _COMPARE[type(cmp)](left, right)
                left = right
            return result
    raise ConfigError(f"cannot evaluate {ast.dump(node)}")  # unreachable after parse_mask
