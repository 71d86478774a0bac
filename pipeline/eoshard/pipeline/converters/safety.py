"""What a converter accepts from a folder it did not make: files that stay inside it, keys that are safe and unique.

A dataset folder may be hostile or just odd: a link that leads out of it, a name that is not UTF-8 or holds a
control character, two patches whose keys come out equal. Each is refused before anything is written, with the
path that caused it. Names are never joined into paths outside the root: they come from listing the root, so
they hold no ``/``, and ``..`` or an absolute path cannot arise from them; links are the only way out.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from eoshard.pipeline.converters.errors import ConversionError, DatasetLayoutError

MAX_KEY_BYTES = 511  # LMDB's default maximum key size


def listed_files(root: Path) -> list[Path]:
    """Every file under ``root`` (sorted), after checking that no link leads out of it or to a folder."""
    real_root = root.resolve()
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        for name in sorted(dirs + names):
            path = Path(folder, name)
            if path.is_symlink():
                _check_link(path, real_root)
        files.extend(Path(folder, name) for name in names)
    return sorted(files)


def _check_link(path: Path, real_root: Path) -> None:
    target = Path(os.path.realpath(path))
    if not target.exists():
        raise DatasetLayoutError(
            f"{shown(path)} is a broken link (to {path.readlink()}): remove it or restore its target"
        )
    if target.is_dir():
        raise DatasetLayoutError(
            f"{shown(path)} is a link to the folder {target}; links to folders are not followed (they could list "
            "patches twice or leave the dataset): give the linked folder itself, or copy it in"
        )
    if not target.is_relative_to(real_root):
        raise DatasetLayoutError(
            f"{shown(path)} links to {shown(target)}, outside the dataset folder {real_root}; a converter reads only files "
            "inside the folder it is given: copy the file in, or give the folder that holds it"
        )


def shown(path: Path) -> str:
    """A path as a message shows it: as it is when printable, else quoted with escapes (never a raw newline)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def check_key(key: str, patch: Path) -> str:
    """``key`` if it is a usable LMDB key: UTF-8, no control characters, at most 511 bytes."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as err:
        raise DatasetLayoutError(
            f"{shown(patch)} gives the key {key!r:.300}, which is not valid UTF-8 (the name's bytes are in "
            "another encoding): rename the file or folder"
        ) from err
    odd = sorted({c for c in key if unicodedata.category(c) in ("Cc", "Cs")})
    if odd:
        raise DatasetLayoutError(
            f"{shown(patch)} gives the key {key!r:.300}, which holds the control character(s) "
            f"{', '.join(repr(c) for c in odd)}: rename the file or folder"
        )
    if not key or size > MAX_KEY_BYTES:
        raise DatasetLayoutError(
            f"{shown(patch)} gives a key of {size} bytes; an LMDB key holds 1 to {MAX_KEY_BYTES}: "
            "shorten the names of the patch and its folders"
        )
    return key


def unique_keys(pairs: Iterable[tuple[str, Path]]) -> None:
    """Refuse two patches with one key: the second would be lost (LMDB) or shadow the first (Zarr)."""
    seen: dict[str, Path] = {}
    for key, patch in pairs:
        if key in seen:
            raise DatasetLayoutError(
                f"{shown(seen[key])} and {shown(patch)} both give the key {key!r}: one would be lost; rename one of them "
                "(keys join the names of a patch and its folders with '_')"
            )
        seen[key] = patch


def check_target(target: Path, roots: Sequence[Path]) -> None:
    """The output must be a new or empty folder, apart from every input (a Zarr write empties its target)."""
    real = target.resolve()
    for root in roots:
        real_root = root.resolve()
        if real.is_relative_to(real_root) or real_root.is_relative_to(real):
            raise ConversionError(
                f"the target {target} and the input {root} overlap: writing there could replace the input; "
                "give a target folder outside the inputs"
            )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConversionError(f"the target {target} exists and is not an empty folder: give a new or empty folder")
