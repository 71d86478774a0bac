"""Apply one model package to a raster layer: bands from the package's metadata, mask, blended blocks."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .packages import PackageInfo, predict_args

INPUT, OUTPUT, MASK, BLOCK, OVERLAP, MARGIN, PROBABILITIES = (
    "INPUT", "OUTPUT", "MASK", "BLOCK", "OVERLAP", "MARGIN", "PROBABILITIES",
)  # fmt: skip


def band_parameter(band: str, date: int) -> str:
    return f"BAND_{re.sub(r'[^A-Za-z0-9]', '_', band)}_{date}"


class PredictAlgorithm(QgsProcessingAlgorithm):
    def __init__(self, info: PackageInfo) -> None:
        super().__init__()
        self.info = info

    def createInstance(self) -> PredictAlgorithm:  # noqa: N802 - QGIS API
        return PredictAlgorithm(self.info)

    def name(self) -> str:
        return re.sub(r"[^a-z0-9_]", "_", self.info.id.lower())

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return f"{self.info.title} ({self.info.task})"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        bands = ", ".join(self.info.band_label(b) for b in self.info.bands)
        return (f"Applies the eoshard model package {self.info.folder} to a raster layer: pick the layer band for "
                f"each of the model's bands {bands} x {self.info.n_dates} date(s). Pixels where the mask "
                "expression (band names or their common names, e.g. (B03 - B08) / (B03 + B08) > 0) is true become "
                "nodata.")  # fmt: skip

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer(INPUT, "Input raster"))
        for t in range(self.info.n_dates):
            for i, band in enumerate(self.info.bands):
                default = t * len(self.info.bands) + i + 1
                label = f"Layer band for {self.info.band_label(band)}" + (
                    f" (date {t + 1})" if self.info.n_dates > 1 else ""
                )
                self.addParameter(QgsProcessingParameterBand(band_parameter(band, t), label, default, INPUT))
        self.addParameter(
            QgsProcessingParameterString(MASK, "Mask expression", self.info.mask or "", optional=True)
        )
        self.addParameter(QgsProcessingParameterNumber(BLOCK, "Block size (px)", defaultValue=256, minValue=16))
        self.addParameter(QgsProcessingParameterNumber(OVERLAP, "Overlap (px)", defaultValue=64, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(MARGIN, "Margin (px)", defaultValue=16, minValue=0))
        self.addParameter(QgsProcessingParameterBoolean(PROBABILITIES, "Class probabilities", defaultValue=False))
        self.addParameter(QgsProcessingParameterRasterDestination(OUTPUT, "Prediction"))

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict[str, Any]:  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, INPUT, context)
        if layer is None:
            raise QgsProcessingException("no input raster layer")
        bands = [self.parameterAsInt(parameters, band_parameter(b, t), context)
                 for t in range(self.info.n_dates) for b in self.info.bands]  # fmt: skip
        output = self.parameterAsOutputLayer(parameters, OUTPUT, context)
        if not output.lower().endswith((".tif", ".tiff")):
            output += ".tif"
        try:
            args = predict_args(
                self.info.folder, layer.source(), output, bands, self.parameterAsString(parameters, MASK, context),
                self.parameterAsInt(parameters, BLOCK, context), self.parameterAsInt(parameters, OVERLAP, context),
                self.parameterAsInt(parameters, MARGIN, context),
                self.parameterAsBool(parameters, PROBABILITIES, context),
            )  # fmt: skip
        except FileNotFoundError as err:
            raise QgsProcessingException(str(err)) from err
        feedback.pushInfo(" ".join(args))
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise QgsProcessingException(f"eoshard-train predict failed: {done.stderr.strip()[-2000:]}")
        return {OUTPUT: output}
