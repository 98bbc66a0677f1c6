"""`harvester serve`: Datasette on the archive, as a real process and in-process."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from harvester.cli import cli
from harvester.cli import serve as serve_module
from harvester.cli.serve import (
    INSTALL_HINT,
    ServeError,
    build_datasette,
    find_metadata,
    load_metadata,
)
from tests.conftest import ROOT, Harvester
from tests.sitesim import Site

METADATA = ROOT / "harvester" / "datasette" / "metadata.yml"  # shipped as package data
READY_WITHIN_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(
    command: list[str], port: int, *, cwd: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`harvester serve` (the `command` given) on `port`, once it answers; stopped after."""
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"harvester serve exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{base}/-/versions.json", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"harvester serve not answering on {base} after {READY_WITHIN_S}s")
            time.sleep(0.1)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


@pytest.fixture
def served(harvester: Harvester) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`harvester serve` on a free port of 127.0.0.1, stopped at the end of the test."""
    assert harvester("sync").exit_code == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HARVESTER_DB", "HARVESTER_CONFIG")}
    command = [sys.executable, "-m", "harvester", "--config", str(harvester.config), "serve"]
    with serving(command, port, cwd=harvester.config.parent, env=env) as started:
        yield started


@pytest.mark.slow
def test_serve_answers_over_http_while_the_archive_keeps_changing(
    served: tuple[str, subprocess.Popen[bytes]], harvester: Harvester, site: Site
) -> None:
    base, process = served
    front = httpx.get(f"{base}/", timeout=10)
    assert front.status_code == 200
    assert "Seminar archive" in front.text and 'href="archive/upcoming_talks"' in front.text
    rows = httpx.get(f"{base}/archive/upcoming_talks.json?_shape=array", timeout=10).json()
    assert [r["uid"] for r in rows] == ["AlgGeom/2", "NumThy/1", "AlgGeom/3"]

    # the harvester writes while Datasette serves (not immutable), and Datasette sees it
    site.series["AlgGeom"].talks[2].title = "Noetherian rings"
    assert "1 changed" in harvester("sync").output
    rows = httpx.get(f"{base}/archive/recent_changes.json?_shape=array", timeout=10).json()
    assert [(r["uid"], r["change_kind"]) for r in rows] == [("AlgGeom/2", "retitled")]
    calendar = httpx.get(f"{base}/archive/calendar.ics", timeout=10)
    assert calendar.status_code == 200 and "SUMMARY:Noetherian rings" in calendar.text
    assert httpx.get(f"{base}/archive/changes_feed.atom", timeout=10).status_code == 200

    # read-only for the web user
    write = httpx.get(f"{base}/archive.json", params={"sql": "delete from talks"}, timeout=10)
    assert write.status_code == 400
    assert process.poll() is None


def test_serve_listens_on_localhost_by_default() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    assert "[default: 127.0.0.1]" in result.output
    assert "--port" in result.output and "--metadata" in result.output


def test_serve_without_the_extra_says_how_to_install_it(
    harvester: Harvester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve_module, "_importable", lambda module: module != "feedgen")
    result = harvester("serve")
    assert result.exit_code == 1
    assert "feedgen" in result.output
    assert INSTALL_HINT in result.output
    assert INSTALL_HINT == "pip install 'seminar-harvester[datasette]'"


def test_serve_without_an_archive_says_to_sync_first(harvester: Harvester) -> None:
    result = harvester("serve")
    assert result.exit_code == 1
    assert "no archive at" in result.output and "harvester sync" in result.output
    assert not harvester.db_path.exists()


def test_metadata_with_a_write_query_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "datasette.yml"
    path.write_text(
        "databases:\n  archive:\n    queries:\n      wipe:\n"
        "        sql: delete from talks\n        write: true\n",
        encoding="utf-8",
    )
    with pytest.raises(ServeError, match="wipe have write: true"):
        load_metadata(path)
    assert load_metadata(METADATA)["title"] == "Seminar archive"


def test_metadata_is_found_beside_the_config(tmp_path: Path) -> None:
    beside = tmp_path / "datasette.yml"
    assert find_metadata(tmp_path / "harvester.toml") == METADATA  # the one the package ships
    beside.write_text("title: Mine\n", encoding="utf-8")
    assert find_metadata(tmp_path / "harvester.toml") == beside
    assert find_metadata(None) == METADATA


@pytest.mark.slow
def test_any_archive_file_is_served_as_archive(harvester: Harvester) -> None:
    assert harvester("sync").exit_code == 0
    other = harvester.db_path.with_name("seminars.sqlite")
    source, target = sqlite3.connect(harvester.db_path), sqlite3.connect(other)
    source.backup(target)  # a copy, write-ahead log included
    source.close()
    target.close()
    ds = build_datasette(other, load_metadata(METADATA))

    async def fetch() -> httpx.Response:
        await ds.invoke_startup()
        response: httpx.Response = await ds.client.get("/archive/upcoming_talks.json")
        return response

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert ds.get_database("archive").is_mutable
    assert list(ds.databases) == ["_internal", "archive"]


def test_the_archive_is_query_only_even_with_other_metadata(harvester: Harvester) -> None:
    assert harvester("sync").exit_code == 0
    ds = build_datasette(harvester.db_path, {"title": "Someone else's metadata"})
    database = ds.get_database("archive")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        asyncio.run(database.execute_write("DELETE FROM talk_state"))
    conn = sqlite3.connect(harvester.db_path)
    assert conn.execute("SELECT count(*) FROM talks").fetchone()[0] == 4
    conn.close()
