"""The polling processes keep large blocks on glibc's heap (`sync.keep_large_blocks`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FAULTS = """
import resource, sys
from harvester.sync import keep_large_blocks
if sys.argv[1] == "tuned":
    keep_large_blocks()
head, tail = b"x" * (1 << 20), b"y" * (1 << 20) + b"\\r\\n"
def faults_of_a_poll():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    joined = b"".join([head, tail])  # a poll's copies of its body, alive at once, then freed
    stripped = joined.strip()
    masked = stripped.replace(b"xy", b"z")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del joined, stripped, masked
    return after - before
for _ in range(5):
    faults_of_a_poll()
print(min(faults_of_a_poll() for _ in range(10)))
"""


def faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_polls_large_copies_reuse_their_pages() -> None:
    """Untuned, a poll's 2 MB copies fault their pages in again at every poll (glibc trims
    the freed heap); tuned, they reuse the pages of the poll before."""
    assert faults("default") > 256
    assert faults("tuned") < 16
