"""Errors of the flows portion: ``FlowsError`` is the root of all of them (config, jobs, storage, refresh)."""

from __future__ import annotations


class FlowsError(Exception):
    """Base of the errors that the CLI prints as one message, without a traceback."""
