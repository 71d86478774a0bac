"""Retries, backoff, Retry-After and the final error, proven with a fault-injecting proxy before the real API."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
import shapely

from eoshard.catalog.retries import RetryPolicy
from eoshard.catalog.stac_api import ApiError, ApiOptions, CredentialsError, search_api
from tests.conftest import shared_path
from tests.services.fault_proxy import FaultProxy

WORLD = shapely.box(-180, -90, 180, 90)
FAST = RetryPolicy(attempts=5, backoff=0.05, jitter=0.05, max_wait=1.0, budget=20.0, timeout=5.0)


@pytest.fixture(scope="module")
def loaded(pgstac: Any) -> int:
    features = json.loads((shared_path("stac") / "earth-search__sentinel-2-c1-l2a.json").read_text())["features"]
    pgstac.load(features)
    return len(features)


def _search(proxy: FaultProxy, retry: RetryPolicy = FAST, **options: Any) -> Any:
    return search_api(proxy.url, area=WORLD, start="2000-01-01", end="2030-12-31", collection="sentinel-2-c1-l2a",
                      options=ApiOptions(page_size=100, retry=retry, **options))  # fmt: skip


def test_429_and_5xx_are_retried_and_retry_after_is_honoured(fault_proxy: FaultProxy, loaded: int) -> None:
    fault_proxy.reset([(429, {"Retry-After": "1"}), (503, {}), (502, {})])
    result = _search(fault_proxy)
    assert len(result.items) == loaded
    times = [t for t, *_ in fault_proxy.log]
    # the landing page asked 4 times: 429, 503, 502, then answered
    assert [p for _, _, p, _ in fault_proxy.log[:4]] == ["/"] * 4
    assert times[1] - times[0] >= 1.0, "the client did not wait for Retry-After"
    assert times[2] - times[1] < 1.0


def test_a_stalled_request_times_out_and_is_retried(fault_proxy: FaultProxy, loaded: int) -> None:
    fault_proxy.reset([("stall", 3.0)])
    retry = RetryPolicy(attempts=3, backoff=0.05, jitter=0.0, max_wait=1.0, budget=20.0, timeout=1.0)
    start = time.monotonic()
    result = _search(fault_proxy, retry)
    assert len(result.items) == loaded
    assert 1.0 <= time.monotonic() - start < 3.0
    assert len(fault_proxy.log) >= 2 and fault_proxy.log[0][2] == fault_proxy.log[1][2] == "/"


def test_persistent_failure_ends_with_an_error_naming_the_endpoint_and_status(
    fault_proxy: FaultProxy, loaded: int
) -> None:
    fault_proxy.reset([(503, {})] * 50)
    with pytest.raises(
        ApiError,
        match=rf"STAC API at {fault_proxy.url} failed while reading its landing page: .*too many 503 error responses",
    ):
        _search(fault_proxy, RetryPolicy(attempts=3, backoff=0.01, jitter=0.0, budget=20.0, timeout=5.0))
    assert len(fault_proxy.log) == 4  # the first try and three retries


def test_the_time_budget_stops_retrying(fault_proxy: FaultProxy, loaded: int) -> None:
    fault_proxy.reset([(429, {"Retry-After": "30"})] * 5)
    start = time.monotonic()
    with pytest.raises(
        ApiError, match=r"retry budget of 5 s exhausted \(the server asks to retry after 30 s; last status 429\)"
    ):
        _search(fault_proxy, RetryPolicy(attempts=10, budget=5.0, timeout=5.0))
    assert time.monotonic() - start < 3.0, "it waited although Retry-After was past the budget"
    assert len(fault_proxy.log) == 1


@pytest.mark.parametrize(
    ("host", "message"),
    [("127.0.0.1:{port}", "Connection refused"), ("no-such-host.invalid", "Failed to resolve")],
)
def test_unreachable_api_is_a_clear_error_after_two_quick_retries(host: str, message: str) -> None:
    from tests.services.dask_cluster import free_port

    url = f"http://{host.format(port=free_port())}"
    start = time.monotonic()
    with pytest.raises(
        ApiError, match=rf"STAC API at {url} failed while reading its landing page: .*{message}.*check the URL"
    ):
        search_api(url, area=WORLD, start="2020-01-01", end="2020-01-02")  # the default policy: 6 retries, else
    # two retries, at once and after 1-1.5 s (urllib3's backoff with jitter); the six of a 503 take 31 s and more
    assert 0.9 < time.monotonic() - start < 5.0


def test_refused_credentials_never_show_the_secret(
    fault_proxy: FaultProxy, loaded: int, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-token-value"
    fault_proxy.reset([(401, {"WWW-Authenticate": "Bearer"})])
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CredentialsError, match="refused the credentials") as err:
        _search(fault_proxy, headers={"Authorization": f"Bearer {secret}"})
    assert fault_proxy.log[0][3]["Authorization"] == f"Bearer {secret}"  # it was sent
    assert secret not in str(err.value)
    assert secret not in caplog.text
    assert "Authorization" in caplog.text  # the request was logged, its credentials redacted
