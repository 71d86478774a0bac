"""Planted secrets of every kind go into select and build (with publish), and no file they write holds one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pystac
import pytest
import yaml

pytestmark = pytest.mark.slow

BBOX = [11.96, 48.005, 11.985, 48.02]
# query strings of the signing schemes found in the wild; every secret value contains "SECRET"
SIGNATURES = [
    "X-Goog-Algorithm=GOOG4&X-Goog-Credential=GOOGSECRET&X-Goog-Signature=GCSSECRET",
    "Expires=1&Signature=CFSECRET&Key-Pair-Id=KPSECRET",
    "sv=2021&se=2030&sp=r&sig=AZURESECRET",
    "X-Amz-Credential=AKIASECRET&X-Amz-Signature=AWSSECRET",
    "password=PWSECRET",
    "token=TOKENSECRET",
]
SOURCE = "https://user:USERSECRET@stac.invalid/v1?token=SRCTOKENSECRET&password=SRCPWSECRET&collections=x"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def _signed_items(demo_data, path: Path) -> None:
    """The demo items with every asset href a file:// URL signed by one of the schemes (in turn)."""
    features = []
    items = pystac.Catalog.from_file(str(demo_data.catalog)).get_items(recursive=True)
    for n, item in enumerate(sorted(items, key=lambda i: i.id)):
        data = item.to_dict(transform_hrefs=True)
        for key, asset in data["assets"].items():
            href = Path(str(item.assets[key].get_absolute_href())).as_uri()
            asset["href"] = f"{href}?{SIGNATURES[n % len(SIGNATURES)]}"
        data["links"] = [
            {"rel": "self", "href": f"https://u:LINKSECRET@stac.invalid/items/{item.id}?token=SECRET"}
        ]
        features.append(data)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def _leaks(folder: Path) -> list[str]:
    return [str(p) for p in sorted(folder.rglob("*")) if p.is_file() and b"SECRET" in p.read_bytes()]


def test_no_file_written_by_select_build_and_publish_holds_a_secret(demo_data, tmp_path: Path) -> None:
    signed, selection = tmp_path / "signed.json", tmp_path / "written" / "selection.json"
    selection.parent.mkdir()
    _signed_items(demo_data, signed)
    selected = _cli("select", "--source", str(signed), "--aoi", ",".join(map(str, BBOX)), "--start", "2024-04-01",
                    "--end", "2024-09-30", "--max-cloud", "60", "--out", str(selection))  # fmt: skip
    assert selected.returncode == 0, selected.stderr
    assert "SECRET" not in selected.stdout + selected.stderr
    saved = json.loads(selection.read_text())
    assert saved["features"] and all(
        a["href"].startswith("file:///") and "?" not in a["href"]
        for f in saved["features"]
        for a in f["assets"].values()
    )
    out, published = tmp_path / "written" / "dataset", tmp_path / "written" / "published"
    config = {
        "name": "secrets",
        "catalog": {
            "source": SOURCE,
            "collection": "sentinel-2-l2a",
            "max_cloud": 60,
            "selection": str(selection),
        },
        "aoi": BBOX,
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B02"],
        "grid": {"resolution": 10, "chunksize": 128},
        "labels": {"path": str(demo_data.parcels), "class_column": "class_code", "id_column": "parcel_id"},
        "patches": {"size": 24},
        "output": {"path": str(out), "shard_size": 8, "url": published.as_uri()},
    }
    config_path = tmp_path / "build.yaml"
    config_path.write_text(yaml.safe_dump(config))
    built = _cli("build", str(config_path), "--workers", "1")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "SECRET" not in built.stdout + built.stderr
    assert (published / "dataset.json").is_file() and (out / "_build" / "plan.json").is_file()
    assert _leaks(tmp_path / "written") == []
    plan = json.loads((out / "_build" / "plan.json").read_text())
    assert plan["config"]["catalog"]["source"] == "https://stac.invalid/v1?collections=x"
