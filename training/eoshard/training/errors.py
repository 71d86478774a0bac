"""The training portion's errors: each specific error also subclasses the matching builtin."""

from __future__ import annotations


class TrainingError(Exception):
    """Base of every error raised by eoshard.training."""


class DatasetFormatError(TrainingError, ValueError):
    """A shard folder does not follow the documented format (docs/training.md)."""


class ConfigError(TrainingError, ValueError):
    """A training config or CLI argument is invalid."""


class PackageError(TrainingError, ValueError):
    """A model package is incomplete or unsafe (pickled weights)."""


class InputError(TrainingError, ValueError):
    """A predict input cannot be read as an image."""


class CorruptSampleError(DatasetFormatError):
    """A sample's bytes do not match the checksum the build recorded (a flipped bit, a truncated file)."""
