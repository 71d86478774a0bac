"""The ``eoshard`` command line: the app plus every command module (one import line each)."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import warnings

from rich.markup import escape

import eoshard.flows.commands.jobs
import eoshard.flows.commands.refresh
import eoshard.flows.commands.submit  # noqa: F401
from eoshard.catalog.credentials import redact_text
from eoshard.flows.app import app, terminate, warning_console
from eoshard.flows.commands import build, convert, demo, inspect, predict, select, verify  # noqa: F401  (each registers its commands)

__all__ = ["app", "main"]


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    line = f"[yellow]warning:[/] {escape(redact_text(str(message)))}"
    warning_console().print(line, highlight=False, soft_wrap=True)


class _WarningLines(logging.Handler):
    """eoshard's logged warnings (a build signing its products again, a stale lock taken over) as warnings are."""

    def emit(self, record: logging.LogRecord) -> None:
        _show_warning(record.getMessage(), UserWarning)


def main() -> None:
    """Entry point of the ``eoshard`` script: warnings as one line each, errors without a traceback."""
    warnings.showwarning = _show_warning
    signal.signal(signal.SIGTERM, terminate)
    logging.getLogger("eoshard").addHandler(_WarningLines(logging.WARNING))
    try:
        sys.exit(app())
    finally:
        # Every file a command writes is closed by now. The interpreter's collections at exit would walk every
        # object the command made (0.7-0.9 s after a build of a sixteenth tile) to free memory the process is
        # about to give back: frozen objects are left out of them.
        gc.freeze()
