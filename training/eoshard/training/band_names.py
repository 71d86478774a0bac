"""A model's or a dataset's bands named as their files name them (``B04``) or by their common names (``red``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def bands_named(name: str, bands: Sequence[str], common_names: Mapping[str, str]) -> list[str]:
    """The bands ``name`` stands for: itself, else those whose common name it is (any case)."""
    if name in bands:
        return [name]
    return [b for b in bands if name.lower() in (b.lower(), common_names.get(b, "").lower())]


def described(bands: Sequence[str], common_names: Mapping[str, str]) -> str:
    """``B03 (green), B08 (nir)``: the bands with their common names, where known."""
    return ", ".join(f"{b} ({common_names[b]})" if common_names.get(b, b) != b else b for b in bands)
