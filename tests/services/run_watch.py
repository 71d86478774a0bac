"""What a CI run says about itself when it goes wrong. A test process that crashes or hangs leaves every thread's
stack in a file of its own, which the run's summary prints (a test process's stderr may not reach CI's log); the
summary also gives the machine's peak memory with the processes that held it, so that a test process that dies
without a word, as the kernel's OOM killer leaves it, is explained or ruled out. A test process that grows past a
quarter of the machine's memory is asked for its stacks once (``SIGUSR2``): what it ran while it grew is in the
summary even when the kernel kills it a moment later."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Any

import pytest

# A test process still running after this long (a hang outside any test, which pytest-timeout does not watch: a
# thread the interpreter waits for at exit) prints every thread's stack and exits.
SESSION_LIMIT_S = 40 * 60
SAMPLE_S = 0.5  # memory can grow by gigabytes a second: sampled less often, a process killed for it went unseen
STACKS_SIGNAL = signal.SIGUSR2
FAULTS_ENV = "EOSHARD_TEST_FAULTS"  # the folder of the test processes' faulthandler files, made by the controller


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@dataclass
class MemoryPeak:
    """The most memory in use on the machine while the tests ran, when, and the largest processes then."""

    used: int = 0
    total: int = 0
    at: float = 0.0
    top: list[tuple[int, int, str]] = field(default_factory=list)  # (rss, pid, command)
    stop: threading.Event = field(default_factory=threading.Event)
    asked: set[int] = field(default_factory=set)  # the test processes asked for their stacks

    def sample(self, psutil: Any) -> None:
        memory = psutil.virtual_memory()
        self.total = memory.total
        used = memory.total - memory.available
        if used > memory.total // 4:
            self.ask_the_large(psutil)
        if used <= self.used:
            return
        processes = []
        for proc in psutil.process_iter(["pid", "memory_info", "cmdline"]):
            info = proc.info
            if info["memory_info"] is not None:
                command = " ".join(info["cmdline"] or [])[:100]
                processes.append((int(info["memory_info"].rss), int(info["pid"]), command))
        self.used, self.at, self.top = used, time.time(), sorted(processes, reverse=True)[:6]

    def ask_the_large(self, psutil: Any) -> None:
        """Signals each test process past a quarter of the memory, once: only those that have a faulthandler file,
        and so a handler for the signal (by default it ends a process)."""
        folder = Path(os.environ.get(FAULTS_ENV, "/nonexistent"))
        for child in psutil.Process().children():
            try:
                if child.pid in self.asked or child.memory_info().rss <= self.total // 4:
                    continue
                if any(folder.glob(f"*-{child.pid}.txt")):
                    self.asked.add(child.pid)
                    child.send_signal(STACKS_SIGNAL)
            except psutil.Error:
                continue

    def run(self) -> None:
        import psutil

        while not self.stop.wait(SAMPLE_S):
            try:
                self.sample(psutil)
            except (psutil.Error, OSError):
                continue


_peak = MemoryPeak()
_faults: list[IO[str]] = []  # this process's faulthandler file, kept open


@pytest.hookimpl(trylast=True)  # after pytest's own faulthandler plugin, which writes to stderr
def pytest_configure(config: pytest.Config) -> None:
    if not _under_ci():
        return
    worker = hasattr(config, "workerinput")
    if worker and FAULTS_ENV in os.environ:
        path = Path(os.environ[FAULTS_ENV]) / f"{os.environ.get('PYTEST_XDIST_WORKER')}-{os.getpid()}.txt"
        _faults.append(path.open("w"))
        faulthandler.enable(file=_faults[0], all_threads=True)
        faulthandler.register(STACKS_SIGNAL, file=_faults[0], all_threads=True)
    else:  # the controller, or a run without xdist: its stderr is CI's log
        os.environ[FAULTS_ENV] = tempfile.mkdtemp(prefix="eoshard-test-faults-")  # the workers inherit it
    faulthandler.dump_traceback_later(SESSION_LIMIT_S, exit=True, file=_faults[0] if _faults else sys.__stderr__)
    # the controller (or a run without xdist) watches the machine; the training package's own venv has no psutil
    if not worker and find_spec("psutil") is not None:
        threading.Thread(target=_peak.run, name="eoshard-memory-watch", daemon=True).start()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    folder = os.environ.get(FAULTS_ENV)
    for path in sorted(Path(folder).glob("*.txt")) if folder else []:
        if text := path.read_text(errors="replace").strip():
            terminalreporter.write_line(f"{path.stem} stopped with this on its faulthandler:")
            terminalreporter.write_line(text[-12000:])
    _peak.stop.set()
    if not _peak.used:
        return
    gib = 2**30
    when = time.strftime("%H:%M:%S", time.localtime(_peak.at))
    terminalreporter.write_line(
        f"peak memory in use: {_peak.used / gib:.1f} of {_peak.total / gib:.1f} GiB at {when}; largest processes then:"
    )
    for rss, pid, command in _peak.top:
        terminalreporter.write_line(f"  {rss / gib:5.2f} GiB  pid {pid}  {command}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _under_ci() and not hasattr(config, "workerinput") and FAULTS_ENV in os.environ:
        shutil.rmtree(os.environ.pop(FAULTS_ENV), ignore_errors=True)
