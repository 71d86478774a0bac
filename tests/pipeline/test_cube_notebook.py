"""docs/cube.ipynb runs on the demo world and shows its pictures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_cube_notebook_executes(demo_data, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    from eoshard.pipeline.masks import open_valid_mask, valid_fraction
    from tests.pipeline.test_cube_engines import demo_grid, demo_items

    monkeypatch.setenv("EOSHARD_DEMO", str(demo_data.root))
    nb = nbformat.read(ROOT / "docs" / "cube.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "docs")}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "s2_10m {'time': 9, 'band': 4, 'y': 474, 'x': 618} uint16" in text
    fraction = valid_fraction(open_valid_mask(demo_items(demo_data.catalog), demo_grid(demo_data.aoi))).values
    assert f"valid fraction: {[round(float(f), 3) for f in fraction]}" in text
    assert "classes: [0, 1, 2, 3, 4, 5, 6]" in text
