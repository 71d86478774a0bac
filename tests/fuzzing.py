"""Fuzzing helpers shared by the portions' fuzz tests: how many examples, and JSON-like inputs mutated a field at a
time (so that most examples get past parsing into the code behind it)."""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st

# CI draws the same examples on every run (derandomized: a red CI names a change, not an unlucky draw, and the
# failure prints its blob to reproduce it); elsewhere each run draws new ones, and ``make fuzz`` draws
# ``EOSHARD_FUZZ`` times as many (hypothesis's local database replays what failed first).
FUZZ_SCALE = int(os.environ.get("EOSHARD_FUZZ", "1"))
EXPLORE = FUZZ_SCALE > 1 or os.environ.get("CI", "").lower() != "true"
T = TypeVar("T", bound=Callable[..., Any])
# pytest-timeout's limit of a test, for the examples CI draws
TEST_TIMEOUT_S = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["pytest"][
    "ini_options"
]["timeout"]


def fuzz_settings(examples: int, *, slow_examples: bool = False) -> Callable[[T], T]:
    """``examples`` examples (times ``EOSHARD_FUZZ``), derandomized under CI unless asked to explore, and the
    test's time limit as many times longer: at ``EOSHARD_FUZZ=30`` pytest-timeout stopped the saved selections'
    300 builds mid-example, and hypothesis, replaying, reported that as a flaky strategy."""
    checks = [HealthCheck.too_slow, HealthCheck.data_too_large] if slow_examples else []
    chosen = settings(max_examples=examples * FUZZ_SCALE, deadline=None, derandomize=not EXPLORE, print_blob=True,
                      suppress_health_check=checks)  # fmt: skip

    def apply(test: T) -> T:
        return pytest.mark.timeout(TEST_TIMEOUT_S * FUZZ_SCALE)(chosen(test))

    return apply


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


def key_paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a JSON-like value (dict keys and list positions)."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += key_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data[:3]):
            found += key_paths(value, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with one to three fields replaced by arbitrary values, deleted, or given an unknown sibling."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = key_paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
    return data


def note_changes(base: Any, changed: Any, prefix: str = "") -> None:
    """Tell hypothesis's report which fields ``changed`` has other than ``base`` (a whole manifest is too long to
    read there)."""
    if isinstance(base, dict) and isinstance(changed, dict):
        for key in sorted(set(base) | set(changed), key=str):
            if key not in changed:
                note(f"{prefix}{key}: deleted")
            elif key not in base:
                note(f"{prefix}{key}: added {changed[key]!r:.200}")
            else:
                note_changes(base[key], changed[key], f"{prefix}{key}.")
    elif isinstance(base, list) and isinstance(changed, list) and len(base) == len(changed):
        for i, (a, b) in enumerate(zip(base, changed, strict=True)):
            note_changes(a, b, f"{prefix}{i}.")
    elif base != changed or type(base) is not type(changed):
        note(f"{prefix.rstrip('.')}: {base!r:.80} -> {changed!r:.200}")
