"""Benchmark: `harvester sync` over a whole synthetic site, against baselines in the same run.

    .venv/bin/python tests/benchmarks/bench_site.py [--series 60] [--talks 250] [--repeat 3]
    .venv/bin/python tests/benchmarks/bench_site.py --quick     # (alias --tiny) smoke test

Starts its own synthetic researchseminars.org (sitegen.py, another process) with --series
series feeds of --talks talks each and runs, each time in a fresh process and each round
side by side with its baselines (also whole processes, tests/benchmarks/baseline.py):

- the naive baseline: download every feed and parse it with icalendar, in one process;
- the download baseline: download every feed and take its sha256;
- `harvester sync` into an empty archive (cold), again with nothing changed (every body is
  new: DTSTAMP), and after 1% of all talks changed (retitled).

It prints the figures of issue 21 (medians of --repeat rounds, each a ratio of medians)
with their targets, and the peak RSS of each sync process (its parse worker included).
Every process runs from compiled bytecode, as an installed harvester does (common.py,
PYCACHE). The config is the default one but for `min_gap = 0` (no pause between requests to the
one local host); `per_host` stays 2, `concurrency` 4.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

# Run as a script: make the checkout importable (`tests.benchmarks.*`).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.common import (
    HERE,
    ROOT,
    compile_checkout,
    machine,
    print_table,
    process_env,
    ratio,
    site_server,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=60)
    parser.add_argument("--talks", type=int, default=250, help="talks per series")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--quick", "--tiny", action="store_true", help="a quick run (for the smoke test)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.series, args.talks, args.repeat = 8, 30, 1
    sizes = [args.talks] * args.series
    total = sum(sizes)
    print(f"machine: {machine()}")
    compile_checkout()
    times: dict[str, list[float]] = {}
    peaks: dict[str, list[float]] = {}
    startups: dict[str, list[float]] = {}  # process start → the site's first feed request
    with site_server(sizes) as base_url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        urls = [f"{base_url}/seminar/Sem{n:03d}/ics" for n in range(len(sizes))]
        (folder / "urls.txt").write_text("\n".join(urls), encoding="utf-8")
        feed_bytes = len(fetch(urls[0]))

        def started(name: str, at: float) -> None:
            first = json.loads(fetch(f"{base_url}/_first_request"))["at"]
            startups.setdefault(name, []).append(first - at)

        def baseline(name: str, mode: str) -> None:
            fetch(f"{base_url}/_first_request")  # forget the requests before this one
            at = time.monotonic()
            times.setdefault(name, []).append(
                run_baseline(mode, folder / "urls.txt", args.concurrency)
            )
            started(name, at)

        def sync(name: str, config: Path, expected: dict[str, int]) -> None:
            fetch(f"{base_url}/_first_request")
            at = time.monotonic()
            seconds, peak_mb = run_sync(config, expected)
            times.setdefault(name, []).append(seconds)
            peaks.setdefault(name, []).append(peak_mb)
            started(name, at)

        for round_ in range(1, args.repeat + 1):
            config = write_config(folder, f"archive-{round_}.db", urls, args.concurrency)
            baseline("naive", "parse")
            sync("cold", config, {"new": total})
            baseline("download", "download")
            sync("unchanged", config, {"unchanged": total})
            mutated = json.loads(fetch(f"{base_url}/_mutate?fraction=0.01&seed={round_}"))
            sync("one_percent", config, {"changed": mutated["changed"]})
            (folder / f"archive-{round_}.db").unlink()
    median = {name: statistics.median(values) for name, values in times.items()}
    peak = {name: max(values) for name, values in peaks.items()}
    naive, download = median["naive"], median["download"]
    cold, unchanged, one_percent = median["cold"], median["unchanged"], median["one_percent"]

    def secs(name: str) -> str:
        rss = f", peak RSS {peak[name]:.0f} MB" if name in peak else ""
        return f"{median[name]:.2f} s{rss}"

    rows = [
        ("naive icalendar parse of all feeds, one process (baseline)", secs("naive"), ""),
        ("download + sha256 of all feeds (baseline)", secs("download"), ""),
        ("first sync (empty archive)", secs("cold"), "÷ naive parse " + ratio(cold / naive, 1.3)),
        (
            "re-sync, nothing changed",
            secs("unchanged"),
            "÷ download+sha256 " + ratio(unchanged / download, 2.0),
        ),
        ("", "", "naive parse ÷ it " + ratio(naive / unchanged, 10, at_most=False)),
        (
            "re-sync, 1% of talks changed",
            secs("one_percent"),
            "naive parse ÷ it " + ratio(naive / one_percent, 8, at_most=False),
        ),
    ]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = (
        f"whole site: {len(sizes)} series × {args.talks} talks ({total} talks, feeds of"
        f" {feed_bytes / 1e6:.2f} MB), whole processes, medians of {args.repeat}, {stamp}"
    )
    print_table(title, rows)
    start = {name: statistics.median(values) for name, values in startups.items()}
    after = {name: median[name] - start[name] for name in start}
    print_table(
        "start-up (process start → the site's first feed request) and the rest, medians",
        [
            (
                "start-up: download baseline, unchanged re-sync",
                f"{start['download'] * 1000:.0f} ms, {start['unchanged'] * 1000:.0f} ms",
                "",
            ),
            (
                "after start-up: download baseline, unchanged re-sync",
                f"{after['download']:.2f} s, {after['unchanged']:.2f} s",
                "re-sync ÷ download " + ratio(after["unchanged"] / after["download"], 1.3),
            ),
        ],
    )
    return 0


def run_baseline(mode: str, urls: Path, concurrency: int) -> float:
    """One baseline process (tests/benchmarks/baseline.py): its wall time."""
    command = [sys.executable, str(HERE / "baseline.py"), mode, str(urls), str(concurrency)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=process_env())
    return time.perf_counter() - start


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def write_config(folder: Path, archive: str, urls: list[str], concurrency: int) -> Path:
    lines = [
        "[archive]",
        f'path = "{archive}"',
        "",
        "[http]",
        "timeout = 120",
        "allow_private = true",
        "min_gap = 0",
        f"concurrency = {concurrency}",
        "max_bytes = 100_000_000",
    ]
    for url in urls:
        lines += ["", "[[feeds]]", f'url = "{url}"']
    path = folder / "harvester.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_sync(config: Path, expected: dict[str, int]) -> tuple[float, float]:
    """One `harvester sync` in its own process: (wall time in s, peak RSS in MB).

    The RSS is wait4's: the largest of the process and of its children (the parse worker).
    """
    command = [sys.executable, "-m", "harvester", "--config", str(config), "--log-format"]
    command += ["json", "sync"]
    env = process_env()
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
    return seconds, usage.ru_maxrss / 1024  # kilobytes on Linux


if __name__ == "__main__":
    sys.exit(main())
