"""Polite HTTP for arXiv's hosts: one request at a time, spaced, with timeouts and retries.

arXiv's terms ask for at most one request every few seconds over one connection; the API also
rate-limits with 429 + Retry-After and sometimes answers 5xx, stalls, or sends empty bodies.
Everything that talks to arXiv (the API and full-text downloads) goes through one ``PoliteHttp``.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from .config import ArxivConfig
from .errors import ArxivError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class Retryable(Exception):
    """A transient failure (429, 5xx, timeout, empty or unparseable answer): try again later.

    ``problem`` is short and safe to print on every retry (``HTTP 503``, ``no answer in 30 s``);
    ``detail`` (a server's own error text) is kept for the final error only.
    """

    def __init__(self, problem: str, retry_after: float | None = None, detail: str = "") -> None:
        super().__init__(f"{problem}: {detail}" if detail else problem)
        self.problem = problem
        self.retry_after = retry_after  # what the server asked for, in seconds


class RetriesExhausted(Exception):
    """Every attempt failed transiently; carries the last problem (with its detail)."""

    def __init__(self, problem: str, attempts: int) -> None:
        super().__init__(problem)
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    backoff: float
    max_retry_after: float

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff, but never shorter than the server's Retry-After (capped)."""
        wait = self.backoff * (2 ** (attempt - 1))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait

    def call(self, once: Callable[[], T], sleep: Callable[[float], None], what: str) -> T:
        """Run ``once`` until it stops raising ``Retryable``, waiting ``delay`` between attempts;
        the one retry loop shared by the arXiv and LLM clients.

        Every wait is announced as a warning (``arXiv: HTTP 503, retrying in 10 s (2/4)``), so a
        run that waits on a dead network says why at default verbosity, under cron too. The line
        holds only the short problem, never a server's error text, which may quote a secret.
        """
        attempt = 1
        while True:
            try:
                return once()
            except Retryable as exc:
                if attempt > self.retries:
                    raise RetriesExhausted(str(exc), attempt) from None
                wait = self.delay(attempt, exc.retry_after)
                log.warning("%s: %s, retrying in %s (%d/%d)", what, exc.problem, seconds(wait), attempt, self.retries)
                sleep(wait)
                attempt += 1


def seconds(value: float) -> str:
    """``10 s``, ``0.5 s``: a duration as a person reads it."""
    return f"{round(value, 1):g} s"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parse Retry-After: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def transport_problem(exc: httpx.TransportError, timeout: httpx.Timeout) -> str:
    """A failed connection or a silent server, said briefly: ``no answer in 30 s``."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection in {seconds(timeout.connect or 0)}"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in {seconds(timeout.read or 0)}"
    reason = str(exc).strip() or type(exc).__name__
    return f"cannot connect ({reason})" if isinstance(exc, httpx.ConnectError) else f"connection lost ({reason})"


class PoliteHttp:
    """Serialises and spaces requests; retries transient failures with backoff."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        interval: float,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        name: str = "arXiv",
    ) -> None:
        self.client = client
        self.name = name  # how retry lines name the service
        self.interval = interval
        self.policy = policy
        self.sleep = sleep
        self.clock = clock
        self.requests = 0
        self._lock = threading.Lock()
        self._last_done: float | None = None

    def _wait_turn(self) -> None:
        if self._last_done is not None:
            remaining = self.interval - (self.clock() - self._last_done)
            if remaining > 0:
                self.sleep(remaining)

    def get(self, url: str, parse: Callable[[httpx.Response], T], params: dict[str, str] | None = None) -> T:
        """GET ``url`` and hand the response to ``parse``; retry on 429/5xx/timeouts/``Retryable``."""

        def once() -> T:
            self._wait_turn()
            self.requests += 1
            try:
                response = self.client.get(url, params=params)
                if response.status_code in RETRYABLE_STATUS:
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
                    raise Retryable(f"HTTP {response.status_code}", retry_after)
                return parse(response)
            except httpx.TransportError as exc:
                raise Retryable(transport_problem(exc, self.client.timeout)) from None
            finally:
                self._last_done = self.clock()

        with self._lock:  # one request at a time, across threads
            try:
                return self.policy.call(once, self.sleep, self.name)
            except RetriesExhausted as exc:
                raise ArxivError(f"{exc} for {url}", url=url, attempts=exc.attempts) from None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, shared by every client: loading the certificate store
    costs about 40 ms, and a run opens a client for arXiv and one for the LLM."""
    return httpx.create_ssl_context(trust_env=False)


def arxiv_http(cfg: ArxivConfig, sleep: Callable[[float], None] = time.sleep) -> PoliteHttp:
    """The session every request to arXiv's hosts goes through (API and full texts), as configured."""
    client = httpx.Client(
        headers={"User-Agent": cfg.user_agent},
        timeout=cfg.timeout,
        follow_redirects=True,
        trust_env=False,
        verify=tls_context(),
    )
    policy = RetryPolicy(cfg.retries, cfg.backoff, cfg.max_retry_after)
    return PoliteHttp(client, interval=cfg.request_interval, policy=policy, sleep=sleep)
