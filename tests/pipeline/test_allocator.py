"""The shard tasks' malloc settings: under a Dask nanny's MALLOC_TRIM_THRESHOLD_, arrays under 2 MiB are reused,
not faulted in afresh each time; the committing process's: LMDB's pages for each value are reused from commit to
commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CODE = """
import resource, sys
import numpy as np
from eoshard.pipeline.direct import tune_malloc

if sys.argv[1] == "tuned":
    assert tune_malloc()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    a = np.ones(2**17, dtype="f8")  # 1 MiB: a sample's band stack, a 512 px block
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_malloc_reuses_big_arrays_under_the_nannys_trim_threshold() -> None:
    env = {"MALLOC_TRIM_THRESHOLD_": "65536", "PATH": "/usr/bin:/bin"}  # what distributed's nanny sets

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    plain, tuned = faults("plain"), faults("tuned")
    # fresh pages for every array (the kernel faults them in a few at a time): about 260 faults per array here
    assert plain > 100 * 100
    # the heap's pages, reused: about 5 faults per array here (Python's own allocations)
    assert tuned * 10 < plain, (plain, tuned)


COMMITS = """
import os, resource, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from eoshard.pipeline.direct import tune_malloc, tune_malloc_for_commits
from eoshard.pipeline.shards.lmdb_store import LmdbWriter
from eoshard.pipeline.shards.spool import read_spooled, release_spooled, spool_values

if sys.argv[1] == "tuned":
    assert tune_malloc_for_commits()
    assert tune_malloc_for_commits()  # once: the same answer again
if sys.argv[1] == "shards-first":
    assert tune_malloc()
    assert not tune_malloc_for_commits()  # the shard tasks' settings stay
    sys.exit(0)
out = Path(sys.argv[2])
writers = [LmdbWriter(out / f"part-{i:02d}") for i in range(2)]
threads = [ThreadPoolExecutor(1) for _ in writers]  # one thread per part, as the build's driver commits


def commit(writer, records):  # the page faults of one commit, in its thread
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    assert writer.put_many(records) == 8
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
faults, pending = 0, []
for shard in range(24):  # as the build's driver: a shard task's values spooled, mapped, then committed
    values = [(f"{shard}-{i}", os.urandom(2_200_000)) for i in range(8)]  # samples as alike in size as a build's
    spool = spool_values(out, shard, values)
    del values
    part = shard % 2
    pending.append(threads[part].submit(commit, writers[part], read_spooled(spool)))
    release_spooled(spool)
    if len(pending) > 2:
        faults += pending.pop(0).result()
faults += sum(p.result() for p in pending)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_committing_process_reuses_each_values_lmdb_pages(tmp_path: Path) -> None:
    def faults(mode: str) -> list[int]:
        """The page faults of the whole process and of its commits' threads."""
        done = subprocess.run(
            [sys.executable, "-c", COMMITS, mode, str(tmp_path / mode)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return [int(n) for n in done.stdout.split()]

    plain, tuned = faults("plain"), faults("tuned")
    # 24 shards of 8 values of 2.2 MB (about 540 pages each): here about 120,000 faults in all against 15,000
    # tuned, and LMDB's copies alone about 18,000 against 10,000
    assert plain[0] > 24 * 8 * 300, plain
    assert tuned[0] * 4 < plain[0], (plain, tuned)
    assert tuned[1] < 0.7 * plain[1], (plain, tuned)
    assert faults("shards-first") == []  # it ran its asserts and printed nothing
