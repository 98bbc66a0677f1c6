"""A local notification receiver: the HTTP endpoint that Apprise's `json://` posts to.

Every POST is kept in `messages` (the decoded JSON body). `failing = True` makes it answer
503 until it is set back, the way a mail relay or chat webhook is sometimes down. `drip`
seconds makes it send its answer one byte at a time, that long apart (for at most a
minute). `receiving("::1")` listens on IPv6 loopback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
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
        self.host = "127.0.0.1"
        self.drip: float | None = None
        self.lock = threading.Lock()

    def url(self, secret: str = "s3cretPassw0rd") -> str:
        """An Apprise URL with a password in it, as a real target would have."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"json://hook:{secret}@{host}:{self.port}/notify"


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
        if receiver.drip is not None:
            self._drip(receiver.drip)
            return
        self.send_response(503 if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _drip(self, gap: float) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + b"X-Slow: y\r\n" * 100 + b"\r\n"
        ends = time.monotonic() + 60
        for i in range(len(answer)):
            if time.monotonic() > ends:
                return
            try:
                self.wfile.write(answer[i : i + 1])
                self.wfile.flush()
            except OSError:
                return
            time.sleep(gap)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


class _Server6(_Server):
    address_family = socket.AF_INET6


@contextmanager
def receiving(host: str = "127.0.0.1") -> Iterator[Receiver]:
    server = (_Server6 if ":" in host else _Server)((host, 0), _Handler)
    server.receiver = Receiver()
    server.receiver.port = int(server.server_address[1])
    server.receiver.host = host
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
