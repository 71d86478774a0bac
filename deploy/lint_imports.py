"""`lint-imports` for eoshard's pkgutil-style namespace: what `make contracts` (and so CI) runs.

`eoshard/__init__.py` (shipped by the `eoshard` distribution, see design record 0014) extends `eoshard.__path__`
to the four portion folders (catalog, pipeline, flows, training). grimp, which import-linter builds its graph
with, takes the folders to scan from `importlib.util.find_spec("eoshard").submodule_search_locations`, which for
a regular package is the folder of its `__init__.py` alone: plain `lint-imports` fails with
"Module 'eoshard.catalog' does not exist" (python-grimp/grimp#167, pkgutil-style namespaces). So this script
imports `eoshard` (which loads no portion), points its spec at the extended `__path__`, which `find_spec`
then returns, and hands over to import-linter's own command: same options, same contracts
(`[tool.importlinter]` in pyproject.toml), same exit status. When grimp#167 is fixed, `lint-imports` is enough.

    python deploy/lint_imports.py [lint-imports options]
"""

from __future__ import annotations

from importlinter.cli import lint_imports_command

import eoshard


def point_spec_at_path() -> list[str]:
    """Make `find_spec("eoshard")` list every portion folder, as `eoshard.__path__` does; returns them."""
    spec = eoshard.__spec__
    assert spec is not None
    spec.submodule_search_locations = list(eoshard.__path__)
    return spec.submodule_search_locations


if __name__ == "__main__":
    point_spec_at_path()
    lint_imports_command(prog_name="lint-imports")
