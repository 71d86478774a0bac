"""The published input normalisation of foundation models, applied by the shard readers on request.

``make_dataset(manifest, fmt, normalise="prithvi-eo-2")`` standardises each band with the mean and standard
deviation the model was pretrained with, instead of the dataset's own statistics. The tables are in the models'
units, Sentinel-2 surface reflectance x 10000 (Sentinel-1 backscatter in dB); they are rescaled to the dataset's units
as ``dataset.json`` ``band_metadata`` (or, in datasets without it, the group dtype) says.

Sources:

- ``prithvi-eo-2``: Prithvi-EO-2.0 (IBM/NASA, 300M and 600M), ``config.json`` of the Hugging Face models
  ``ibm-nasa-geospatial/Prithvi-EO-2.0-*``: HLS bands BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2 = Sentinel-2 B02,
  B03, B04, B8A, B11, B12.
- ``terramind-v1``: TerraMind 1.0 (IBM/ESA), pretraining statistics of the ``S2L2A`` and ``S1RTC`` modalities in
  terratorch's TerraMind registry (``v1_pretraining_mean`` / ``v1_pretraining_std``): twelve L2A bands (all but B10)
  and VV, VH in dB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eoshard.training.errors import ConfigError
from eoshard.training.manifest import Manifest

# model -> band -> (mean, std), reflectance x 10000 (Sentinel-2) or dB (Sentinel-1)
FOUNDATION_NORMALISATION: dict[str, dict[str, tuple[float, float]]] = {
    "prithvi-eo-2": {
        "B02": (1087.0, 2248.0),
        "B03": (1342.0, 2179.0),
        "B04": (1433.0, 2178.0),
        "B8A": (2734.0, 1850.0),
        "B11": (1958.0, 1242.0),
        "B12": (1363.0, 1049.0),
    },
    "terramind-v1": {
        "B01": (1390.458, 2106.761),
        "B02": (1503.317, 2141.107),
        "B03": (1718.197, 2038.973),
        "B04": (1853.91, 2134.138),
        "B05": (2199.1, 2085.321),
        "B06": (2779.975, 1889.926),
        "B07": (2987.011, 1820.257),
        "B08": (3083.234, 1871.918),
        "B8A": (3132.22, 1753.829),
        "B09": (3162.988, 1797.379),
        "B11": (2424.884, 1434.261),
        "B12": (1857.648, 1334.311),
        "VV": (-10.93, 4.391),
        "VH": (-17.329, 4.459),
    },
}
_S1 = {"VV", "VH", "HH", "HV"}


def _key(band: str) -> str:
    """Sentinel-1 polarisations in any case (the assets are ``vv``, ``vh``), Sentinel-2 bands as named."""
    return band.upper() if band.upper() in _S1 else band


def _stored_units(manifest: Manifest, band: str) -> str:
    """``reflectance``, ``DN`` or Sentinel-1 ``linear``/``dB``, from ``band_metadata`` or the band's group dtype."""
    described: Mapping[str, Any] = (manifest.raw.get("band_metadata") or {}).get(band) or {}
    if "units" in described:
        return str(described["units"])
    if band.upper() in _S1:
        return "linear"
    dtype = manifest.raw["groups"][manifest.group_of(band)]["dtype"]
    return "reflectance" if str(dtype).startswith("float") else "DN"


def foundation_stats(model: str, manifest: Manifest, bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (float32, ``bands`` order) of ``model``'s pretraining, in the dataset's units.

    Refused: a model or band not in the table, digital numbers (their offset of processing baseline 04.00 on is
    not applied, so they are not reflectance x 10000), and linear Sentinel-1 backscatter (the tables are in dB).
    """
    table = FOUNDATION_NORMALISATION.get(model)
    if table is None:
        raise ConfigError(
            f"no published normalisation for model {model!r}: expected one of {sorted(FOUNDATION_NORMALISATION)}; "
            "pass normalise=True for the dataset's own statistics"
        )
    missing = [b for b in bands if _key(b) not in table]
    if missing:
        raise ConfigError(
            f"{model} was pretrained on bands {list(table)}, not on {missing}: select bands of the model "
            f"(bands=[...]) or normalise with the dataset's own statistics"
        )
    mean, std = [], []
    for band in bands:
        m, s = table[_key(band)]
        units = _stored_units(manifest, band)
        if units == "reflectance":
            m, s = m / 10000, s / 10000
        elif units != "dB" and band.upper() in _S1:
            raise ConfigError(
                f"{model}'s statistics of {band} are for backscatter in dB, but this dataset stores {band} as {units}: "
                "convert it to dB (10 * log10) before normalising, or use the dataset's own statistics"
            )
        elif units == "DN":
            raise ConfigError(
                f"{model}'s statistics are for surface reflectance x 10000, but {band} is stored as digital numbers "
                "whose processing-baseline offset (-1000 from 04.00 on) is not applied: build the dataset with "
                "cube.reflectance: true, or normalise with the dataset's own statistics"
            )
        mean.append(m)
        std.append(s)
    return np.array(mean, "f4"), np.array(std, "f4")
