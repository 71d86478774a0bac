"""A real STAC API on 127.0.0.1: PostgreSQL + PostGIS, pgSTAC migrated by pypgstac, stac-fastapi-pgstac under uvicorn.

One server per test session (``pgstac`` fixture). Tests load what they need with ``PgStac.load`` (collections are
made from the items' extent when no collection document is given) and remove it with ``PgStac.delete_collection``.
PostgreSQL's ``initdb`` refuses root, so as root the cluster is owned and run by the ``postgres`` user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.services.dask_cluster import free_port

START_TIMEOUT = 90.0
SERVICE_USER = "postgres"


def _pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found is None:
        raise RuntimeError("PostgreSQL is not installed: run deploy/install-system-deps.sh (make test does)")
    return Path(found).resolve().parent


def _as_service_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], **kwargs: Any) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def collection_of(collection_id: str, items: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A minimal STAC Collection whose extent covers ``items``."""
    xs = [v for item in items for v in (item["bbox"][0], item["bbox"][2])]
    ys = [v for item in items for v in (item["bbox"][1], item["bbox"][3])]
    times = sorted(str(item["properties"]["datetime"]) for item in items)
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": f"{collection_id}: items loaded by the test suite",
        "license": "proprietary",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[min(xs), min(ys), max(xs), max(ys)]]},
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
    }


@dataclass
class PgStac:
    """The running STAC API (``url``) and the database behind it (``dsn``)."""

    url: str
    dsn: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def load(
        self,
        items: Iterable[Mapping[str, Any]],
        collection: Mapping[str, Any] | None = None,
    ) -> None:
        """Upsert ``items`` (dicts) and their collection, made from the items when not given."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        items = [dict(item) for item in items]
        by_collection: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            by_collection.setdefault(str(item["collection"]), []).append(item)
        with PgstacDB(dsn=self.dsn) as db:
            loader = Loader(db=db)
            for cid, group in by_collection.items():
                doc = dict(collection) if collection is not None else collection_of(cid, group)
                if doc["id"] == cid:
                    loader.load_collections(iter([doc]), insert_mode=Methods.upsert)
                loader.load_items(iter(group), insert_mode=Methods.upsert)

    def delete_collection(self, collection_id: str) -> None:
        """Remove a collection and its items."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET search_path TO pgstac, public")
            conn.execute("DELETE FROM items WHERE collection = %s", (collection_id,))
            conn.execute("DELETE FROM collections WHERE id = %s", (collection_id,))

    def delete_items(self, ids: Iterable[str]) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET search_path TO pgstac, public")
            conn.execute("DELETE FROM items WHERE id = ANY(%s)", (list(ids),))


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the STAC API exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(
        f"the STAC API did not answer at {url} within {START_TIMEOUT:g} s:\n{log.read_text()[-4000:]}"
    )


@pytest.fixture(scope="session")
def pgstac() -> Iterator[PgStac]:
    """PostgreSQL + pgSTAC + stac-fastapi-pgstac on free ports of 127.0.0.1, for the whole session."""
    with running_pgstac() as api:
        yield api


@contextmanager
def running_pgstac() -> Iterator[PgStac]:
    """Start the database and the API; stop both and remove their files on exit (benchmarks use this too)."""
    pg_bin = _pg_bin()
    workdir = Path(tempfile.mkdtemp(prefix="eoshard-pgstac-"))
    data = workdir / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, SERVICE_USER)
        shutil.chown(data, SERVICE_USER)
    db_port, api_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        _run(
            _as_service_user(
                [str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            )
        )
        _run(
            _as_service_user(
                [
                    str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
                    "-o", f"-p {db_port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
                ]
            )
        )  # fmt: skip
        dsn = f"postgresql://postgres@127.0.0.1:{db_port}/postgres"
        _run([sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", dsn])
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pgstac.upsert_queryable('eo:cloud_cover', %s::jsonb, 'to_float')",
                (json.dumps({"title": "Cloud cover", "type": "number", "minimum": 0, "maximum": 100}),),
            )
        env = {
            **os.environ,
            "PGUSER": "postgres",
            "PGPASSWORD": "unused-trust-auth",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(db_port),
            "PGDATABASE": "postgres",
        }
        log = workdir / "api.log"
        with log.open("wb") as out:
            api = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
                    "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning",
                ],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(api)
        url = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{url}/_mgmt/ping", api, log)
        yield PgStac(url=url, dsn=dsn, processes=processes)
    finally:
        for proc in processes:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(
            _as_service_user([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def with_file_uris(items: Iterable[Any]) -> list[dict[str, Any]]:
    """pystac Items as dicts whose asset hrefs are absolute ``file://`` URIs, as a STAC API must serve local files."""
    out = []
    for item in items:
        data = item.to_dict(transform_hrefs=False)
        data["links"] = []
        for key, asset in item.assets.items():
            href = asset.get_absolute_href() or asset.href
            data["assets"][key]["href"] = href if "://" in href else Path(href).resolve().as_uri()
        out.append(data)
    return out
