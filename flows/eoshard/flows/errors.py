"""Errors of the flows portion's own work (jobs, storage, refresh); config errors are ``ConfigError``."""

from __future__ import annotations


class FlowsError(Exception):
    """Base of the errors that the CLI prints as one message, without a traceback."""
