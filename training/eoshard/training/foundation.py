"""Feeding a foundation backbone as it was pretrained: what ``fit`` sets from ``dataset.json`` before training.

For an architecture of :data:`FOUNDATION` the config is resolved once, and the resolved config is what the run
writes (``config.json``) and a package rebuilds from:

- ``bands``: the config's bands (default: the model's bands the dataset has), ordered by centre wavelength
  (``band_metadata`` ``wavelength_nm``; without it, the order of the model's normalisation table, which is by
  wavelength), the order the reader stacks them in;
- ``normalisation``: the model's published table (``normalisation.py``); another one is refused;
- ``model`` options ``bands``, ``num_frames`` (the dataset's dates) and ``year`` (of its first date), which the
  model needs to name its input channels, size its temporal tokens and encode the dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from eoshard.training.config import TrainConfig
from eoshard.training.errors import ConfigError
from eoshard.training.manifest import Manifest
from eoshard.training.normalisation import FOUNDATION_NORMALISATION

# architecture -> its normalisation table
FOUNDATION = {"prithvi": "prithvi-eo-2"}


def order_by_wavelength(manifest: Manifest, bands: Sequence[str], table: str) -> list[str]:
    """``bands`` by centre wavelength (``band_metadata``), else by their position in ``table``."""
    described = manifest.raw.get("band_metadata") or {}
    known = list(FOUNDATION_NORMALISATION[table])
    if all((described.get(b) or {}).get("wavelength_nm") for b in bands):
        return sorted(bands, key=lambda b: float(described[b]["wavelength_nm"]))
    return sorted(bands, key=lambda b: known.index(b) if b in known else len(known))


def resolve_input(config: TrainConfig, manifest: Manifest) -> TrainConfig:
    """``config`` with its bands as the dataset names them (``red`` -> ``B04``, ``Manifest.band_names``) and the
    bands, normalisation and model options a foundation architecture needs (see above)."""
    if config.bands and (stored := manifest.band_names(config.bands)) != config.bands:
        config = config.model_copy(update={"bands": stored})
    table = FOUNDATION.get(config.architecture)
    if table is None:
        return config
    if config.normalisation not in (None, table):
        raise ConfigError(
            f"architecture {config.architecture!r} was pretrained on inputs standardised with {table!r}, not "
            f"{config.normalisation!r}: leave normalisation out or set it to {table!r}"
        )
    chosen = config.bands or [b for b in FOUNDATION_NORMALISATION[table] if b in manifest.bands]
    if not chosen:
        raise ConfigError(
            f"dataset {manifest.root} has none of the bands {list(FOUNDATION_NORMALISATION[table])} that "
            f"{config.architecture!r} was pretrained on (it has {manifest.bands})"
        )
    bands = order_by_wavelength(manifest, chosen, table)
    given = config.model.get("bands")
    if given is not None and list(given) != bands:
        raise ConfigError(
            f"model bands {given} differ from the input {bands} (the bands read, by wavelength): leave "
            "model.bands out, it is set from the bands read"
        )
    first = datetime.fromisoformat(manifest.dates[0]) if manifest.dates else None
    facts = {"bands": bands, "num_frames": len(manifest.dates), "year": first.year if first else 2000}
    return config.model_copy(update={"bands": bands, "normalisation": table, "model": facts | config.model})
