"""What a resumed build deletes: the temporary files killed writers left, ours and zarr's, and nothing else."""

from __future__ import annotations

from pathlib import Path

from eoshard.pipeline.shards.commits import remove_leftovers


def test_only_the_killed_writers_temporary_files_go(tmp_path: Path) -> None:
    leftovers = [
        "_build/commits/.shard-000003.json.tmp",  # ours: .NAME.tmp beside the file it replaces
        "data.zarr/images/c/0/.0.tmp",
        "data.zarr/labels/c/1/0.2b9c4e.partial",  # zarr's: NAME.<uuid>.partial
        ".dataset.json.tmp",
    ]
    kept = [
        "dataset.json",
        "data.zarr/images/c/0/0",
        "data.zarr/images/zarr.json",
        "notes.tmp",  # not hidden: not one of ours
        "data.zarr/.hidden",
        "data.lmdb/part-00/data.mdb",
    ]
    for name in leftovers + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "data.zarr" / ".folder.tmp").mkdir()  # a folder of that name is no file a writer left

    removed = remove_leftovers(tmp_path)

    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(leftovers)
    assert all((tmp_path / name).exists() for name in kept) and (tmp_path / "data.zarr" / ".folder.tmp").is_dir()
    assert not any((tmp_path / name).exists() for name in leftovers)
