"""Planted secrets of every kind go into select, build (with publish), refresh and submit, and no file they write,
no job record, job log or cluster log, and nothing they print holds one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pystac
import pytest
import yaml

from eoshard.flows.jobs import connect
from eoshard.flows.jobs.registry import JOBS, topic, wait_for_state
from eoshard.flows.refresh.lock import lock_path
from tests.flows.test_fuzz_inputs import _demo_config
from tests.integration.test_refresh import CUT, acquired, season_items
from tests.services.pgstac import with_file_uris

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
    "x-amz-security-token=XAMZSECRET&x-amz-signature=XAMZSIGSECRET",
]
SOURCE = "https://user:USERSECRET@stac.invalid/v1?token=SRCTOKENSECRET&password=SRCPWSECRET&collections=x"
# an API that refuses connections, asked with every kind of secret: its failure quotes the URL it failed on
FAILING = (
    "http://user:USERSECRET@127.0.0.1:9/v1?collections=x&token=TOKSECRET&X-Goog-Signature=GCSSECRET"
    "&Signature=CFSECRET&Key-Pair-Id=KPSECRET&password=PWSECRET&sig=AZURESECRET&x-amz-security-token=XAMZSECRET"
)


def _cli(*args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a session of its own (``fault``: an EOSHARD_FAULT that kills it there)."""
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", *args]
    env = {k: v for k, v in os.environ.items() if k != "EOSHARD_FAULT"} | (
        {"EOSHARD_FAULT": fault} if fault else {}
    )
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, env=env, start_new_session=True
    )


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


