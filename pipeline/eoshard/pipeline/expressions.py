"""Band-math expressions: parsed with :mod:`ast` and checked node by node, never evaluated by Python.

Only band names, numbers, ``+ - * /``, unary signs and parentheses are accepted. The config validates
expressions with this module alone; ``indices`` computes them on cubes.
"""

from __future__ import annotations

import ast

from eoshard.pipeline.errors import PipelineError

# The usual indices on Sentinel-2 band names (reflectance, 0..1).
STANDARD_INDICES: dict[str, str] = {
    "ndvi": "(B08 - B04) / (B08 + B04)",
    "ndwi": "(B03 - B08) / (B03 + B08)",  # McFeeters: open water
    "evi2": "2.5 * (B08 - B04) / (B08 + 2.4 * B04 + 1)",
    "ndbi": "(B11 - B08) / (B11 + B08)",
    "nbr": "(B08 - B12) / (B08 + B12)",
}
MAX_EXPRESSION_LENGTH = 500


class ExpressionError(PipelineError, ValueError):
    """A band-math expression that is not made of band names, numbers, + - * / and parentheses."""


def formula(expression: str) -> str:
    """``expression`` itself, or the formula of a standard index named by it (``ndvi``, ``NBR``, ...)."""
    return STANDARD_INDICES.get(expression.strip().lower(), expression)


def parse_expression(expression: str) -> ast.expr:
    """The checked syntax tree of ``expression`` (or of the standard index it names)."""
    text = formula(expression)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression of {len(text)} characters: keep it under {MAX_EXPRESSION_LENGTH}")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise ExpressionError(f"expression {text!r} is not valid band math: {err.msg}") from err
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            ok = type(node.value) in (int, float)
        elif isinstance(node, ast.BinOp):
            ok = isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div)
        elif isinstance(node, ast.UnaryOp):
            ok = isinstance(node.op, ast.UAdd | ast.USub)
        else:  # operators are judged with the node that holds them
            ok = isinstance(node, ast.Name | ast.Load | ast.operator | ast.unaryop)
        if not ok:
            shown = ast.get_source_segment(text, node) or type(node).__name__
            raise ExpressionError(
                f"expression {text!r} uses {shown!r}: only band names, numbers, + - * / and parentheses are allowed"
            )
    return tree


def expression_bands(expression: str) -> list[str]:
    """The band names an expression reads, in order of first use."""
    names = [n.id for n in ast.walk(parse_expression(expression)) if isinstance(n, ast.Name)]
    return list(dict.fromkeys(names))
