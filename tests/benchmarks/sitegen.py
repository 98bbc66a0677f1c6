"""A synthetic researchseminars.org for the benchmarks, served from its own process.

Built like the real site (see the team's research note): series feeds at
`/seminar/<shortname>/ics`, CRLF lines folded at 75 octets, DTSTAMP = the time of the
request on every event, no validators; DESCRIPTION as the site writes it (title link,
"by ... as part of ...", abstract), about 1.5 KB per talk like the real sample.

Run `python tests/benchmarks/sitegen.py SIZES_JSON` to serve it on a free port of
127.0.0.1; the first line on stdout is the base URL. `GET /_mutate?fraction=F&seed=S`
retitles that fraction of all talks (at least one) and answers how many;
`GET /_feeds` lists the feeds and their talk counts as JSON; `GET /_first_request`
answers when the first feed request since the last such question arrived (`time.monotonic`,
one clock for every process of the machine), or null.

Bodies are rendered once (and again for the series a mutation touches) with a
placeholder DTSTAMP, replaced by the current time on each request, so serving costs
little next to the client being measured.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SITE = "https://researchseminars.org"
STAMP = b"DTSTAMP:19700101T000000Z"
START = datetime(2020, 5, 6, 16, 0, tzinfo=UTC)
SAMPLE_TEXT = (
    "we study the moduli space of stable curves and its tropicalization, proving that "
    "every $p$-adic representation of the absolute Galois group arises from a "
    "crystalline lift; the method combines deformation theory with a new "
    "equidistribution result for Hecke orbits. As an application we obtain bounds on "
    "the rank of elliptic curves over function fields, and we discuss open problems "
    "about the arithmetic of abelian varieties, Shimura varieties and automorphic "
    "forms; graph neural networks, gauge symmetry, lattice field theory, "
    "renormalisation and the geometry of loss landscapes also appear. Joint work "
    "with colleagues in Bonn, Paris and Kyoto."
)
VOCABULARY = SAMPLE_TEXT.split(" ")


def abstracts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = [rng.choice(VOCABULARY) for _ in range(rng.randint(170, 220))]
        out.append(" ".join(words).capitalize() + ".")
    return out


ABSTRACTS = abstracts(64)


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold(line: bytes, width: int = 75, newline: bytes = b"\r\n") -> bytes:
    """Fold a content line at `width` octets, never inside a UTF-8 character."""
    pieces = []
    limit = width
    while len(line) > limit:
        cut = limit
        while line[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(line[:cut])
        line = line[cut:]
        limit = width - 1  # continuation lines start with a space
    pieces.append(line)
    return (newline + b" ").join(pieces)


class Series:
    def __init__(self, number: int, talks: int) -> None:
        self.shortname = f"Sem{number:03d}"
        self.name = f"Seminar {number} ∩ Friends"
        self.titles = {c: f"Talk {c} of seminar {number}" for c in range(1, talks + 1)}
        self.body = b""
        self.render()

    def event(self, counter: int) -> bytes:
        speaker = f"Speaker {counter % 97} (University of Somewhere {counter % 13})"
        title = self.titles[counter]
        url = f"{SITE}/talk/{self.shortname}/{counter}/"
        abstract = ABSTRACTS[(counter * 7 + len(self.shortname)) % len(ABSTRACTS)]
        description = (
            f'Title: <a href="{url}">{title}</a>\nby {speaker} as part of {self.name}\n\n\n'
            f"Abstract\n{abstract}\n"
        )
        start = START + timedelta(days=7 * counter, hours=counter % 5)
        lines = [
            b"BEGIN:VEVENT",
            fold(f"SUMMARY:{escape(speaker)}".encode()),
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}".encode(),
            f"DTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}".encode(),
            STAMP,
            f"UID:{self.shortname}/{counter}".encode(),
            fold(f"DESCRIPTION:{escape(description)}".encode()),
            fold(f"LOCATION:{url}".encode()),
            b"END:VEVENT",
        ]
        return b"\r\n".join(lines)

    def render(self) -> None:
        head = (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:researchseminars.org\r\n"
            b"CALSCALE:GREGORIAN\r\nX-WR-CALNAME:researchseminars.org\r\n"
        )
        events = b"\r\n".join(self.event(c) for c in self.titles)
        self.body = head + events + (b"\r\n" if events else b"") + b"END:VCALENDAR\r\n"


class Site:
    def __init__(self, sizes: list[int]) -> None:
        self.series = {s.shortname: s for s in (Series(n, k) for n, k in enumerate(sizes))}
        self.lock = threading.Lock()
        self.first_request: float | None = None

    def first_request_since_asked(self) -> float | None:
        with self.lock:
            first, self.first_request = self.first_request, None
        return first

    def body(self, shortname: str) -> bytes | None:
        arrived = time.monotonic()
        with self.lock:
            if self.first_request is None:
                self.first_request = arrived
            series = self.series.get(shortname)
            body = series.body if series else None
        if body is None:
            return None
        now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ").encode()
        return body.replace(STAMP, b"DTSTAMP:" + now)

    def mutate(self, fraction: float, seed: int) -> int:
        talks = [(s, c) for s in self.series.values() for c in s.titles]
        rng = random.Random(seed)
        chosen = rng.sample(talks, max(1, round(len(talks) * fraction)))
        touched = set()
        for series, counter in chosen:
            series.titles[counter] += f" (revised {seed})"
            touched.add(series.shortname)
        with self.lock:
            for shortname in touched:
                self.series[shortname].render()
        return len(chosen)


def site_sizes(count: int, smallest: int, largest: int, seed: int = 1) -> list[int]:
    """A realistic spread: most series small, a few large (log-scale, skewed to small)."""
    rng = random.Random(seed)
    ratio = largest / smallest
    sizes = [round(smallest * ratio ** (rng.random() ** 2)) for _ in range(count)]
    sizes[0] = largest  # the largest feed is always there
    return sizes


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        site = self.server.site
        if parts.path == "/_mutate":
            query = parse_qs(parts.query)
            changed = site.mutate(float(query["fraction"][0]), int(query["seed"][0]))
            self.send(200, json.dumps({"changed": changed}).encode(), "application/json")
            return
        if parts.path == "/_first_request":
            first = json.dumps({"at": site.first_request_since_asked()}).encode()
            self.send(200, first, "application/json")
            return
        if parts.path == "/_feeds":
            feeds = {s.shortname: len(s.titles) for s in site.series.values()}
            self.send(200, json.dumps(feeds).encode(), "application/json")
            return
        segments = parts.path.strip("/").split("/")
        body = None
        if len(segments) == 3 and segments[0] == "seminar" and segments[2] == "ics":
            body = site.body(segments[1])
        if body is None:
            self.send(404, b"not found", "text/html")
        else:
            self.send(200, body, "text/calendar; charset=utf-8")

    def send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site


def main() -> None:
    sizes = json.loads(sys.argv[1])
    server = Server(("127.0.0.1", 0), Handler)
    server.site = Site(sizes)
    print(f"http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
