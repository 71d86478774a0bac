"""Words the commands and jobs share (no Typer or rich here: a job's driver runs on a worker)."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and its noun, singular for one: ``counted(1, "patch", "patches")`` is "1 patch"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
