"""Fetch stage: one HTTP GET of a feed, politely and robustly.

- conditional requests (If-None-Match / If-Modified-Since; 304 is `not_modified`);
- retries of connect errors, timeouts, 429 and 5xx with exponential backoff and jitter,
  honouring Retry-After (seconds or HTTP-date), within a time budget per poll
  (tenacity); any other 4xx fails at once, and so does a host name that does not resolve;
- at most N requests in flight per host and a minimum gap between them (`HostLimiter`);
- redirects followed hop by hop, each hop counted against the host limits; a hop the URL
  policy refuses fails the poll with "redirected to <target>: <why>";
- a URL httpx cannot parse is a failed poll (FetchError), never a traceback;
- a body limit that holds after gzip/deflate decoding (`read_limited`: no bomb reaches memory).

The URL policy is not checked here but in the transport of every client from
`make_client` (`harvester._http.GuardedTransport`), whoever sends the request.

The httpx transport is the testing seam: `make_client(settings, transport=...)` (still
behind the guard); the policy's `sleep` and `clock` make backoff testable without waiting.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import tenacity

from harvester._http import (
    URL_ERRORS,
    GuardedTransport,
    HostLimiter,
    UnresolvedHostError,
    UrlCheck,
    UrlPolicy,
    UrlRefusedError,
    out_of_time,
    parse_url,
    read_limited,
    time_limit,
)
from harvester.config import HttpSettings
from harvester.errors import FetchError
from harvester.logs import get_logger
from harvester.redact import redact

MAX_REDIRECTS = 10
ACCEPT_ENCODING = "gzip, deflate"  # the encodings `_Inflater` can bound
log = get_logger("harvester.fetch")


@dataclass(frozen=True)
class FetchPolicy:
    """How a client behaves towards servers; one per client, shared by its threads."""

    retries: int = 3
    max_poll_time: float = 180.0  # cap on one poll: every attempt, wait and body read
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_jitter: float = 1.0
    limiter: HostLimiter = field(default_factory=HostLimiter)
    check_url: UrlCheck | None = None  # what the client's transport checks; None refuses all
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def from_settings(cls, settings: HttpSettings, **overrides: Any) -> FetchPolicy:
        """The settings' policy; `check_url` is `[http]`'s URL policy unless overridden."""
        values: dict[str, Any] = {
            "retries": settings.retries,
            "max_poll_time": settings.max_poll_time,
            "limiter": HostLimiter(settings.per_host, settings.min_gap),
            "check_url": UrlPolicy.from_settings(settings),
        }
        return cls(**(values | overrides))


DEFAULT_POLICY = FetchPolicy()


class FeedClient(httpx.Client):
    """An httpx client that carries the fetch policy its feeds are polled with.

    Every request goes through a `GuardedTransport` for the policy's `check_url`; without
    one (the default policy has none), every request is refused. `transport` is wrapped,
    never used instead; mounts and proxies, which would route around it, are refused.
    `ssl_context` replaces the default certificate checks (tests with their own CA).
    """

    def __init__(
        self,
        *args: Any,
        policy: FetchPolicy = DEFAULT_POLICY,
        transport: httpx.BaseTransport | None = None,
        limits: httpx.Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        for bypass in ("mounts", "proxy"):
            if kwargs.get(bypass) is not None:
                raise TypeError(
                    f"a FeedClient sends everything through its URL policy: no {bypass}"
                )
        guard = GuardedTransport(
            policy.check_url, transport, limits=limits, ssl_context=ssl_context
        )
        super().__init__(*args, transport=guard, **kwargs)
        self.policy = policy


@dataclass(frozen=True)
class FetchResult:
    status: int
    body: bytes | None  # None for 304 Not Modified
    final_url: str
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 1


def make_client(
    settings: HttpSettings,
    transport: httpx.BaseTransport | None = None,
    *,
    policy: FetchPolicy | None = None,
) -> FeedClient:
    """The one client a sync shares across feeds (connection reuse, same policy everywhere)."""
    policy = policy or FetchPolicy.from_settings(settings)
    return FeedClient(
        headers={
            "User-Agent": settings.user_agent,
            "Accept": "text/calendar, */*;q=0.5",
            "Accept-Encoding": ACCEPT_ENCODING,
        },
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=True,  # for other users of the client; `fetch` follows hop by hop
        max_redirects=MAX_REDIRECTS,
        transport=transport,
        limits=httpx.Limits(max_connections=max(settings.concurrency, settings.per_host) + 2),
        policy=policy,
    )


def fetch(
    client: httpx.Client,
    url: str,
    max_bytes: int,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    """GET `url`; raise FetchError for anything that is not a calendar body within the limit.

    The policy (retries, limits, clocks) is the client's (see `make_client`), else the
    default; the URL check is the client's transport's. A URL httpx cannot parse fails at
    once (not retried).
    """
    policy = getattr(client, "policy", None) or DEFAULT_POLICY
    parse_url(url)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = policy.clock() + policy.max_poll_time

    def stop(state: tenacity.RetryCallState) -> bool:
        """After the last retry, or when the next wait would end past the poll's time limit."""
        if state.attempt_number > policy.retries:
            return True
        return policy.clock() + state.upcoming_sleep >= deadline

    retrying = tenacity.Retrying(
        stop=stop,
        wait=lambda state: _wait(policy, state),
        retry=tenacity.retry_if_exception(_worth_retrying),
        sleep=policy.sleep,
        before_sleep=lambda state: _log_retry(url, state),
        reraise=True,
    )
    with time_limit(policy.max_poll_time):  # every wait of every attempt, on the wall clock
        for attempt in retrying:
            with attempt:
                result = _attempt(client, url, max_bytes, headers, policy, deadline)
                return dataclasses.replace(result, attempts=attempt.retry_state.attempt_number)
    raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover


