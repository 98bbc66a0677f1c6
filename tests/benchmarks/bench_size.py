"""Benchmark: the archive's size against the VEVENT text it holds (issue 12, item 5).

    .venv/bin/python tests/benchmarks/bench_size.py [--talks 75000] [--versions 79000]
    .venv/bin/python tests/benchmarks/bench_size.py --quick      # smoke test

Builds a site-like archive through the real pipeline: a synthetic researchseminars.org
(sitegen.py) of series of --per-series talks, one `harvester sync` into an empty archive,
then (versions - talks) talks retitled and a second sync. The distinct VEVENT texts are
taken from the bodies served (each block as the site sent it, counted once however many
polls carried it), so the figure does not depend on how the archive keeps them.

Prints archive bytes (after a checkpoint: every index and the full-text index included)
÷ bytes of those texts (target ≤ 2.5×), and the bytes per table and index (dbstat).
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

# Run as a script: make the checkout importable (`tests.benchmarks.*`).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_site import fetch, run_sync, write_config
from tests.benchmarks.common import machine, megabytes, print_table, ratio, site_server, table_sizes

TARGET = 2.5  # contract, Revision 3: readable by any SQLite first, then small
VEVENT = re.compile(rb"BEGIN:VEVENT\r\n.*?END:VEVENT\r\n", re.DOTALL)
DTSTAMP = re.compile(rb"\r\nDTSTAMP:[^\r]*")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--talks", type=int, default=75_000)
    parser.add_argument("--versions", type=int, default=79_000)
    parser.add_argument("--per-series", type=int, default=250)
    parser.add_argument("--quick", action="store_true", help="a quick run (for the smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.talks, args.versions, args.per_series = 240, 252, 30
    series = -(-args.talks // args.per_series)
    sizes = [args.per_series] * series
    sizes[-1] = args.talks - args.per_series * (series - 1)
    print(f"machine: {machine()}")
    with site_server(sizes) as base_url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        urls = [f"{base_url}/seminar/Sem{n:03d}/ics" for n in range(series)]
        config = write_config(folder, "archive.db", urls, 4)
        texts: dict[bytes, int] = {}
        start = time.perf_counter()
        run_sync(config, {"new": args.talks})
        collect(urls, texts)
        fraction = (args.versions - args.talks) / args.talks
        changed = json.loads(fetch(f"{base_url}/_mutate?fraction={fraction}&seed=1"))["changed"]
        run_sync(config, {"changed": changed})
        collect(urls, texts)
        built = time.perf_counter() - start
        report(folder / "archive.db", texts, built)
    return 0


def collect(urls: list[str], texts: dict[bytes, int]) -> None:
    """Every VEVENT block of the feeds, keyed by its text with DTSTAMP masked."""
    for url in urls:
        for block in VEVENT.findall(fetch(url)):
            texts.setdefault(DTSTAMP.sub(b"", block), len(block))


def report(path: Path, texts: dict[bytes, int], built: float) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    talks = conn.execute("SELECT count(*) FROM talks").fetchone()[0]
    versions = conn.execute("SELECT count(*) FROM talk_versions").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page_size
    sizes = table_sizes(conn)
    conn.close()
    archive = path.stat().st_size
    text = sum(texts.values())
    rows = [
        ("talks / versions", f"{talks} / {versions}", f"built in {built:.0f} s"),
        ("distinct VEVENT texts", f"{len(texts)}", megabytes(text)),
        ("archive file", megabytes(archive), f"÷ VEVENT text {ratio(archive / text, TARGET)}"),
        ("(free pages)", megabytes(free), ""),
    ]
    print_table("archive size", rows)
    print()
    shown = [(name, size) for name, size in sizes if size >= archive / 1000]
    rest = sum(size for _name, size in sizes) - sum(size for _name, size in shown)
    shown.append((f"({len(sizes) - len(shown)} others)", rest))
    print_table(
        "bytes per table and index (dbstat)",
        [(name, megabytes(size), f"{size / archive:6.1%}") for name, size in shown],
    )


if __name__ == "__main__":
    sys.exit(main())
