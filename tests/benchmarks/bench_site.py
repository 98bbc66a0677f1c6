"""Benchmark: `harvester sync` over a whole synthetic site, as a cron job would run it.

    .venv/bin/python tests/benchmarks/bench_site.py [--feeds 500] [--largest 1000] [--tiny]

Starts its own synthetic researchseminars.org (sitegen.py, another process) with --feeds
series feeds of 20 to --largest talks each (most small, a few large, as on the site) and
runs the real command line, each time in a fresh process:

1. the first sync into an empty archive;
2. a re-sync with nothing changed (every body is new: DTSTAMP);
3. a re-sync after 1% of all talks changed (retitled).

For each: wall time, talks per second, and the peak RSS of the harvester process, next to
the size of the largest feed (memory follows the largest feeds in flight, not their count).
The config is the default one but for `min_gap = 0` (no pause between requests to the
one local host); `per_host` stays 2, `concurrency` 4.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Run as a script: make the checkout importable (`tests.benchmarks.*`).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.common import ROOT, machine, print_table, site_server
from tests.benchmarks.sitegen import site_sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--smallest", type=int, default=20)
    parser.add_argument("--largest", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tiny", action="store_true", help="a quick run (for the smoke test)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.feeds, args.smallest, args.largest = 8, 5, 30
    sizes = site_sizes(args.feeds, args.smallest, args.largest)
    print(f"machine: {machine()}")
    with site_server(sizes) as base_url, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), base_url, len(sizes), args.concurrency)
        largest = len(fetch(f"{base_url}/seminar/Sem000/ics"))
        total = sum(sizes)
        rows = [("first sync (empty archive)", *run_sync(config, total, {"new": total}))]
        rows.append(("re-sync, nothing changed", *run_sync(config, total, {"unchanged": total})))
        changed = json.loads(fetch(f"{base_url}/_mutate?fraction=0.01&seed=1"))["changed"]
        rows.append(
            ("re-sync, 1% of talks changed", *run_sync(config, total, {"changed": changed}))
        )
    title = (
        f"whole site: {len(sizes)} series feeds, {total} talks ({min(sizes)}-{max(sizes)} per"
        f" feed, median {sorted(sizes)[len(sizes) // 2]}); largest feed {largest / 1e6:.1f} MB"
    )
    table = [("", "wall time", "talks/s      peak RSS"), *rows]
    print_table(title, table)
    return 0


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def write_config(folder: Path, base_url: str, feeds: int, concurrency: int) -> Path:
    lines = [
        "[archive]",
        'path = "archive.db"',
        "",
        "[http]",
        "timeout = 120",
        "allow_private = true",
        "min_gap = 0",
        f"concurrency = {concurrency}",
        "max_bytes = 100_000_000",
    ]
    for n in range(feeds):
        lines += ["", "[[feeds]]", f'url = "{base_url}/seminar/Sem{n:03d}/ics"']
    path = folder / "harvester.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_sync(config: Path, talks: int, expected: dict[str, int]) -> tuple[str, str]:
    """One `harvester sync` in its own process: (wall time, talks/s and peak RSS)."""
    command = [sys.executable, "-m", "harvester", "--config", str(config), "--log-format"]
    command += ["json", "sync"]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=config.parent
    )
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    if process.returncode != 0 or "0 failed" not in summary:
        raise RuntimeError(f"sync failed ({process.returncode}): {summary}")
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (new|changed|unchanged)", summary)}
    if any(counts.get(key) != value for key, value in expected.items()):
        raise RuntimeError(f"expected {expected}, got: {summary}")
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    return f"{seconds:.1f} s", f"{talks / seconds:7.0f}   {peak_mb:6.0f} MB   ({summary})"


if __name__ == "__main__":
    sys.exit(main())
