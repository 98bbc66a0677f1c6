"""Fetch stage: one HTTP GET of a feed, with timeouts, redirects and a body-size limit.

The httpx transport is the testing seam: `make_client(settings, transport=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from harvester.config import HttpSettings
from harvester.urls import mask_secrets

MAX_REDIRECTS = 10


class FetchError(Exception):
    """A poll that produced no usable body; the message is safe to show (tokens masked)."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.status = status
        self.reason = mask_secrets(reason)
        super().__init__(f"{mask_secrets(url)}: {self.reason}")


@dataclass(frozen=True)
class FetchResult:
    status: int
    body: bytes | None  # None for 304 Not Modified
    final_url: str
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def make_client(
    settings: HttpSettings, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The one client a sync shares across feeds (connection reuse, same policy everywhere)."""
    return httpx.Client(
        headers={"User-Agent": settings.user_agent, "Accept": "text/calendar, */*;q=0.5"},
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        transport=transport,
    )


def fetch(
    client: httpx.Client,
    url: str,
    max_bytes: int,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    """GET `url`; raise FetchError for anything that is not a calendar body within the limit."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return _result(response, None)
            _check_response(url, response)
            body = _read_limited(url, response, max_bytes)
            return _result(response, body)
    except httpx.TooManyRedirects:
        raise FetchError(url, f"more than {MAX_REDIRECTS} redirects") from None
    except httpx.TimeoutException as exc:
        raise FetchError(url, f"timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise FetchError(url, f"{type(exc).__name__}: {exc}") from None


def _check_response(url: str, response: httpx.Response) -> None:
    if not response.is_success:
        raise FetchError(
            url, f"HTTP {response.status_code} {response.reason_phrase}", response.status_code
        )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        raise FetchError(
            url, f"got an HTML page ({content_type}), not a calendar", response.status_code
        )


def _read_limited(url: str, response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    if declared and declared.isdigit() and not encoded and int(declared) > max_bytes:
        raise FetchError(url, f"body of {declared} bytes is over the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    # iter_bytes yields decoded bytes, so the limit holds after gzip/deflate too.
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(url, f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _result(response: httpx.Response, body: bytes | None) -> FetchResult:
    return FetchResult(
        status=response.status_code,
        body=body,
        final_url=str(response.url),
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        content_type=response.headers.get("content-type"),
    )
