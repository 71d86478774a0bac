"""Band-math masks: numpy semantics on band arrays, nothing but arithmetic and comparisons accepted."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from eoshard.training.bandmath import evaluate_mask, parse_mask
from eoshard.training.errors import ConfigError

BANDS = ["B03", "B08"]


def test_ndwi_mask_follows_numpy_and_nodata_is_not_masked() -> None:
    b03 = np.array([[1000.0, 200.0], [np.nan, 0.0]])
    b08 = np.array([[500.0, 900.0], [100.0, 0.0]])
    tree = parse_mask("(B03 - B08) / (B03 + B08) > 0 and not B08 > 1000", BANDS)
    got = evaluate_mask(tree, {"B03": b03, "B08": b08})
    np.testing.assert_array_equal(got, [[True, False], [False, False]])  # NaN and 0/0 give False
    assert evaluate_mask(parse_mask("(B03 > 100) | (B08 >= 900)", BANDS), {"B03": b03, "B08": b08}).tolist() == [
        [True, True], [False, False]
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "message"),
    [("B04 > 0", "not one of the model's bands"), ("__import__('os').system('x')", "uses Call"),
     ("B03.real > 0", "uses Attribute"), ("B03 >", "not valid")],
)  # fmt: skip
def test_anything_but_band_math_is_refused(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_mask(expression, BANDS)


def test_bands_may_be_named_by_their_common_names_in_any_case() -> None:
    b03, b08 = np.array([1000.0, 200.0, 50.0]), np.array([500.0, 900.0, 50.0])
    common = {"B03": "green", "B08": "nir"}
    tree = parse_mask("(green - NIR) / (B03 + nir) > 0", BANDS, common)
    assert sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}) == ["B03", "B08"]
    assert evaluate_mask(tree, {"B03": b03, "B08": b08}).tolist() == [True, False, False]
    with pytest.raises(ConfigError, match=r"names 'green', which is not one of the model's bands B03, B08: use"):
        parse_mask("green > 0", BANDS)  # a package without common names
    with pytest.raises(
        ConfigError, match=r"'red', which is not one of the model's bands B03 \(green\), B08 \(nir\)"
    ):
        parse_mask("red > 0", BANDS, common)


def test_a_common_name_of_two_bands_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"names 'nir', which stands for \['B08', 'B8A'\], more than one of"):
        parse_mask("nir > 0", ["B08", "B8A"], {"B08": "nir", "B8A": "nir"})
