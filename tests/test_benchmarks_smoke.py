"""The benchmarks (tests/benchmarks, not collected by pytest) still run: each in a tiny mode."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

BENCHMARKS = ROOT / "tests" / "benchmarks"


@pytest.mark.parametrize(
    ("script", "rows"),
    [
        ("bench_poll.py", ["icalendar parse", "cold sync", "unchanged re-poll", "1% of the talks"]),
        ("bench_site.py", ["first sync", "nothing changed", "1% of talks changed"]),
    ],
)
def test_benchmark_runs_in_tiny_mode(script: str, rows: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "machine: " in done.stdout and "cores" in done.stdout
    for row in rows:
        assert row in done.stdout, done.stdout
