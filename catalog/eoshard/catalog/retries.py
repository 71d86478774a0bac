"""HTTP retries for catalog APIs: exponential backoff with jitter on 429/5xx and timeouts, Retry-After honoured,
a total time budget per request after which the request fails, and few tries where nothing listens."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Self

from urllib3.exceptions import MaxRetryError, NameResolutionError
from urllib3.util.retry import Retry

from eoshard.catalog.errors import CatalogError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``attempts`` retries at most, waits ``backoff * 2**n`` (plus up to ``jitter`` s, capped at
    ``max_wait``), a server's Retry-After in place of the backoff, and ``budget`` seconds in all per request.
    A refused connection or an unknown host is retried ``unreachable_attempts`` times at most: a wrong URL fails
    in about a second, while a server restarting still gets its chance."""

    attempts: int = 6
    backoff: float = 0.5
    jitter: float = 0.5
    max_wait: float = 30.0
    budget: float = 120.0
    timeout: float = 30.0
    unreachable_attempts: int = 2

    def urllib3_retry(self) -> BudgetRetry:
        return BudgetRetry(
            total=self.attempts,
            connect=self.attempts,
            read=self.attempts,
            status=self.attempts,
            other=0,
            backoff_factor=self.backoff,
            backoff_jitter=self.jitter,
            backoff_max=self.max_wait,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # searches are POSTs, and idempotent
            respect_retry_after_header=True,
            raise_on_status=True,  # out of retries: urllib3 names the last status ("too many 503 error responses")
            budget=self.budget,
            unreachable=self.unreachable_attempts,
        )


class RetryBudgetError(CatalogError, TimeoutError):
    """The retry budget is spent (or a Retry-After asks to wait past it)."""


class BudgetRetry(Retry):
    """urllib3's Retry with a wall-clock budget counted from a request's first failure."""

    def __init__(
        self,
        *args: Any,
        budget: float = 120.0,
        started: float | None = None,
        unreachable: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.started = started
        self.unreachable = unreachable

    def new(self, **kw: Any) -> Self:
        kw.setdefault("budget", self.budget)
        kw.setdefault("started", self.started)
        kw.setdefault("unreachable", self.unreachable)
        return super().new(**kw)

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> Self:
        started = self.started if self.started is not None else time.monotonic()
        response = kwargs.get("response") if "response" in kwargs else (args[0] if args else None)
        retry_after = self.get_retry_after(response) if response is not None else None
        elapsed = time.monotonic() - started
        status = getattr(response, "status", None)
        if elapsed + (retry_after or 0.0) > self.budget:
            why = (
                f"the server asks to retry after {retry_after:g} s"
                if retry_after and elapsed + retry_after > self.budget
                else f"{elapsed:.1f} s spent"
            )
            last = f"last status {status}" if status else f"last error {kwargs.get('error') or 'none'}"
            raise MaxRetryError(
                kwargs.get("_pool"),  # type: ignore[arg-type]
                url or "",
                RetryBudgetError(f"retry budget of {self.budget:g} s exhausted ({why}; {last})"),
            )
        error = kwargs.get("error")
        unreachable = _unreachable(error)
        if unreachable and self.unreachable <= 0:
            raise MaxRetryError(kwargs.get("_pool"), url or "", error)  # type: ignore[arg-type]
        new = super().increment(method, url, *args, **kwargs)
        new.started = started
        if unreachable:
            new.unreachable = self.unreachable - 1
        return new


def _unreachable(error: BaseException | None) -> bool:
    """Nothing listens at the address, or the host name is unknown: no use in a long backoff."""
    seen, depth = error, 0
    while seen is not None and depth < 8:
        if isinstance(seen, ConnectionRefusedError | NameResolutionError):
            return True
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return False
