"""A direct shard task's windows as the cubes hold them: reflectance (or Landsat's physical units) from the
digital numbers it read, and the spectral indices.

The cubes' own functions (``to_reflectance``, ``landsat.scaled``, ``band_math``) run on the windows in memory, so
a direct build writes the float32 bits that the lazy cubes' graph would.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import xarray as xr

from eoshard.pipeline.band_math import index_window
from eoshard.pipeline.landsat import scaled
from eoshard.pipeline.reflectance import to_reflectance
from eoshard.pipeline.sensors import LS, NODATA, S2


@dataclass(frozen=True)
class GroupUnits:
    """How a group read as digital numbers becomes the cube's group: ``sensor``'s numbers, turned into
    reflectance (``cube.reflectance``) or not. Sentinel-2 groups carry the BOA offset of each time step, Landsat
    groups each band's ``(scale, offset)``."""

    sensor: str
    bands: tuple[str, ...]
    reflectance: bool
    boa_offsets: tuple[int, ...] = ()
    scaling: tuple[tuple[float, float], ...] = ()

    @property
    def converted(self) -> bool:
        """Whether the cube holds other values than the digital numbers read (float32 reflectance or units)."""
        return self.reflectance and self.sensor in (S2, LS)

    def as_read(self, window: np.ndarray) -> xr.DataArray:
        """A ``(time, band, y, x)`` window of digital numbers with the coordinates the cube's group has."""
        coords: dict[str, object] = {"band": list(self.bands)}
        if self.sensor == S2:
            coords["boa_offset"] = ("time", np.array(self.boa_offsets, dtype=np.int16))
        return xr.DataArray(window, dims=("time", "band", "y", "x"), coords=coords, attrs={"nodata": NODATA})

    def as_held(self, numbers: xr.DataArray) -> xr.DataArray:
        """``numbers`` (see ``as_read``) as the cube's group holds them."""
        if not self.converted:
            return numbers
        return to_reflectance(numbers) if self.sensor == S2 else scaled(numbers, self.scaling)


@dataclass(frozen=True)
class Derived:
    """What a build derives from the digital numbers it reads: each group's ``units`` (the groups it turns into
    reflectance or reads indices from), and the ``indices`` (name: expression, in the order of the index group's
    bands) that make the group ``index_group``."""

    units: Mapping[str, GroupUnits]
    indices: Mapping[str, str] = field(default_factory=dict)
    index_group: str = "indices"

    def at_steps(self, steps: Sequence[int], groups: Collection[str]) -> Derived:
        """The same for windows of ``groups`` read at the time ``steps`` only (a refresh's new steps)."""
        units = {
            name: replace(u, boa_offsets=tuple(u.boa_offsets[t] for t in steps))
            if name in groups and u.boa_offsets
            else u
            for name, u in self.units.items()
        }
        return replace(self, units=units)

    def windows(self, read: Mapping[str, np.ndarray], factors: Mapping[str, int]) -> dict[str, np.ndarray]:
        """The windows ``read`` of one area (``(time, band, y, x)`` by group, a group of factor ``f`` ``f`` times
        coarser), as the cube's groups hold them, the index group among them."""
        held = {name: units.as_held(units.as_read(read[name])) for name, units in self.units.items()}
        out = dict(read)
        out.update({name: np.asarray(values.data) for name, values in held.items()})
        if self.indices:
            layers = [index_window(held, factors, expression) for expression in self.indices.values()]
            out[self.index_group] = np.stack(layers, axis=1)
        return out
