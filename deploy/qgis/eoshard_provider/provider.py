"""The Processing provider: one algorithm per model package of the models folder."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingProvider, QgsSettings

from .algorithm import PredictAlgorithm
from .packages import find_packages, models_folder

SETTING = "eoshard/models_folder"


class EoshardProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "eoshard"

    def name(self) -> str:
        return "eoshard models"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        return "eoshard model packages (safetensors + STAC MLM)"

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        value: Any = QgsSettings().value(SETTING, "")
        root = models_folder(str(value) if value else None)
        for info in find_packages(root) if root is not None else []:
            self.addAlgorithm(PredictAlgorithm(info))
