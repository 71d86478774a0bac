"""One redaction for every URL eoshard stores or prints: an allow-list of harmless query parameters."""

from __future__ import annotations

import json
import logging

import pytest

from eoshard.catalog.credentials import redact_text, redact_url, unsigned_item_dict
from tests.conftest import shared_path

# One planted secret per signing scheme (each value unique, so a leak names its scheme).
SIGNED = {
    "azure-sas": "https://acc.blob.core.windows.net/c/B04.tif?sv=2021&se=2030&sp=r&sig=AZURESECRET",
    "aws-sigv4": "https://b.s3.amazonaws.com/k.tif?X-Amz-Credential=AKIA&X-Amz-Signature=AWSSECRET",
    "gcs-v4": "https://storage.googleapis.com/b/k.tif?X-Goog-Algorithm=GOOG4&X-Goog-Signature=GCSSECRET",
    "cloudfront": "https://d1.cloudfront.net/k.tif?Expires=1&Signature=CFSECRET&Key-Pair-Id=CFKEYPAIR",
    "password": "https://host.example/api?password=PWSECRET",
    "token": "https://host.example/api?token=TOKENSECRET&access_token=ATSECRET",
    "userinfo": "https://user:USERSECRET@host.example/stac",
    "unknown scheme": "https://host.example/k.tif?X-Vendor-Auth=VENDORSECRET",
}


@pytest.mark.parametrize("scheme", sorted(SIGNED))
def test_every_kind_of_secret_is_removed(scheme: str) -> None:
    redacted = redact_url(SIGNED[scheme])
    assert "SECRET" not in redacted and "CFKEYPAIR" not in redacted and "user" not in redacted, redacted
    assert redacted.startswith("https://") and "@" not in redacted


def test_harmless_parameters_and_plain_urls_stay() -> None:
    search = "https://earth-search.aws.element84.com/v1/search?collections=sentinel-2-l2a&bbox=1,2,3,4&limit=10"
    assert redact_url(search) == search  # as written: the kept parameters are not encoded again
    assert redact_url("https://b.s3.amazonaws.com/k.tif?versionId=3&X-Amz-Signature=x") == (
        "https://b.s3.amazonaws.com/k.tif?versionId=3"
    )
    assert redact_url("s3://bucket/prefix/") == "s3://bucket/prefix/"
    assert redact_url("/data/catalog.json") == "/data/catalog.json"  # a local path is no URL
    assert redact_url("/data/why?.tif") == "/data/why?.tif"  # a "?" in a file name is no query
    assert redact_url("./B04.tif?sig=SECRET&versionId=2") == "./B04.tif?versionId=2"  # a relative href's is
    assert redact_url("https://host:8080/p#frag") == "https://host:8080/p#frag"


def test_an_unparseable_url_is_not_shown_at_all() -> None:
    assert redact_url("https://user:pw@host:notaport/x?sig=1") == "REDACTED"


def test_item_dicts_lose_secrets_at_any_depth() -> None:
    item = {
        "type": "Feature",
        "id": "x",
        "assets": {
            "B04": {
                "href": SIGNED["gcs-v4"],
                "alternate": {"s3": {"href": SIGNED["aws-sigv4"]}, "cf": {"href": SIGNED["cloudfront"]}},
            }
        },
        "links": [{"rel": "self", "href": SIGNED["token"]}, {"rel": "root", "href": SIGNED["userinfo"]}],
    }
    saved = json.dumps(unsigned_item_dict(item))
    assert "SECRET" not in saved and "CFKEYPAIR" not in saved
    assert json.loads(saved)["assets"]["B04"]["href"] == "https://storage.googleapis.com/b/k.tif"


def test_free_text_loses_every_secret_and_keeps_harmless_parameters() -> None:
    """Tracebacks of requests and pystac-client quote the URL they failed on, or only its path and query."""
    text = "\n".join(
        [f"GET {url} failed" for url in SIGNED.values()]
        + [
            "Max retries exceeded with url: /v1/search?token=BARESECRET&x-amz-security-token=XAMZSECRET (Caused",
            "{'href': 'https://h/k.tif?collections=s2&X-Goog-Signature=QUOTEDSECRET'}",
            "postgresql://pg:DSNSECRET@127.0.0.1:5432/db?limit=10;Signature=SEMISECRET",
        ]
    )
    redacted = redact_text(text)
    assert "SECRET" not in redacted and "CFKEYPAIR" not in redacted, redacted
    assert "/v1/search?token=REDACTED&x-amz-security-token=REDACTED (Caused" in redacted
    assert "https://h/k.tif?collections=s2&X-Goog-Signature=REDACTED'}" in redacted
    assert "postgresql://127.0.0.1:5432/db?limit=10;Signature=REDACTED" in redacted
    plain = "File \"x.py\", line 3, in f\n    call(a=b, url='https://host/p?bbox=1,2,3,4')"
    assert redact_text(plain) == plain


def test_pystac_client_request_logs_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    import eoshard.catalog.stac_api  # noqa: F401  (installs the filter)

    with caplog.at_level(logging.DEBUG, logger="pystac_client.stac_api_io"):
        logging.getLogger("pystac_client.stac_api_io").debug(
            "POST %s Headers: %s", SIGNED["gcs-v4"], {"Authorization": "Bearer HEADERSECRET"}
        )
    assert caplog.messages and "SECRET" not in caplog.text, caplog.text
    assert "X-Goog-Signature=REDACTED" in caplog.text


def test_planetary_computer_preview_links_keep_which_item_they_draw() -> None:
    """The real items' rendered_preview and tilejson links name their item and bands in titiler's parameters:
    saved unchanged (they hold no credential), so a saved selection's links still point at their items."""
    data = json.loads(shared_path("stac", "planetarycomputer__sentinel-2-l2a.json").read_text())
    hrefs = [
        href
        for feature in data["features"]
        for href in [*(a["href"] for a in feature["assets"].values()), *(k["href"] for k in feature["links"])]
    ]
    assert sum("&item=" in h for h in hrefs) > 0 and sum("&assets=" in h for h in hrefs) > 0
    assert [redact_url(h) for h in hrefs] == hrefs
