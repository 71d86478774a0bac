"""Errors of the converters: what was expected, what came, what to do."""

from __future__ import annotations

from eoshard.pipeline.errors import PipelineError


class ConversionError(PipelineError, OSError):
    """A source file could not be read, its pixels lack the promised shape, or the target cannot take the output."""


class DatasetLayoutError(PipelineError, ValueError):
    """A folder does not look like the dataset it was given as."""
