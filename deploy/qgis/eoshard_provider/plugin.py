"""Registers the provider when QGIS loads the plugin."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from .provider import EoshardProvider


class EoshardPlugin:
    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: EoshardProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        self.provider = EoshardProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
