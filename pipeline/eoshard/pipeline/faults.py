"""Deterministic fault injection: kill a build at a named write stage, to test that every stage is resumable.

``EOSHARD_FAULT=STAGE:N`` makes the N-th call of ``fault_point(STAGE)`` in a process kill that process's whole
process group with SIGKILL (driver, scheduler and workers of a LocalCluster alike), as a power cut would. Unset, a
fault point costs one dictionary lookup. Run the process under test in a session of its own
(``subprocess.Popen(..., start_new_session=True)``) so that the kill stops there.

Stages (each placed in the writers and commit steps that every build engine uses):

- ``zarr-shard``: after each array of a Zarr shard is written (the N-th array write of a worker: mid-shard)
- ``lmdb-put``: a shard's Zarr files are written, its LMDB values not yet
- ``commit-record``: a shard's LMDB values are committed, its commit record not yet
- ``atomic-write``: a file's temporary copy is written and synced, not yet renamed into place
- ``finalize``: after the index (1), after the STAC Collection (2); ``dataset.json`` comes last
- ``swap``: a refresh's journal is written, the exchange not yet done (1); between the two renames of the
  fallback switch (2)
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

ENV = "EOSHARD_FAULT"
STAGES = ("zarr-shard", "lmdb-put", "commit-record", "atomic-write", "finalize", "swap")

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def fault_point(stage: str) -> None:
    """Kill this process group here when ``EOSHARD_FAULT`` names ``stage`` and this is its N-th call."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != stage:
        return
    with _lock:
        _counts[stage] += 1
        hit = _counts[stage] == int(count or 1)
    if hit:
        os.killpg(os.getpgrp(), signal.SIGKILL)
