"""QGIS plugin: the eoshard Processing provider (model packages as algorithms)."""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> Any:  # noqa: N802 - the name QGIS looks for
    from .plugin import EoshardPlugin

    return EoshardPlugin(iface)