def _config(
    path: Path, demo_data, selection: Path | None, out: Path, published: Path, source: str = SOURCE
) -> Path:
    """A build of the demo world whose ``catalog.source`` carries secrets; the saved selection is what it uses."""
    config = _demo_config(demo_data) | {
        "name": "secrets",
        "catalog": {"source": source, "collection": "sentinel-2-l2a", "max_cloud": 60,
                    **({"selection": str(selection)} if selection else {})},
        "aoi": BBOX,
        "output": {"path": str(out), "shard_size": 8, "url": published.as_uri()},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def _select(signed: Path, out: Path, end: str = "2024-09-30") -> None:
    selected = _cli("select", "--source", str(signed), "--aoi", ",".join(map(str, BBOX)), "--start", "2024-04-01",
                    "--end", end, "--max-cloud", "60", "--out", str(out))  # fmt: skip
    assert selected.returncode == 0, selected.stderr
    assert "SECRET" not in selected.stdout + selected.stderr


def _leaks(folder: Path) -> list[str]:
    return [str(p) for p in sorted(folder.rglob("*")) if p.is_file() and b"SECRET" in p.read_bytes()]


def test_no_file_written_by_select_build_and_publish_holds_a_secret(demo_data, tmp_path: Path) -> None:
    signed, selection = tmp_path / "signed.json", tmp_path / "written" / "selection.json"
    selection.parent.mkdir()
    _signed_items(demo_data, signed)
    _select(signed, selection)
    saved = json.loads(selection.read_text())
    assert saved["features"] and all(
        a["href"].startswith("file:///") and "?" not in a["href"]
        for f in saved["features"]
        for a in f["assets"].values()
    )
    out, published = tmp_path / "written" / "dataset", tmp_path / "written" / "published"
    config_path = _config(tmp_path / "build.yaml", demo_data, selection, out, published)
    built = _cli("build", str(config_path), "--workers", "1")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "SECRET" not in built.stdout + built.stderr
    assert (published / "dataset.json").is_file() and (out / "_build" / "plan.json").is_file()
    assert _leaks(tmp_path / "written") == []
    plan = json.loads((out / "_build" / "plan.json").read_text())
    assert plan["config"]["catalog"]["source"] == "https://stac.invalid/v1?collections=x"


def test_no_file_written_by_refresh_holds_a_secret(demo_data, tmp_path: Path) -> None:
    """A build of the first half of the season, a refresh killed during its swap (staging, journal and locks on
    disk), then the refresh finished and published: nothing of either holds a secret."""
    written = tmp_path / "written"
    written.mkdir()
    _signed_items(demo_data, tmp_path / "signed.json")
    _select(tmp_path / "signed.json", written / "half.json", end="2024-06-19")
    _select(tmp_path / "signed.json", written / "season.json")
    out, published = written / "dataset", written / "published"
    built = _cli("build", str(_config(tmp_path / "b.yaml", demo_data, written / "half.json", out, published)),
                 "--workers", "1")  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    half = json.loads((out / "dataset.json").read_text())["dates"]
    config = _config(tmp_path / "r.yaml", demo_data, written / "season.json", out, published)
    killed = _cli("refresh", str(config), "--workers", "1", fault="swap:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    staging, journal = out.with_name(f".{out.name}.refresh"), out.with_name(f".{out.name}.refresh.json")
    assert (staging / "_build" / "plan.json").is_file() and journal.is_file() and lock_path(out).is_file()
    assert _leaks(written) == []
    stale = _cli("refresh", str(config), "--workers", "1")
    assert stale.returncode == 1 and "stale lock" in stale.stderr
    lock_path(out).unlink()
    lock_path(staging).unlink()
    refreshed = _cli("refresh", str(config), "--workers", "1")
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    dates = json.loads((published / "dataset.json").read_text())["dates"]
    assert len(dates) > len(half) and dates[: len(half)] == half
    for run in (built, killed, stale, refreshed):
        assert "SECRET" not in run.stdout + run.stderr
    assert _leaks(written) == []


def test_no_job_record_log_or_file_of_submit_holds_a_secret(dask_cluster, demo_data, tmp_path: Path) -> None:
    """A job that finishes and publishes, and a job that fails on an API asked with secrets: their records, logs,
    the cluster's own logs, the files and what the CLI prints hold none."""
    written = tmp_path / "written"
    written.mkdir()
    _signed_items(demo_data, tmp_path / "signed.json")
    _select(tmp_path / "signed.json", written / "season.json")
    good = _config(
        tmp_path / "good.yaml", demo_data, written / "season.json", written / "dataset", written / "pub"
    )
    bad = _config(tmp_path / "bad.yaml", demo_data, None, written / "failed", written / "pub2", source=FAILING)
    runs = [_cli("submit", str(path), "--scheduler", dask_cluster.address) for path in (good, bad)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    ids = [r.stdout.strip().splitlines()[-1] for r in runs]
    with connect(dask_cluster.address) as client:
        states = [wait_for_state(client, i, ("finished", "failed", "cancelled"), 600).state for i in ids]
        records = json.dumps(client.get_metadata([JOBS]))
        events = json.dumps([client.get_events(topic(i)) for i in ids], default=str)
    assert states == ["finished", "failed"]
    runs += [_cli("jobs", "--scheduler", dask_cluster.address, *args) for args in ([], ["logs", ids[1]])]
    assert "failed:" in runs[-1].stdout and "token=REDACTED" in runs[-1].stdout  # the traceback, redacted
    assert "127.0.0.1:9" in records and (written / "pub" / "dataset.json").is_file()
    assert "SECRET" not in records and "SECRET" not in events
    for run in runs:
        assert "SECRET" not in run.stdout + run.stderr
    assert _leaks(written) == [] and _leaks(dask_cluster.logs) == []


def test_a_refresh_from_an_api_asked_with_secrets_writes_none(pgstac, demo_data, tmp_path: Path) -> None:
    """``catalog.source`` with user info and signing parameters of every kind, against a real pgSTAC API: the build
    and the refresh search it, and write and print no secret."""
    items = season_items(demo_data.catalog)
    pgstac.load(with_file_uris([i for i in items if acquired(i) < CUT]))
    api = urlsplit(pgstac.url)
    signed = "&".join(SIGNATURES)
    source = urlunsplit((api.scheme, f"user:USERSECRET@{api.netloc}", api.path, signed, ""))
    written = tmp_path / "written"
    out, published = written / "dataset", written / "published"
    config = _config(tmp_path / "api.yaml", demo_data, None, out, published, source=source)
    try:
        built = _cli("build", str(config), "--workers", "1")
        assert built.returncode == 0, built.stdout + built.stderr
        half = json.loads((out / "dataset.json").read_text())["dates"]
        pgstac.load(with_file_uris([i for i in items if acquired(i) >= CUT]))  # the second half arrives
        refreshed = _cli("refresh", str(config), "--workers", "1")
        assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    finally:
        pgstac.delete_collection("sentinel-2-l2a")
    dates = json.loads((published / "dataset.json").read_text())["dates"]
    assert len(dates) > len(half) and dates[: len(half)] == half
    for run in (built, refreshed):
        assert "SECRET" not in run.stdout + run.stderr
    assert _leaks(written) == []
    plan = json.loads((out / "_build" / "plan.json").read_text())
    assert plan["config"]["catalog"]["source"] == urlunsplit((api.scheme, api.netloc, api.path, "", ""))
