"""A local notification receiver: the HTTP endpoint that Apprise's `json://` posts to.

Every POST is kept in `messages` (the decoded JSON body). `failing = True` makes it answer
503 until it is set back, the way a mail relay or chat webhook is sometimes down.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.failing = False
        self.attempts = 0
        self.port = 0
        self.lock = threading.Lock()

    def url(self, secret: str = "s3cretPassw0rd") -> str:
        """An Apprise URL with a password in it, as a real target would have."""
        return f"json://hook:{secret}@127.0.0.1:{self.port}/notify"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        receiver = self.server.receiver
        with receiver.lock:
            receiver.attempts += 1
            failing = receiver.failing
            if not failing:
                receiver.messages.append(json.loads(body))
        self.send_response(503 if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


@contextmanager
def receiving() -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver()
    server.receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
