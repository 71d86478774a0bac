"""GDAL's settings for the build's reads, as environment variables (a user's own values win).

They are set in the environment, not as GDAL config options, so that a value a user or a test sets later still
counts, and so that worker processes inherit them. Adding a variable to the environment while another thread reads
it can crash the process (glibc moves its array of variables), so a build's driver applies these before it starts
any thread (``eoshard.flows.cluster``); a worker that inherited them then adds none.
"""

from __future__ import annotations

import os

# Remote COGs: no directory listings, merged ranges, and a header read big enough for a COG's IFDs.
GDAL_REMOTE_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2TLS",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",
    "VSI_CACHE": "FALSE",
    # /vsicurl/'s cache of downloaded ranges (16 MB by default) holds the 16 KiB chunk two neighbouring blocks
    # share: a read finds it there, downloads the rest of its block, then takes the chunk. With a worker's 8 read
    # and 16 read-ahead threads (``direct.mosaic``) each downloading a block of 1-3 MB at once, 16 MB let the chunk
    # go in between, and GDAL downloaded it again with the next block whole (it doubles a read that follows its
    # last one): 6-11 % more bytes. 4 MiB a thread keeps it
    "CPL_VSIL_CURL_CACHE_SIZE": str(96 << 20),
    # a server that stops answering fails the read (which names the asset) instead of holding the build forever;
    # what object stores answer when busy (429, 500, 502-504) is asked again, up to 3 times, GDAL waiting 1 s and
    # longer each time
    "GDAL_HTTP_CONNECTTIMEOUT": "30",
    "GDAL_HTTP_LOW_SPEED_TIME": "60",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # decoded blocks live in eoshard's own caches (pipeline.direct.blocks): GDAL's block cache (5 % of RAM by
    # default) would hold them a second time
    "GDAL_CACHEMAX": "256",
}


def apply_gdal_defaults() -> None:
    """Set every default the environment does not have yet."""
    for key, value in GDAL_REMOTE_DEFAULTS.items():
        os.environ.setdefault(key, value)
