"""Where a figure goes: the path a user gave for ``--plot`` or ``--out``, checked before the work that draws it."""

from __future__ import annotations

from pathlib import Path

from eoshard.flows.config import ConfigError


def figure_path(path: Path, option: str) -> Path:
    """``path``, with ``.png`` added when it has no suffix; a suffix matplotlib cannot write is a ``ConfigError``
    that names the ones it can."""
    from matplotlib.backend_bases import FigureCanvasBase

    if not path.suffix:
        return path.with_suffix(".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise ConfigError(
            f"{option} {path}: matplotlib cannot write a {path.suffix} file; give a path ending in "
            f"{', '.join('.' + f for f in ('png', 'pdf', 'svg', 'jpg'))} or another of {', '.join(sorted(formats))}"
        )
    return path
