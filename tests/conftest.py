from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import structlog
from click.testing import CliRunner, Result
from hypothesis import settings

from harvester.cli import cli
from harvester.redact import forget_all
from tests.sitesim import Site, serve

# CI runs the same examples every time: a random one that finds a bug is for a developer's
# run to find and keep (in .hypothesis/), not to make one submission fail and the next pass.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "PhysicsMeetsML.ics"


@pytest.fixture
def site() -> Iterator[Site]:
    """A simulated researchseminars.org with two series, one talk in the past and the rest ahead."""
    sim = Site()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    alg = sim.add_series("AlgGeom", "Algebraic Geometry \u2229 Friends")
    alg.add(
        1,
        now - timedelta(days=30),
        [("Ada Lovelace", "Analytical Engines, Ltd.")],
        title="Old results",
    )
    alg.add(2, now + timedelta(days=3), [("Emmy Noether", "Göttingen")], title="Rings and ideals")
    alg.add(
        3,
        now + timedelta(days=10),
        [("Alan Turing", "Manchester"), ("Alonzo Church", "Princeton")],
        title="Computability, and what it means",
        room="MIT 2-142",
        abstract="Long abstract " * 40,
    )
    nt = sim.add_series("NumThy", "Number Theory Web Seminar")
    nt.add(1, now + timedelta(days=5), [("Sophie Germain", None)], title="Primes $p$ &amp; more")
    with serve(sim):
        yield sim


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARVESTER_CONFIG", raising=False)
    monkeypatch.delenv("HARVESTER_DB", raising=False)
    return tmp_path


def write_config(directory: Path, urls: list[str], extra: str = "") -> Path:
    feeds = "".join(f'\n[[feeds]]\nurl = "{url}"\n' for url in urls)
    path = directory / "harvester.toml"
    path.write_text(
        '[archive]\npath = "archive.db"\n\n[http]\ntimeout = 5\nallow_private = true\n'
        + extra
        + feeds,
        encoding="utf-8",
    )
    return path


class Harvester:
    """Runs the real CLI in-process against one config and archive."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.db_path = config.parent / "archive.db"

    def __call__(self, *args: str) -> Result:
        runner = CliRunner()
        return runner.invoke(cli, ["--config", str(self.config), "--log-format", "json", *args])


@pytest.fixture
def harvester(workdir: Path, site: Site) -> Harvester:
    config = write_config(workdir, [site.feed_url("AlgGeom"), site.feed_url("NumThy")])
    return Harvester(config)


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    target = tmp_path / "PhysicsMeetsML.ics"
    shutil.copy(SAMPLE, target)
    return target


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Each test starts with no remembered secret (they are process-wide)."""
    yield
    forget_all()


_Client = TypeVar("_Client", bound=httpx.Client)
_OPEN_CLIENTS: list[httpx.Client] = []


def closed_after_test(client: _Client) -> _Client:
    """`client`, closed when the test ends: its pooled sockets would otherwise be closed by
    the garbage collector, with a ResourceWarning, during some later test."""
    _OPEN_CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_test_clients() -> Iterator[None]:
    yield
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()
