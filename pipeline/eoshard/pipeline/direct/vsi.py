"""GDAL's virtual file systems, where rasterio has no call for what a build needs: a file's size as GDAL sees it,
and making GDAL forget what it remembers of remote files. The functions are GDAL's own, from the library rasterio
loaded (``ctypes``)."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import rasterio
import rasterio._base

_PREFIXES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/"}
_SEEK_END = 2


@functools.cache
def _gdal() -> ctypes.CDLL | None:
    """The library rasterio loaded, GDAL's functions among its symbols (None where it cannot be opened)."""
    try:
        return ctypes.CDLL(rasterio._base.__file__)
    except OSError:
        return None


def _gdal_function(name: str, restype: Any = None, argtypes: list[Any] | None = None) -> Any | None:
    """GDAL's own function ``name``, from the library rasterio loaded (None where it is not found). A new function
    object each call: its ``restype`` and ``argtypes`` are its own."""
    library = _gdal()
    if library is None:
        return None
    try:
        function = library[name]
    except AttributeError:
        return None
    function.restype = restype
    if argtypes is not None:
        function.argtypes = argtypes
    return function


def gdal_path(href: str) -> str:
    """The path GDAL opens for ``href``, as rasterio makes it: ``/vsicurl/`` for http(s), ``/vsis3/`` and the like
    for object stores, the path of a ``file://`` URL."""
    scheme, _, rest = href.partition("://")
    if scheme in _PREFIXES:
        return f"{_PREFIXES[scheme]}{href if _PREFIXES[scheme] == '/vsicurl/' else rest}"
    return rest if scheme == "file" else href


def file_size(href: str) -> int | None:
    """The size in bytes of the file at ``href`` as GDAL sees it (None when it cannot tell). For a remote file that
    this process has opened, GDAL answers from what it learnt then, without a request."""
    open_ = _gdal_function("VSIFOpenL", ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p])
    seek = _gdal_function("VSIFSeekL", ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int])
    tell = _gdal_function("VSIFTellL", ctypes.c_uint64, [ctypes.c_void_p])
    close = _gdal_function("VSIFCloseL", ctypes.c_int, [ctypes.c_void_p])
    if open_ is None or seek is None or tell is None or close is None:
        return None
    handle = open_(gdal_path(href).encode(), b"rb")
    if not handle:
        return None
    try:
        return int(tell(handle)) if seek(handle, 0, _SEEK_END) == 0 else None
    finally:
        close(handle)


def forget_remote_files() -> None:
    """Make GDAL forget what it remembers of remote files in this process (``VSICurlClearCache``): their sizes,
    that one did not exist, ranges already downloaded. A process that outlives a build (a cluster's worker, a
    notebook's kernel) would else answer the next build from the last one's: a file replaced since with its old
    pixels, one missing while its server was down as still missing."""
    clear = _gdal_function("VSICurlClearCache")
    if clear is not None:
        clear()


def forget_remote_file(href: str) -> None:
    """Make GDAL forget what it downloaded of ``href`` (``VSICurlPartialClearCache``): a transfer cut short stays
    in its cache, and a new handle would read the same short range again."""
    clear = _gdal_function("VSICurlPartialClearCache", None, [ctypes.c_char_p])
    if clear is not None and href.partition("://")[0] in _PREFIXES:
        clear(gdal_path(href).encode())
