"""Fixtures shared by every portion's tests: the real data in ../shared/data and the demo world."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# On several test processes (``make pytest``), one OpenMP thread each: torch's and OpenBLAS's threads of one process
# otherwise spin on the core the other one runs on (tests/training/test_sr.py beside a busy core: 230 s, 165 s with
# one thread). Child processes (Dask workers, the CLI under test) inherit it.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def shared_path(*parts: str) -> Path:
    """A folder or file of ../shared/data; a failure under CI=true, a skip elsewhere when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data {path} is missing: CI must run with ../shared beside the repository")
        pytest.skip(f"shared data {path} is absent (it lives beside the repository as ../shared/data)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory):
    """The demo world (static catalog, COGs, parcels, AOI), written once per test session."""
    from eoshard.flows.demo.products import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("demo"))


# real Dask scheduler and workers, and a real STAC API (pgSTAC), on 127.0.0.1
pytest_plugins = [
    "tests.services.dask_cluster",
    "tests.services.pgstac",
    "tests.services.fault_proxy",
    "tests.services.dhus_replay",
    "tests.services.moto_s3",
    "tests.services.run_watch",  # under CI: a hang's stacks, and the peak memory in the summary
]