def _worth_retrying(exc: BaseException) -> bool:
    """A retryable failure, unless the host name did not resolve: a name that does not
    resolve now will not in the next seconds either (offline, or no such name)."""
    return getattr(exc, "retryable", False) and not isinstance(exc, UnresolvedHostError)


def _wait(p: FetchPolicy, state: tenacity.RetryCallState) -> float:
    """Retry-After when the server sent one, else exponential backoff with jitter."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, FetchError) and exc.retry_after is not None:
        return exc.retry_after
    backoff = min(p.backoff_initial * 2.0 ** (state.attempt_number - 1), p.backoff_max)
    return backoff + random.uniform(0, p.backoff_jitter)


def _log_retry(url: str, state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info(
        "fetch.retry",
        url=redact(url),
        attempt=state.attempt_number,
        wait_s=round(wait, 2),
        reason=getattr(exc, "reason", str(exc)),
    )


def _attempt(
    client: httpx.Client,
    url: str,
    max_bytes: int,
    headers: dict[str, str],
    policy: FetchPolicy,
    deadline: float,
) -> FetchResult:
    """One try: the request and its redirect hops, each hop host-limited (and checked by
    the client's transport)."""
    request = client.build_request("GET", url, headers=headers)
    for hop in range(MAX_REDIRECTS + 1):
        _check_deadline(url, policy, deadline)
        with policy.limiter.slot(_host_key(request.url)):
            response = _send(client, request, url, hop, policy.max_poll_time)
            try:
                if response.next_request is not None:
                    request = response.next_request
                    continue
                if response.status_code == 304:
                    return _result(response, None)
                _check_response(url, response, policy)
                in_time = partial(_check_deadline, url, policy, deadline)
                return _result(response, read_limited(url, response, max_bytes, in_time))
            except httpx.TimeoutException as exc:
                _check_deadline(url, policy, deadline)
                raise FetchError(
                    url, f"timed out reading the body ({type(exc).__name__})", retryable=True
                ) from None
            except httpx.HTTPError as exc:
                raise _transport_error(url, exc) from None
            finally:
                response.close()
    raise FetchError(url, f"more than {MAX_REDIRECTS} redirects")


def _send(
    client: httpx.Client, request: httpx.Request, url: str, hop: int, limit: float
) -> httpx.Response:
    try:
        return client.send(request, stream=True, follow_redirects=False)
    except UrlRefusedError as exc:
        raise _refused(url, exc, hop) from None
    except URL_ERRORS as exc:  # a redirect's Location that httpx cannot parse
        raise FetchError(url, f"not a valid URL ({type(exc).__name__}: {exc})") from None
    except httpx.TimeoutException as exc:
        if out_of_time():
            raise _out_of_time(url, limit) from None
        raise FetchError(url, f"timed out ({type(exc).__name__})", retryable=True) from None
    except httpx.HTTPError as exc:
        raise _transport_error(url, exc) from None


def _refused(url: str, exc: UrlRefusedError, hop: int) -> FetchError:
    """The policy's refusal of one hop; a refused redirect names the feed and where it led."""
    error = exc.error
    if hop == 0:
        return error
    return type(error)(
        url, f"redirected to {exc.url}: {error.reason}", error.status, retryable=error.retryable
    )


def _transport_error(url: str, exc: httpx.HTTPError) -> FetchError:
    retryable = isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError)
    return FetchError(url, f"{type(exc).__name__}: {exc}", retryable=retryable)


def _host_key(url: httpx.URL) -> str:
    return f"{url.host}:{url.port}" if url.port else url.host


def _check_deadline(url: str, policy: FetchPolicy, deadline: float) -> None:
    if policy.clock() > deadline or out_of_time():
        raise _out_of_time(url, policy.max_poll_time)


def _out_of_time(url: str, limit: float) -> FetchError:
    return FetchError(url, f"gave up after {limit:g} s (the poll's time limit)")


def _check_response(url: str, response: httpx.Response, policy: FetchPolicy) -> None:
    status = response.status_code
    if not response.is_success:
        retryable = status == 429 or status >= 500
        retry_after = parse_retry_after(response.headers.get("retry-after"), policy.wall_clock())
        raise FetchError(
            url,
            f"HTTP {status} {response.reason_phrase}",
            status,
            retryable=retryable,
            retry_after=retry_after if retryable else None,
        )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        raise FetchError(url, f"got an HTML page ({content_type}), not a calendar", status)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def _result(response: httpx.Response, body: bytes | None) -> FetchResult:
    return FetchResult(
        status=response.status_code,
        body=body,
        final_url=str(response.url),
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
    )
