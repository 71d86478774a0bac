"""Errors of the converters: what was expected, what came, what to do."""

from __future__ import annotations

from eoshard.pipeline.errors import PipelineError


class ConversionError(PipelineError, OSError):
    """A source file could not be read, or its pixels do not have the shape the dataset promises."""


class DatasetLayoutError(PipelineError, ValueError):
    """A folder does not look like the dataset it was given as."""
