"""Errors of the pipeline portion: each says what was expected, what came, and what to do."""

from __future__ import annotations

import re
import shutil
from pathlib import Path


class PipelineError(Exception):
    """Base of every error raised by ``eoshard.pipeline``."""


class SettingError(PipelineError, ValueError):
    """An ``EOSHARD_*`` tuning variable of the environment holds no value of its kind (``pipeline.settings``)."""


class GridError(PipelineError, ValueError):
    """An area of interest or a resolution cannot make a valid target grid."""


class BandError(PipelineError, KeyError):
    """A requested band is missing from the products."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnsupportedProductError(PipelineError, ValueError):
    """Products of a mission the pipeline does not read (Landsat): selection works, cubes do not."""


class AssetReadError(PipelineError, OSError):
    """A product's asset could not be read (missing or corrupt file)."""


def shown_href(href: str) -> str:
    """``href`` as an error message shows it: without its query, where signed URLs carry their signature (errors
    travel into logs; the driver matches them to their asset by this same text)."""
    return href.partition("?")[0]


def without_query(text: str, href: str) -> str:
    """``text`` (a reader's message) without ``href``'s query wherever it quotes it (see ``shown_href``)."""
    query = href.partition("?")[2]
    return text.replace(f"?{query}", "") if query else text


# an object store's own words for credentials it refuses or lacks (S3: GDAL quotes its XML error, or its own note)
_CREDENTIALS = ("InvalidAccessKeyId", "does not exist in our records", "SignatureDoesNotMatch", "AccessDenied",
                "AWS_SECRET_ACCESS_KEY")  # fmt: skip


def refused(message: str) -> bool:
    """Whether a reader's message says the server refused access (HTTP 401 or 403, as GDAL words it, or an object
    store's refused or missing credentials)."""
    return (
        "response code: 401" in message
        or "response code: 403" in message
        or any(said in message for said in _CREDENTIALS)
    )


class NoAnswerError(PipelineError, OSError):
    """A read that another thread made of the same file or block failed while this one waited for it, because the
    server did not answer (the message is that read's): the waiting thread does not wait out the same timeout."""


def read_reason(err: BaseException) -> str:
    """A reader's error as a message says it: ``Type: message (the deepest cause's message)`` (GDAL's own reason
    for a failed read is the deepest of rasterio's chained errors)."""
    if isinstance(err, NoAnswerError):
        return str(err)
    cause, seen = err, {id(err)}
    while (nxt := cause.__cause__ or cause.__context__) is not None and id(nxt) not in seen:
        cause = nxt
        seen.add(id(cause))
    deepest = f" ({cause})" if cause is not err and str(cause) != str(err) else ""
    return f"{type(err).__name__}: {err}{deepest}"


NO_ANSWER = "(asked again: no answer"  # how ``direct.answers.http_answer`` says its probe got no answer at all
FAILING = re.compile(r"HTTP response code: (5\d\d)")  # GDAL's words for a server's error answer, after its retries


def unreachable(message: str) -> bool:
    """Whether a reader's message says the server could not be reached or failed (GDAL quotes libcurl's errors:
    no connection, an unknown host, a timeout; or an HTTP 5xx answer after GDAL's retries)."""
    return "CURL error" in message or NO_ANSWER in message or FAILING.search(message) is not None


BUILD_AGAIN = "run the build again"  # what to do once an unreadable file is dealt with, unless a caller says else
CUT_SHORT = re.compile(r"got \d+ bytes, expected \d+")  # how GDAL (libtiff) says a read returned fewer bytes
READ_TWICE = "(read twice)"  # a remote read that failed for a passing reason, asked for again, and failed again
GONE_FOR_NOW = "does not exist in the file system"  # GDAL's words for a file it remembers missing, with no status


def worth_reading_again(message: str) -> bool:
    """Whether a remote read's error may pass when the same read is made again through a new handle: a transfer cut
    short (a connection dropped midway), or a file GDAL remembers as missing (an open failed while its server did
    not answer) without the server's own status."""
    return CUT_SHORT.search(message) is not None or (GONE_FOR_NOW in message and "response code" not in message)


CHANGED = "the file changed since the build was planned"  # a source file's size is not the one planning found


def changed_since_planning(message: str) -> bool:
    """Whether a reader's message says a source file was replaced while the build read it (its size changed)."""
    return CHANGED in message


NO_RANGES = "Range downloading not supported"  # GDAL's words for a server that answers a range with the whole file


