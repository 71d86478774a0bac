"""eoshard's tuning variables (``EOSHARD_*``, docs/running-scheduler.md), read from the environment.

The modules that read them at import take the default for a value that is not one and note it; ``check_settings``
raises it, with the variable, what it holds and what it should: the build's planning does, and each shard task.
Raised at import, it would fail a worker unpickling a task, and distributed closes such a worker: a build on a
cluster whose workers all had it waited for workers forever."""

from __future__ import annotations

import math
import os
from typing import TypeVar

from eoshard.pipeline.errors import SettingError

T = TypeVar("T")
_invalid: dict[str, str] = {}  # variable -> what is wrong with its value


def check_settings() -> None:
    """Raise ``SettingError`` if a tuning variable read so far in this process held no value of its kind."""
    if _invalid:
        raise SettingError("; ".join(_invalid.values()))


def is_set(name: str) -> bool:
    """Whether the environment gives ``name`` a value (an empty one counts as unset, as the readers below take it)."""
    return bool(_raw(name))


def env_count(name: str, default: int, minimum: int = 0) -> int:
    """The whole number in ``name``, at least ``minimum``; ``default`` when unset or empty (or not one: noted)."""
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        return _noted(name, _told(name, raw, f"a whole number of at least {minimum}", str(default)), default)
    return value


def env_megabytes(name: str, default: float) -> int:
    """The size in MiB in ``name`` (a fraction allowed, 0 or more), in bytes; ``default`` MiB when unset, empty
    or not one (noted)."""
    raw = _raw(name)
    if not raw:
        return int(default * 2**20)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        message = _told(name, raw, "a size in MiB, 0 or more (e.g. 512)", f"{default:g}")
        return _noted(name, message, int(default * 2**20))
    return int(value * 2**20)


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` in ``name``; ``default`` when unset, empty or not one (noted)."""
    raw = _raw(name)
    if not raw:
        return default
    if raw not in choices:
        return _noted(name, _told(name, raw, " or ".join(repr(c) for c in choices), repr(default)), default)
    return raw


def _raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def _noted(name: str, message: str, default: T) -> T:
    _invalid[name] = message
    return default


def _told(name: str, raw: str, expected: str, default: str) -> str:
    return (
        f"the environment variable {name} is {raw!r}, which is not {expected}: set it to one (its default is "
        f"{default}) or unset it, where the command runs and where its Dask workers start"
    )
