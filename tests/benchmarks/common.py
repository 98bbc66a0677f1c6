"""What the benchmarks share: the synthetic site in its own process, timing, the table."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# Whole processes run as an installed harvester does: from compiled bytecode (pip compiles
# a package on install). A checkout's own modules would otherwise be compiled at every
# start wherever PYTHONDONTWRITEBYTECODE is set, as it is on the development machines.
PYCACHE = Path(tempfile.gettempdir()) / "seminar-harvester-bench-pycache"


def process_env() -> dict[str, str]:
    """The environment of a measured process: the checkout importable, bytecode cached."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | {"PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(PYCACHE)}


def compile_checkout() -> None:
    """Compile the harvester's modules into PYCACHE before anything is measured."""
    command = [sys.executable, "-m", "compileall", "-q", str(ROOT / "harvester")]
    subprocess.run(command, check=True, env=process_env(), stdout=subprocess.DEVNULL)


@contextmanager
def site_server(sizes: list[int]) -> Iterator[str]:
    """Serve a synthetic site of series with these talk counts; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "sitegen.py"), str(sizes).replace(" ", "")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http://"):
            raise RuntimeError("the site server did not start")
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load:.1f} at the start"
    )


def verdict(value: float, target: float, at_most: bool) -> str:
    met = value <= target if at_most else value >= target
    sign = "≤" if at_most else "≥"
    return f"target {sign} {target:g}×: {'MET' if met else 'MISSED'}"


def ratio(value: float, target: float, *, at_most: bool = True) -> str:
    """`1.23×  (target ≤ 1.5×: MET)`: a figure against its target."""
    return f"{value:.2f}×  ({verdict(value, target, at_most)})"


def table_sizes(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Bytes of pages per table and index (dbstat), largest first."""
    return [
        (str(name), int(size))
        for name, size in conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    ]


def megabytes(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    """Rows of (what, figure, comparison) as an aligned text table."""
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(title)
    print("-" * len(title))
    for what, figure, comparison in rows:
        print(f"{what:<{widths[0]}}  {figure:>{widths[1]}}  {comparison}")
    sys.stdout.flush()
