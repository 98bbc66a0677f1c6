"""The simulated month (tests/benchmarks/sim_month.py) in its quick mode: the archive's
automatic versions and edits match the simulation's ground truth exactly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_a_simulated_site_gives_exactly_the_ground_truth() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "benchmarks" / "sim_month.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "verdict: exact" in done.stdout
    assert "automatic versions" in done.stdout
