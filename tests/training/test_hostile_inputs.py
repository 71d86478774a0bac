"""Bad inputs to ``eoshard-train`` (issue #15): a message and exit 1, never a traceback or a half-made output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eoshard.training.cli import main
from eoshard.training.data import split_indices
from eoshard.training.errors import DatasetFormatError, PackageError
from eoshard.training.manifest import Manifest
from eoshard.training.package import ITEM, load
from tests.training.helpers import random_package


def test_a_pickled_resume_file_is_refused_without_unpickling(tmp_path: Path, capsys) -> None:
    evil = tmp_path / "last.pt"
    torch.save({"model": {}, "payload": Path("/etc/passwd")}, evil)  # an object, not a tensor: needs unpickling
    assert main(["fit", str(tmp_path / "any.yaml"), "--resume", str(evil)]) == 1
    err = capsys.readouterr().err
    assert f"--resume {evil} is not a checkpoint written by `eoshard-train fit`" in err
    assert "never unpickled" in err and "Traceback" not in err


def test_a_missing_or_garbage_resume_file(tmp_path: Path, capsys) -> None:
    assert main(["fit", str(tmp_path / "any.yaml"), "--resume", str(tmp_path / "absent.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert main(["fit", str(tmp_path / "any.yaml"), "--resume", str(tmp_path / "junk.pt")]) == 1
    assert "is not a checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("href", ["../w.safetensors", "/etc/hostname", "https://example.com/w.safetensors"])
def test_weights_outside_the_package_are_refused(tmp_path: Path, href: str) -> None:
    random_package(tmp_path)
    folder = tmp_path / "pkg"
    item = json.loads((folder / ITEM).read_text())
    for asset in item["assets"].values():
        if "mlm:model" in asset.get("roles", []):
            asset["href"] = href
    (folder / ITEM).write_text(json.dumps(item))
    with pytest.raises(PackageError, match="points outside the package"):
        load(folder)


@pytest.mark.needs_build
def test_an_unknown_split_names_the_splits_and_leaves_no_folder(shards: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(DatasetFormatError, match=r"split 'nosuch' is not in .*index.parquet: it has \["):
        split_indices(Manifest.read(shards), "nosuch")
    random_package(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", str(tmp_path / "pkg"), str(shards), str(out), "--split", "nosuch"]) == 1
    assert "split 'nosuch' is not in" in capsys.readouterr().err
    assert not out.exists()
    assert main(["evaluate", str(tmp_path / "pkg"), str(shards), str(out), "--split", "test"]) == 1  # 0 samples
    assert "holds no samples" in capsys.readouterr().err
    assert not out.exists()
