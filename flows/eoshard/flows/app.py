"""The ``eoshard`` Typer app, its consoles and the error handling every command shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def user_errors() -> Iterator[None]:
    """Print eoshard's errors as one readable message and exit non-zero, without a traceback.

    Messages quote names from outside (file names, URLs): they are escaped, never read as Rich markup, and a URL's
    signature or password is never printed (``redact_text``)."""
    try:
        yield
    except ConfigError as err:
        errors.print(f"[bold red]error:[/] {escape(redact_text(str(err)))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (CatalogError, PipelineError, FlowsError) as err:
        errors.print(f"[bold red]error:[/] {escape(redact_text(str(err)))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
