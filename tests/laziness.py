"""The compute-forbidding scheduler that laziness tests share: anything computed under it raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dask


class ComputeCalledError(AssertionError):
    """Something was computed where everything should have stayed lazy."""


def _forbid(*args: object, **kwargs: object) -> None:
    raise ComputeCalledError("something was computed where everything should stay lazy")


@contextmanager
def computing_forbidden() -> Iterator[None]:
    """Within the block, any dask compute raises ``ComputeCalledError``."""
    with dask.config.set(scheduler=_forbid):
        yield
