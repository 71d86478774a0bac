"""The ``eoshard`` Typer app, its consoles and the error handling every command shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from eoshard.catalog import CatalogError
from eoshard.catalog.credentials import redact_text
from eoshard.flows.config import ConfigError
from eoshard.flows.errors import FlowsError
from eoshard.pipeline.errors import PipelineError

app = typer.Typer(
    name="eoshard",
    help="Turn Sentinel-1/2 archives into deep-learning-ready shards (Zarr v3, LMDB + safetensors).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


def warning_console() -> Console:
    """Where a warning goes: stderr, or stdout while a spinner or progress bar runs there and both are the terminal
    (rich writes a line from another console straight to the terminal, glued to the live display's line)."""
    live = getattr(console, "_live_stack", None)  # rich's live displays on this console (absent in other versions)
    return console if live and console.is_terminal and errors.is_terminal else errors


def say(text: str, to: Console = console) -> None:
    """``text`` as it is, not read as markup (``[...]`` in a path), and whole: rich folds no path or command in it
    across lines, so it can be copied (the terminal wraps it)."""
    to.print(text, markup=False, soft_wrap=True)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        console.print(f"eoshard {version('eoshard')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print the version and exit (a cluster's workers need the driver's version)",
        ),
    ] = False,
) -> None:
    pass


RESUME_NOTE = "the shards committed so far are kept: run the same command again to resume"


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd stopping a service, Kubernetes deleting a pod), stopped as Ctrl-C stops a command: its locks
    released, what it kept told; exit 143."""


def terminate(_signum: int, _frame: object) -> None:
    """The ``eoshard`` script's SIGTERM handler."""
    raise Terminated


@contextmanager
def user_errors(interrupted: str | None = None) -> Iterator[None]:
    """Print eoshard's errors as one readable message and exit non-zero, without a traceback; so are the file
    system's (a read-only folder, a full disk). ``interrupted``: what to tell on Ctrl-C (exit 130) or SIGTERM
    (exit 143).

    Messages quote names from outside (file names, URLs): they are escaped, never read as Rich markup, and a URL's
    signature or password is never printed (``redact_text``)."""
    try:
        yield
    except ConfigError as err:
        _error(str(err))
        raise typer.Exit(2) from None
    except (CatalogError, PipelineError, FlowsError) as err:
        _error(str(err))
        raise typer.Exit(1) from None
    except OSError as err:
        if err.filename is None:  # not about a path (a network error has its own messages)
            raise
        _error(
            f"{err.filename}: {err.strerror or err}: check that the path exists, that this user may read and "
            "write it, and that its disk has room"
        )
        raise typer.Exit(1) from None
    except KeyboardInterrupt as err:
        if interrupted is None:
            raise
        what, code = ("terminated", 143) if isinstance(err, Terminated) else ("interrupted", 130)
        errors.print(f"[bold yellow]{what}:[/] {interrupted}", highlight=False, soft_wrap=True)
        raise typer.Exit(code) from None


def _error(message: str) -> None:
    errors.print(f"[bold red]error:[/] {escape(redact_text(message))}", highlight=False, soft_wrap=True)
