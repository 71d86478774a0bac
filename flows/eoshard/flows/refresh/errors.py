"""The refresh's own error (the lock's are in ``lock.py``, the manifest's in ``watermark.py``)."""

from __future__ import annotations

from eoshard.flows.errors import FlowsError


class RefreshError(FlowsError, ValueError):
    """A dataset that this config cannot refresh."""
