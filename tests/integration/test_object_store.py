"""Output on an S3-compatible server (moto's server mode on 127.0.0.1): build into the bucket, read it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

from eoshard.flows.cli import app
from eoshard.flows.config import ConfigError, parse_config
from eoshard.flows.storage import StorageError, fetch, publish, redact_url
from tests.integration.test_submit import lmdb_items, write_config
from tests.services.moto_s3 import BUCKET, SECRET


@pytest.mark.slow
def test_build_into_a_bucket_and_read_it_back(demo_data: Any, s3_env: Any, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    config_path = write_config(demo_data, staging)
    config = yaml.safe_load(config_path.read_text())
    config["output"]["url"] = f"s3://{BUCKET}/datasets/demo"
    config_path.write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning, match="1 of 480 label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(config_path), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    manifest = json.loads(fs.cat(f"{BUCKET}/datasets/demo/dataset.json"))
    assert manifest == json.loads((staging / "dataset.json").read_text())
    assert manifest["n_samples"] == 108
    remote = zarr.open_group(f"s3://{BUCKET}/datasets/demo/data.zarr", mode="r")
    local = zarr.open_group(str(staging / "data.zarr"), mode="r")
    assert remote["s2_10m"].shape == (108, 7, 4, 48, 48)
    for name in ("s2_10m", "s2_20m", "class", "parcel_id"):
        np.testing.assert_array_equal(remote[name][:], local[name][:])
    # LMDB reads only local files: download and compare every record byte for byte
    copy = fetch(f"s3://{BUCKET}/datasets/demo", tmp_path / "copy")
    downloaded = lmdb_items(copy / "data.lmdb")
    assert len(downloaded) == 108
    assert downloaded == lmdb_items(staging / "data.lmdb")


def test_publish_uploads_the_manifest_last(s3_env: Any, tmp_path: Path) -> None:
    (tmp_path / "data.zarr").mkdir()
    (tmp_path / "data.zarr" / "zarr.json").write_text("{}")
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "dataset.json").write_text('{"n_samples": 0}')
    uploaded = publish(tmp_path, f"s3://{BUCKET}/tiny")
    assert uploaded == ["a.bin", "data.zarr/zarr.json", "dataset.json"]
    assert s3_env.cat(f"{BUCKET}/tiny/data.zarr/zarr.json") == b"{}"


def test_an_unfinished_dataset_is_not_published(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"a")
    with pytest.raises(StorageError, match=r"holds no dataset\.json: only a finished dataset can be published"):
        publish(tmp_path, f"file://{tmp_path}/out")


def test_file_urls_publish_to_a_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "data.zarr").mkdir(parents=True)
    (src / "data.zarr" / "c").write_bytes(b"\x00\x01")
    (src / "dataset.json").write_text("{}")
    publish(src, f"file://{tmp_path}/dst")
    assert (tmp_path / "dst" / "data.zarr" / "c").read_bytes() == b"\x00\x01"
    assert (tmp_path / "dst" / "dataset.json").read_text() == "{}"


def test_redact_url_drops_credentials() -> None:
    assert redact_url("s3://key:secret@bucket/prefix") == "s3://bucket/prefix"
    assert redact_url("https://user:pw@host:9000/p?q=1") == "https://host:9000/p?q=1"
    assert redact_url("gs://bucket/x") == "gs://bucket/x"


def test_an_unknown_protocol_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{}")
    with pytest.raises(StorageError, match="cannot open output nosuchfs://bucket/x"):
        publish(tmp_path, "nosuchfs://bucket/x")


def test_an_output_url_with_credentials_is_refused(demo_data: Any, tmp_path: Path) -> None:
    config = yaml.safe_load(write_config(demo_data, tmp_path / "demo").read_text())
    config["output"]["url"] = "s3://key:secret@bucket/x"
    with pytest.raises(ConfigError, match="without credentials"):
        parse_config(config, tmp_path)
    config["output"]["url"] = "bucket/x"
    with pytest.raises(ConfigError, match="expected an fsspec URL such as s3://bucket/prefix"):
        parse_config(config, tmp_path)
