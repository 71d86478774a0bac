"""Running out of memory as numpy and torch say it (a ``MemoryError``; ``torch.OutOfMemoryError`` on a GPU; a
``RuntimeError`` from torch's CPU allocator), told as what to make smaller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from eoshard.training.errors import ConfigError


def _out_of_memory(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    )


def _said(err: BaseException) -> str:
    """The first line of what the library said."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextmanager
def out_of_memory_told(advice: Callable[[str], str]) -> Iterator[None]:
    """Running out of memory inside becomes a ``ConfigError`` of ``advice(what the library said)``; any other
    error passes unchanged."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        raise ConfigError(advice(_said(err))) from err
