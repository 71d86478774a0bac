"""docs/training.ipynb runs against a freshly built dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.needs_build
def test_training_notebook_executes(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("EOSHARD_DATASET", str(shards))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "docs" / "training.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "docs")}}
    ).execute()
    shapes = nb.cells[2].outputs[0]["data"]["text/plain"]
    assert "'image': (4, 7, 3, 32, 32)" in shapes and "'label': (4, 32, 32)" in shapes
