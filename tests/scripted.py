"""Scripted answers for one path of the local test site (tests/sitesim.py).

`Scripted(site, path, answer, answer, ...)` answers the n-th request with the n-th
answer (the last one repeats) and counts the requests: a real HTTP server, on 127.0.0.1,
for the fetch tests that need a particular misbehaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from tests.sitesim import Site

CALENDAR = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nEND:VCALENDAR\r\n"
Answer = Callable[[Any], None]  # gets the request handler


class Scripted:
    def __init__(self, site: Site, path: str, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests = 0
        self.url = site.base_url + path
        site.overrides[path] = self

    def __call__(self, handler: Any) -> bool:
        self.requests += 1
        answer = self.answers[min(self.requests, len(self.answers)) - 1]
        answer(handler)
        return True


def reply(status: int, body: bytes = b"", **headers: str) -> Answer:
    """A complete response (Content-Length set); header names with _ for -."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return lambda handler: handler._send(status, body, named)


def calendar(body: bytes = CALENDAR, **headers: str) -> Answer:
    return reply(200, body, Content_Type="text/calendar; charset=utf-8", **headers)


def stream(chunks: Callable[[], Iterator[bytes]], **headers: str) -> Answer:
    """A body without a length, written until the client hangs up (or 64 MB were sent)."""

    def answer(handler: Any) -> None:
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "text/calendar")
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        sent = 0
        try:
            for chunk in chunks():
                handler.wfile.write(chunk)
                sent += len(chunk)
                if sent > 64_000_000:
                    return
        except (BrokenPipeError, ConnectionResetError):
            return

    return answer


def drop() -> Answer:
    """Close the connection without a word (the client sees a protocol error)."""

    def answer(handler: Any) -> None:
        handler.close_connection = True

    return answer


def hang(release: threading.Event) -> Answer:
    """Say nothing until `release` is set (the client times out)."""

    def answer(handler: Any) -> None:
        release.wait(10)
        handler.close_connection = True

    return answer
