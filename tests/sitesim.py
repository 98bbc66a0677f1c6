"""A local stand-in for researchseminars.org, built as the research note describes the site.

- series feeds `/seminar/<shortname>/ics`, talk feeds `/talk/<shortname>/<counter>/ics`,
  personal feeds `/user/ics/<token>`; 404 for anything unknown;
- a fresh DTSTAMP on every request, CRLF line endings, lines folded at 75 octets
  (the site builds its feeds with the icalendar library, so this does too);
- no ETag, no Last-Modified, `Cache-Control: no-cache`;
- requests whose Host is `localhost` get a 301 to the same path on 127.0.0.1, the way the
  site's old host names (mathseminars.org, rsem.org) redirect to researchseminars.org.

Tests change the site between polls through `Site`; every request is counted in `hits`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import icalendar

SITE = "https://researchseminars.org"


@dataclass
class SimTalk:
    series: str
    counter: int
    start: datetime
    speakers: list[tuple[str, str | None]]
    title: str | None = "A talk"
    minutes: int = 60
    abstract: str | None = "We discuss things."
    room: str | None = None
    livestream: str | None = None
    comments: str | None = None
    # The series' `access_time` (time-based access control): the livestream link shows
    # from `start - access_time` on; None shows it at once. Either way it vanishes once
    # `now - 60 min > end` (the site's `is_past`).
    access_time: timedelta | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)

    def live_link(self, now: datetime) -> str | None:
        """The livestream link as the site shows it at `now` (talk.py `show_live_link`)."""
        if not self.livestream or now - timedelta(minutes=60) > self.end:
            return None
        if self.access_time is not None and now < self.start - self.access_time:
            return None
        return self.livestream

    @property
    def uid(self) -> str:
        return f"{self.series}/{self.counter}"

    def summary(self) -> str:
        names = [f"{n} ({a})" if a else n for n, a in self.speakers]
        if len(names) <= 2:
            return " and ".join(names)
        return ", ".join(names[:-1]) + ", and " + names[-1]

    def description(self, series_name: str, now: datetime | None = None) -> str:
        link = self.live_link(now) if now is not None else self.livestream
        desc = ""
        if self.title:
            url = f"{SITE}/talk/{self.series}/{self.counter}/"
            desc += f'Title: <a href="{url}">{self.title}</a>\n'
        desc += f"by {self.summary()} as part of {series_name}\n\n"
        if link:
            desc += f"Interactive livestream: {link}\n"
        if self.room:
            desc += f"Lecture held in {self.room}.\n"
        if self.abstract:
            desc += f"\nAbstract\n{self.abstract}\n"
        else:
            desc += "Abstract: TBA\n"
        if self.comments:
            desc += f"\n{self.comments}\n"
        return desc

    def event(self, series_name: str, stamp: datetime) -> icalendar.Event:
        event = icalendar.Event()
        event.add("summary", self.summary())
        event.add("dtstart", self.start)
        event.add("dtend", self.end)
        event.add("dtstamp", stamp)
        event.add("uid", self.uid)
        event.add("description", self.description(series_name, stamp))
        link = self.live_link(stamp)
        event.add("location", link or f"{SITE}/talk/{self.series}/{self.counter}/")
        if link:
            event.add("url", link)
        return event


@dataclass
class SimSeries:
    shortname: str
    name: str
    talks: dict[int, SimTalk] = field(default_factory=dict)

    def add(
        self, counter: int, start: datetime, speakers: list[tuple[str, str | None]], **kw: object
    ) -> SimTalk:
        talk = SimTalk(self.shortname, counter, start, speakers, **kw)  # type: ignore[arg-type]
        self.talks[counter] = talk
        return talk


def calendar_bytes(events: list[icalendar.Event]) -> bytes:
    cal = icalendar.Calendar()
    cal.add("version", "2.0")
    cal.add("prodid", "researchseminars.org")
    cal.add("calscale", "GREGORIAN")
    cal.add("X-WR-CALNAME", "researchseminars.org")
    for event in events:
        cal.add_component(event)
    body: bytes = cal.to_ical()
    return body


Override = Callable[[BaseHTTPRequestHandler], bool]


class Site:
    """The state of the simulated site; safe to change from the test thread between polls."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.series: dict[str, SimSeries] = {}
        self.personal: dict[str, list[str]] = {}  # token → followed series shortnames
        self.hits: Counter[str] = Counter()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.overrides: dict[str, Override] = {}  # path → handler that answers instead
        self.lock = threading.Lock()
        self.base_url = ""
        self.on_request: Callable[[str], None] | None = None  # called with each path
        self.rewrite: Callable[[bytes], bytes] | None = None  # applied to every feed body

    def add_series(self, shortname: str, name: str) -> SimSeries:
        series = SimSeries(shortname, name)
        self.series[shortname] = series
        return series

    def feed_url(self, shortname: str) -> str:
        return f"{self.base_url}/seminar/{shortname}/ics"

    def body_for(self, path: str) -> bytes | None:
        stamp = self.clock().replace(microsecond=0)
        parts = path.strip("/").split("/")
        with self.lock:
            if len(parts) == 3 and parts[0] == "seminar" and parts[2] == "ics":
                series = self.series.get(parts[1])
                if series is None:
                    return None
                return calendar_bytes([t.event(series.name, stamp) for t in series.talks.values()])
            if len(parts) == 4 and parts[0] == "talk" and parts[3] == "ics":
                series = self.series.get(parts[1])
                talk = (
                    series.talks.get(int(parts[2]))
                    if series and parts[2].lstrip("-").isdigit()
                    else None
                )
                if series is None or talk is None:
                    return None
                return calendar_bytes([talk.event(series.name, stamp)])
            if len(parts) == 3 and parts[:2] == ["user", "ics"] and parts[2] in self.personal:
                return calendar_bytes(self._personal_events(parts[2], stamp))
        return None

    def _personal_events(self, token: str, stamp: datetime) -> list[icalendar.Event]:
        now = self.clock()
        events = []
        for shortname in self.personal[token]:
            series = self.series[shortname]
            for talk in series.talks.values():
                if talk.start >= now - timedelta(days=14):
                    events.append((abs(talk.start - now), talk.event(series.name, stamp)))
        return [e for _, e in sorted(events, key=lambda pair: pair[0])]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this every keep-alive response
    # waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        site = self.server.site
        path = self.path.split("?", 1)[0]
        site.hits[path] += 1
        if site.on_request is not None:
            site.on_request(path)
        host = self.headers.get("Host", "")
        if host.startswith("localhost:"):
            self._send(
                301, b"", {"Location": f"http://127.0.0.1:{self.server.server_port}{self.path}"}
            )
            return
        override = site.overrides.get(path)
        if override is not None and override(self):
            return
        body = site.body_for(path)
        if body is not None and site.rewrite is not None:
            body = site.rewrite(body)
        if body is None:
            self._send(404, b"<html><body>Not found</body></html>", {"Content-Type": "text/html"})
            return
        filename = path.strip("/").split("/")[1]
        self._send(
            200,
            body,
            {
                "Content-Type": "text/calendar; charset=utf-8",
                "Content-Disposition": f"attachment; filename={filename}.ics",
                "Cache-Control": "no-cache",
            },
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that give up mid-body (size limits, timeouts) are part of the tests.
        pass


@contextmanager
def running(server: _Server, site: Site) -> Iterator[None]:
    """Serve `site` with `server` in a thread for the duration of the block."""
    server.site = site
    host, port = str(server.server_address[0]), int(server.server_address[1])
    site.base_url = f"http://{host}:{port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve(site: Site, host: str = "127.0.0.1") -> Iterator[Site]:
    """Run the site on `host` (a free port) in a thread for the duration of the block."""
    with running(_Server((host, 0), _Handler), site):
        yield site


@contextmanager
def serve_at(site: Site, host: str, port: int) -> Iterator[Site]:
    """Run the site on `host` and a given `port` (two sites on one port, other addresses)."""
    with running(_Server((host, port), _Handler), site):
        yield site


@contextmanager
def serve_tls(site: Site, host: str, certfile: str, keyfile: str) -> Iterator[Site]:
    """Run the site over TLS on `host` (a free port); `site.base_url` is then https."""
    import ssl

    server = _Server((host, 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with running(server, site):
        site.base_url = site.base_url.replace("http://", "https://", 1)
        yield site


def refold_octets(body: bytes, width: int) -> bytes:
    """`body` (CRLF) unfolded, then folded every `width` octets, even inside a UTF-8
    character (RFC 5545 allows it; the parser must unfold before it decodes).
    """
    lines = body.replace(b"\r\n ", b"").split(b"\r\n")
    out = []
    for line in lines:
        pieces = [line[:width]] + [
            line[i : i + width - 1] for i in range(width, len(line), width - 1)
        ]
        out.append(b"\r\n ".join(pieces))
    return b"\r\n".join(out)