def serves_no_ranges(message: str) -> bool:
    """Whether a reader's message says the server sends whole files where GDAL asks for byte ranges."""
    return NO_RANGES in message


MISSING = re.compile(r"No such file or directory|response code: 404|does not exist in the file system")


def missing_file(message: str) -> bool:
    """Whether a reader's message says the file is not there: no such local file, an HTTP 404, a key an object store
    does not hold (GDAL: "does not exist in the file system"), and not that its server failed or refused."""
    return MISSING.search(message) is not None and not (unreachable(message) or refused(message))


LEAVE_OUT = "leave the product out (its id under catalog.exclude in the config)"


def blames_the_file(message: str) -> bool:
    """Whether a reader's message says a file is damaged (cut short, undecodable, missing), not that its server failed,
    refused, serves no ranges, or that it was replaced during the build."""
    return not (
        unreachable(message) or refused(message) or serves_no_ranges(message) or changed_since_planning(message)
    )


def read_remedy(message: str, then: str = BUILD_AGAIN, leave_out: str | None = LEAVE_OUT) -> str:
    """What to do about an asset that could not be read, from the reader's message, ending with ``then``: a server
    that refused access (401, 403) needs signed items or credentials, one that did not answer or failed needs to be
    reached, one that serves no byte ranges needs replacing, not a repaired file (leaving the product out would
    lose it for nothing); a file that is not there needs putting back, a damaged one repairing, or the product
    left out (``leave_out``: how; None where that is no remedy, as in ``verify``)."""
    alternative = f", or {leave_out}," if leave_out else ","
    if refused(message):
        return (
            "the server refused access: sign the items (catalog.modifier, e.g. planetary_computer:sign_inplace; "
            "signed URLs expire, and a rerun signs them again) or give the credentials the store needs (AWS_* for "
            f"s3://), then {then}"
        )
    if serves_no_ranges(message):
        return (
            "the server sends whole files where a reader asks for byte ranges (HTTP Range requests), and COGs are "
            "read by ranges; the file may be fine: serve the files with a server that answers ranges (nginx, "
            "Apache, an object store; Python's `http.server` does not) or point the items at local copies, then "
            f"{then}"
        )
    if (failing := FAILING.search(message)) is not None:
        return (
            f"the server failed (HTTP {failing.group(1)}: busy, overloaded or broken), also when GDAL asked again, "
            "which says nothing about the file: wait until it serves again, or let GDAL ask more often and wait "
            f"longer (GDAL_HTTP_MAX_RETRY, GDAL_HTTP_RETRY_DELAY), then {then}"
        )
    if unreachable(message):
        return (
            "the server could not be reached or did not answer, which says nothing about the file: check the URL, "
            f"that the server runs and that this machine reaches it (network, proxy, firewall), then {then}"
        )
    if missing_file(message):
        return (
            "the file is not there (deleted or moved since its item was written: archives withdraw products, and "
            f"process them again under new names): put it back{alternative} then {then}"
        )
    if READ_TWICE in message and CUT_SHORT.search(message) and "response code" not in message:
        return (
            "the server sent fewer bytes than asked for, twice (connections dropped midway, or a file cut short "
            f"on the server): {then}; if it fails the same way again, repair the file"
            + (f" or {leave_out}" if leave_out else "")
        )
    return f"repair the file{alternative} then {then}"


class ShardWriteError(PipelineError, OSError):
    """A shard could not be written (full disk, permissions)."""


def readable_bytes(n: float) -> str:
    """Bytes in the unit people read them in: ``1.4 GB``, ``310 MB``, ``12 kB`` (decimal, as ``df -H``)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{n:.0f} bytes"


def full_disk_note(path: Path, needed: int) -> str:
    """`` (its disk has N free, less than this write needs, about M: it is full)`` when that is so, else nothing:
    a full disk does not always say so (LMDB reports a write it cut short as an input/output error)."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return ""
    if free >= needed:
        return ""
    left, asked = readable_bytes(free), readable_bytes(needed)
    return f" ({path}'s disk has {left} free, less than this write needs, about {asked}: it is full)"


class DatasetError(PipelineError, FileNotFoundError):
    """A folder is not a finished eoshard dataset (no ``dataset.json``, or files missing)."""


class ManifestError(DatasetError, ValueError):
    """A ``dataset.json`` that is broken, or of a format newer than this eoshard reads."""
