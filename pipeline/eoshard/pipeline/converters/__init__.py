"""Converters: public EO benchmark datasets (folders of GeoTIFFs) to rico-hdl-compatible LMDB, or Zarr v3."""

from eoshard.pipeline.converters.datasets import DATASETS, SourceGroup, discover
from eoshard.pipeline.converters.errors import ConversionError, DatasetLayoutError
from eoshard.pipeline.converters.lmdb_writer import write_lmdb
from eoshard.pipeline.converters.zarr_writer import write_zarr

__all__ = [
    "DATASETS",
    "ConversionError",
    "DatasetLayoutError",
    "SourceGroup",
    "discover",
    "write_lmdb",
    "write_zarr",
]
