"""Errors of the pipeline portion: each says what was expected, what came, and what to do."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error raised by ``eoshard.pipeline``."""


class GridError(PipelineError, ValueError):
    """An area of interest or a resolution cannot make a valid target grid."""


class BandError(PipelineError, KeyError):
    """A requested band is missing from the products."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnsupportedProductError(PipelineError, ValueError):
    """Products of a mission the pipeline does not read (Landsat): selection works, cubes do not."""


class AssetReadError(PipelineError, OSError):
    """A product's asset could not be read (missing or corrupt file)."""


class ShardWriteError(PipelineError, OSError):
    """A shard could not be written (full disk, permissions)."""


class DatasetError(PipelineError, FileNotFoundError):
    """A folder is not a finished eoshard dataset (no ``dataset.json``, or files missing)."""


class ManifestError(DatasetError, ValueError):
    """A ``dataset.json`` that is broken, or of a format newer than this eoshard reads."""
