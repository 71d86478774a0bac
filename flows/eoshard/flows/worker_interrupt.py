"""Preloaded by the LocalCluster's workers: they leave Ctrl-C to the driver.

A terminal sends SIGINT to every process of its foreground group, the build's workers too. The driver stops the
build, tells how to resume and closes the cluster; a worker that took the signal itself would print a
``KeyboardInterrupt`` traceback of its own. Imported in the worker process's main thread, before its threads run.
"""

from __future__ import annotations

import signal
import threading

if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
