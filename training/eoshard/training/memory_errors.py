"""Running out of memory as numpy and torch say it (a ``MemoryError``; ``torch.OutOfMemoryError`` on a GPU; a
``RuntimeError`` from torch's CPU allocator), told as what to make smaller."""

from __future__ import annotations


def out_of_memory(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    )


def said(err: BaseException) -> str:
    """The first line of what the library said."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
