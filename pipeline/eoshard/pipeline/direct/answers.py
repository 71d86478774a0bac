"""What a remote store answers now for a file whose read failed: GDAL reports a refused or missing range of an open
file only as a short read ("got 0 bytes"), so the reader asks for one byte again to say why (401/403: expired
signatures, see ``eoshard.pipeline.errors.refused``)."""

from __future__ import annotations

import urllib.error
import urllib.request

from eoshard.pipeline.errors import NO_ANSWER

PROBE_TIMEOUT_S = 10
# GDAL's messages that already say why: an HTTP status, or a transfer that failed (timeout, refused connection)
SAID = ("response code", "CURL error")


def http_answer(href: str, message: str) -> str:
    """``" (asked again: HTTP response code: 403)"`` for an http(s) ``href`` whose read failed with ``message``,
    when the message does not say why and the server now answers with an error status (or ``no answer: ...``
    when it does not answer at all); else ``""``."""
    if not href.startswith(("http://", "https://")) or any(said in message for said in SAID):
        return ""
    request = urllib.request.Request(href, headers={"Range": "bytes=0-0"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
            return ""
    except urllib.error.HTTPError as err:
        return f" (asked again: HTTP response code: {err.code})"
    except OSError as err:  # refused, reset or timed out: the server is gone, not the file damaged
        return f" {NO_ANSWER}: {getattr(err, 'reason', err)})"
    except ValueError:
        return ""
