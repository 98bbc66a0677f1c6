"""Benchmark: a poll's peak memory against its body size, on a feed of many tiny events.

    .venv/bin/python tests/benchmarks/bench_memory.py [--events 140000] [--stage poll|parse]

Builds a series feed of tiny events (about 15 MB for 140,000), then, in a fresh
subprocess, parses it through the real path: `--stage poll` archives it into an empty
archive (`sync.archive_body`, the fast path included, as a first sync does), `--stage
parse` only runs `parse.parse_feed`. Prints the subprocess's peak RSS (its own, and that
of any child process) divided by the body size. Target: at most 25x.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TARGET = 25.0


def tiny_feed(events: int) -> bytes:
    """A researchseminars.org-like series feed of `events` tiny VEVENTs (CRLF)."""
    head = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:researchseminars.org\r\n"
        b"CALSCALE:GREGORIAN\r\nX-WR-CALNAME:researchseminars.org\r\n"
    )
    parts = [head]
    for n in range(1, events + 1):
        day = n % 28 + 1
        parts.append(
            b"BEGIN:VEVENT\r\nSUMMARY:S %d\r\nDTSTART:203001%02dT150000Z\r\n"
            b"DTSTAMP:20260101T000000Z\r\nUID:Tiny/%d\r\nEND:VEVENT\r\n" % (n, day, n)
        )
    parts.append(b"END:VCALENDAR\r\n")
    return b"".join(parts)


def child(path: str, stage: str) -> None:
    """Runs in the subprocess: parse or archive the body, print the peak RSS as JSON."""
    sys.path.insert(0, str(ROOT))
    from datetime import UTC, datetime

    body = Path(path).read_bytes()
    if stage == "parse":
        from harvester.parse import parse_feed

        events = parse_feed(body).events
    else:
        from harvester.archive import FetchFacts, open_archive
        from harvester.sync import FeedTarget, archive_body

        with tempfile.TemporaryDirectory() as tmp:
            db = open_archive(Path(tmp) / "a.db")
            now = datetime.now(UTC)
            target = FeedTarget("https://researchseminars.org/seminar/Tiny/ics", "Tiny")
            result = archive_body(db, target, body, FetchFacts(now, now, 200, len(body)), now)
            events = result.events
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"events": events, "self": own, "children": kids}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=140_000)
    parser.add_argument("--stage", choices=["poll", "parse"], default="poll")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.stage)
        return 0
    body = tiny_feed(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.ics"
        path.write_bytes(body)
        out = subprocess.run(
            [sys.executable, __file__, "--stage", args.stage, "--child", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    size = len(body)
    ratio = figures["self"] / size
    print(f"body: {size / 1e6:.1f} MB, {figures['events']} events, stage {args.stage}")
    print(f"peak RSS: {figures['self'] / 1e6:.0f} MB = {ratio:.1f}x the body", end="")
    print(f" (child processes: {figures['children'] / 1e6:.0f} MB)")
    met = ratio <= TARGET
    print(f"target <= {TARGET:g}x: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
