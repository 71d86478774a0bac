"""Samples: the arrays of one patch, as written to every shard format."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from safetensors.numpy import save


@dataclass(frozen=True)
class Sample:
    """One patch: bands ``(T, H, W)`` by name, label layers ``(H, W)`` by name, dates and georeferencing."""

    key: str
    bands: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    dates: Sequence[str]
    crs: str
    transform: tuple[float, ...]

    def to_safetensors(self) -> bytes:
        """The LMDB value: a safetensors dict of band and label name -> array, dates and georeferencing as metadata."""
        tensors = {name: np.ascontiguousarray(a) for name, a in {**self.bands, **self.labels}.items()}
        metadata = {
            "dates": json.dumps(list(self.dates)),
            "crs": self.crs,
            "transform": json.dumps(list(self.transform)),
        }
        return save(tensors, metadata=metadata)
