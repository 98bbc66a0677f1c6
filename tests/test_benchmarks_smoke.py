"""The benchmarks (tests/benchmarks, not collected by pytest) still run: each in its quick mode."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

BENCHMARKS = ROOT / "tests" / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "rows"),
    [
        (
            "bench_poll.py",
            ["icalendar parse", "cold sync", "unchanged re-poll", "1% of the talks", "target"],
        ),
        (
            "bench_site.py",
            [
                "naive icalendar parse",
                "first sync",
                "nothing changed",
                "1% of talks changed",
                "start-up: download baseline, unchanged re-sync",
                "after start-up",
            ],
        ),
        ("bench_size.py", ["÷ VEVENT text", "talk_versions", "dbstat"]),
        ("bench_year.py", ["fetches + its indexes after", "every failed and changed poll kept"]),
    ],
)
def test_benchmark_runs_in_quick_mode(script: str, rows: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "machine: " in done.stdout and "cores" in done.stdout
    for row in rows:
        assert row in done.stdout, done.stdout
    assert "MET" in done.stdout or "MISSED" in done.stdout, done.stdout
