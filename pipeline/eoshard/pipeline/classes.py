"""Class columns as users have them: integer codes, or text names mapped to codes.

Label layers hold integer codes (0 is the background). A text column (``crop: wheat``) is mapped through a
mapping the user gives (name -> code), or, without one, its distinct names get the codes 1, 2, ... in sorted
order; a blank or missing name is the background (0). The names come back with the codes, so the dataset can
record them (``dataset.json`` ``labels.classes``, the STAC Collection's ``eoshard:classes``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from eoshard.pipeline.errors import PipelineError


class ClassColumnError(PipelineError, ValueError):
    """A class column whose values cannot become integer class codes."""


def nested_values(values: pd.Series) -> list[str]:
    """The values that are lists or objects, as text, those of most items first: a GeoJSON property may be either,
    a class or id cannot (GDAL reads a property as lists in every feature where one feature holds a list)."""
    nested = values[~values.map(pd.api.types.is_scalar).astype(bool)].tolist()
    nested.sort(key=lambda v: len(v) if hasattr(v, "__len__") else 0, reverse=True)
    return [str(v.tolist() if isinstance(v, np.ndarray) else v) for v in nested]  # pyogrio's lists are arrays


def encode_classes(
    values: pd.Series, mapping: Mapping[str, int] | None = None, column: str = "class"
) -> tuple[np.ndarray, dict[int, str]]:
    """``(codes, names)``: int64 codes per parcel, and code -> name for a text column (``{}`` for integers)."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # GeoParquet's dictionary columns: their plain values
        of_numbers = pd.api.types.is_numeric_dtype(values.dtype.categories)
        values = values.astype("float64" if of_numbers else object)
    nested = nested_values(values)
    if nested:
        raise ClassColumnError(
            f"class column {column!r} holds lists or objects, not single values (e.g. {nested[:3]}): classes are "
            "integer codes or text names, one per parcel; fix those parcels or use another column"
        )
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.isna().any():
        rows = list(values.index[values.isna()][:3])
        raise ClassColumnError(
            f"class column {column!r} is empty for {int(values.isna().sum())} parcel(s) (rows {rows}): give every "
            "parcel a class, or drop those parcels"
        )
    if numeric:
        numbers = values.to_numpy(dtype=np.float64)
        if not np.array_equal(numbers, np.round(numbers)):
            bad = sorted({float(v) for v in numbers[numbers != np.round(numbers)]})[:3]
            raise ClassColumnError(
                f"class column {column!r} holds non-integer numbers (e.g. {bad}): classes are integer codes or "
                "text names; round them or use another column"
            )
        if mapping:
            raise ClassColumnError(
                f"labels.class_codes maps names to codes, but class column {column!r} already holds integer "
                "codes: remove class_codes"
            )
        _fit_int32(numbers, f"class column {column!r}")
        if (numbers < 0).any():
            negative = sorted({int(v) for v in numbers[numbers < 0]})[:3]
            raise ClassColumnError(
                f"class column {column!r} holds negative codes (e.g. {negative}): class codes are 0 (the background) "
                "and up, and the trainers use them as indices; map them to codes of 0 or more"
            )
        return values.to_numpy().astype(np.int64), {}
    names = values.where(values.notna(), "").astype(str).str.strip()  # blank or missing: background (0)
    named = sorted(set(names) - {""})
    if mapping:
        unknown = sorted(set(named) - set(mapping))
        if unknown:
            raise ClassColumnError(
                f"class column {column!r} has {len(unknown)} name(s) that labels.class_codes does not map "
                f"(e.g. {unknown[:5]}; it maps {sorted(mapping)[:5]}): add them to class_codes"
            )
        codes = {str(k): int(v) for k, v in mapping.items()}
        if any(code <= 0 for code in codes.values()):
            raise ClassColumnError("labels.class_codes must map names to codes of 1 or more: 0 is the background")
        _fit_int32(np.array(list(codes.values()), dtype=np.float64), "labels.class_codes")
    else:
        codes = {name: i for i, name in enumerate(named, start=1)}
    out = names.map({**codes, "": 0}).to_numpy().astype(np.int64)
    grouped: dict[int, list[str]] = {}
    for name in named:  # a mapping may give several names one code: the code is named by all of them
        grouped.setdefault(codes[name], []).append(name)
    return out, {code: " | ".join(group) for code, group in grouped.items()}


def _fit_int32(codes: np.ndarray, where: str) -> None:
    """The class layer is int32: a code past it would wrap (EuroCrops' 10-digit HCAT codes do)."""
    limits = np.iinfo(np.int32)
    past = sorted({int(c) for c in codes if not limits.min <= c <= limits.max})
    if past:
        raise ClassColumnError(
            f"{where} holds codes past the int32 class layer (e.g. {past[:3]}; it holds "
            f"{limits.min}..{limits.max}): map the classes to smaller codes (a text column with labels.class_codes, "
            "or a column of your own)"
        )
