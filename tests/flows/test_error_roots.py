"""Every error of a portion is under the portion's root, so the CLI prints it as one message."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from eoshard.catalog import CatalogError
from eoshard.flows.errors import FlowsError
from eoshard.pipeline.errors import PipelineError

ROOTS = {"eoshard.catalog": CatalogError, "eoshard.pipeline": PipelineError, "eoshard.flows": FlowsError}
SIGNALS = {"JobCancelled"}  # a cancellation signal between threads, never shown to a user


def _errors(portion: str) -> list[type[BaseException]]:
    package = importlib.import_module(portion)
    found = []
    for info in pkgutil.walk_packages(package.__path__, f"{portion}."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and not issubclass(value, Warning)
                and value.__module__ == module.__name__
                and not name.startswith("_")
                and name not in SIGNALS
            ):
                found.append(value)
    return found


@pytest.mark.parametrize("portion", sorted(ROOTS))
def test_every_error_is_under_its_portions_root(portion: str) -> None:
    errors = _errors(portion)
    assert len(errors) >= 3  # the walk found the modules
    outside = [f"{e.__module__}.{e.__name__}" for e in errors if not issubclass(e, ROOTS[portion])]
    assert outside == [], f"errors outside {ROOTS[portion].__name__}"
