"""Benchmark: the polls of one large series feed, against baselines measured in the same run.

    .venv/bin/python tests/benchmarks/bench_poll.py [--talks 1000] [--repeat 3] [--quick]

Starts its own synthetic researchseminars.org (sitegen.py, another process) with one
series of 1,000 talks and measures, in this process, the figures of issue 12 for one feed:

- a cold poll (empty archive) ÷ icalendar parsing the same body alone (target ≤ 1.3×);
- an unchanged re-poll (only DTSTAMP new) ÷ downloading the body plus its sha256
  (target ≤ 1.5×);
- the icalendar parse ÷ the unchanged re-poll (target ≥ 10×);
- the icalendar parse ÷ a re-poll where 1% of the talks changed (target ≥ 8×);
- for reference, a re-poll without the fast path (full parse every time).

Each figure is the median of --repeat rounds; a round measures every case once, so the
ratios compare figures taken side by side. `--quick` (alias `--tiny`): 40 talks, one
round, for the smoke test.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

# Run as a script: make the checkout importable (`tests.benchmarks.*`).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import icalendar

from harvester.archive import open_archive
from harvester.config import HttpSettings
from harvester.fetch import make_client
from harvester.logs import configure_logging
from harvester.sync import FeedTarget, poll_feed
from tests.benchmarks.common import machine, print_table, ratio, site_server

MAX_BYTES = 50_000_000
T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--talks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--quick", "--tiny", action="store_true", help="a quick run (for the smoke test)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.talks, args.repeat = 40, 1
    configure_logging("json", logging.WARNING)
    print(f"machine: {machine()}")
    with site_server([args.talks]) as base_url, tempfile.TemporaryDirectory() as tmp:
        return run(base_url, Path(tmp), args.talks, args.repeat)


def run(base_url: str, tmp: Path, talks: int, repeat: int) -> int:
    """Each round measures every case once, baselines next to what they are compared with,
    so that a load that comes and goes on the machine weighs on both alike."""
    url = f"{base_url}/seminar/Sem000/ics"
    target = FeedTarget(url, "Sem000")
    client = make_client(HttpSettings(min_gap=0.0, allow_private=True))
    body = httpx.get(url).content
    archives = iter(range(10_000))
    warm, full = open_archive(tmp / "warm.db"), open_archive(tmp / "full.db")
    poll_feed(warm, client, target, MAX_BYTES)
    poll_feed(full, client, target, MAX_BYTES, fast=False)

    def cold_sync() -> None:
        db = open_archive(tmp / f"cold-{next(archives)}.db")
        assert poll_feed(db, client, target, MAX_BYTES).counts["new"] == talks

    def unchanged_poll() -> None:
        assert poll_feed(warm, client, target, MAX_BYTES).outcome == "unchanged"

    figures: dict[str, list[float]] = {}
    for round_ in range(1, repeat + 1):
        measure(figures, "parse", lambda: icalendar.Calendar.from_ical(body))
        measure(figures, "cold", cold_sync)
        for _ in range(3):
            measure(figures, "download", lambda: hashlib.sha256(client.get(url).content).digest())
            measure(figures, "unchanged", unchanged_poll)
        changed = httpx.get(f"{base_url}/_mutate?fraction=0.01&seed={round_}").json()["changed"]
        result = measure(figures, "one_percent", lambda: poll_feed(warm, client, target, MAX_BYTES))
        assert result.counts["changed"] == changed, result
        measure(figures, "naive", lambda: poll_feed(full, client, target, MAX_BYTES, fast=False))
    median = {name: statistics.median(times) for name, times in figures.items()}

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms"

    cold, unchanged, one_percent = median["cold"], median["unchanged"], median["one_percent"]
    parse, download = median["parse"], median["download"]
    rows = [
        ("icalendar parse of the body alone (baseline)", ms(parse), ""),
        ("download + sha256 of the body (baseline)", ms(download), ""),
        ("cold sync (empty archive)", ms(cold), "÷ parse " + ratio(cold / parse, 1.3)),
        (
            "unchanged re-poll (new DTSTAMP only)",
            ms(unchanged),
            "÷ download+sha256 " + ratio(unchanged / download, 1.5),
        ),
        ("", "", "parse ÷ it " + ratio(parse / unchanged, 10, at_most=False)),
        (
            "re-poll, 1% of the talks changed",
            ms(one_percent),
            "parse ÷ it " + ratio(parse / one_percent, 8, at_most=False),
        ),
        ("re-poll without the fast path (reference)", ms(median["naive"]), ""),
    ]
    size = f"{len(body) / 1e6:.2f} MB"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"one series feed of {talks} talks ({size}), medians of {repeat} rounds, {stamp}"
    print_table(title, rows)
    return 0


def measure(figures: dict[str, list[float]], name: str, action: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = action()
    figures.setdefault(name, []).append(time.perf_counter() - start)
    return result


if __name__ == "__main__":
    sys.exit(main())
