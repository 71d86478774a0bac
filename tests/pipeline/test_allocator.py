"""The shard tasks' malloc settings: under a Dask nanny's MALLOC_TRIM_THRESHOLD_, arrays under 2 MiB are reused,
not faulted in afresh each time."""

from __future__ import annotations

import subprocess
import sys

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
