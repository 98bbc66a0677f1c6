"""icalendar in other processes (`parse.other_processes`): a body of many new events is parsed
in a spawned process, and the archive is exactly what a parse here would have made."""

from __future__ import annotations

import multiprocessing
import os
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from harvester import parse, sync
from harvester.archive import open_archive
from harvester.config import HttpSettings
from harvester.redact import forget_all, remember
from tests.test_fastpath import T0, body_of, dump, make_talks, poll

pytestmark = pytest.mark.slow  # each test starts a Python process

MANY = parse.MANY + 20


@pytest.fixture
def body() -> bytes:
    return body_of(make_talks(random.Random(21), MANY), T0)


@pytest.fixture
def in_process(tmp_path: Path, body: bytes) -> dict[str, list[tuple[object, ...]]]:
    poll(open_archive(tmp_path / "here.db"), body, T0)
    return dump(tmp_path / "here.db")


@pytest.fixture
def workers() -> Iterator[None]:
    with parse.other_processes(1):
        yield


def test_many_new_events_are_parsed_in_another_process_into_the_same_archive(
    tmp_path: Path, body: bytes, in_process: dict[str, list[tuple[object, ...]]], workers: None
) -> None:
    assert multiprocessing.active_children() == []
    result = poll(open_archive(tmp_path / "there.db"), body, T0)
    assert result.counts["new"] == MANY
    assert len(multiprocessing.active_children()) == 1  # started for this body
    assert dump(tmp_path / "there.db") == in_process


def test_a_few_new_events_are_parsed_here(tmp_path: Path, workers: None) -> None:
    few = body_of(make_talks(random.Random(5), parse.MANY - 1), T0)
    assert poll(open_archive(tmp_path / "a.db"), few, T0).counts["new"] == parse.MANY - 1
    assert multiprocessing.active_children() == []


def test_a_worker_that_died_leaves_the_parse_to_this_process(
    tmp_path: Path, body: bytes, in_process: dict[str, list[tuple[object, ...]]], workers: None
) -> None:
    assert parse._workers is not None
    with pytest.raises(Exception, match="terminated abruptly"):
        parse._workers.get().submit(os._exit, 1).result(timeout=60)  # as if killed
    result = poll(open_archive(tmp_path / "there.db"), body, T0)
    assert (result.outcome, result.counts["new"]) == ("changed", MANY)
    assert dump(tmp_path / "there.db") == in_process


def test_secrets_are_masked_in_what_another_process_parsed(tmp_path: Path, workers: None) -> None:
    """The spawned process knows no secret: this one masks its records."""
    talks = make_talks(random.Random(8), MANY)
    secret = "tok-4f9c2a7e51d3b8a6"
    talks[3].title = f"Private link ?token={secret}"
    remember(secret)
    try:
        poll(open_archive(tmp_path / "a.db"), body_of(talks, T0), T0)
    finally:
        forget_all()
    assert len(multiprocessing.active_children()) == 1
    conn = sqlite3.connect(tmp_path / "a.db")
    stored = "\n".join(str(row) for row in conn.execute("SELECT * FROM talks"))
    assert "Private link" in stored
    assert secret not in stored


def test_a_sync_has_as_many_other_processes_as_the_machine_has_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: list[int] = []
    real = parse.other_processes

    @contextmanager
    def counted(count: int) -> Iterator[None]:
        counts.append(count)
        with real(count):
            yield

    monkeypatch.setattr(sync, "other_processes", counted)
    sync.sync_with_client(partial(open_archive, tmp_path / "a.db"), HttpSettings(), [])
    assert counts == [os.cpu_count()]


def test_a_system_without_process_pools_parses_here(
    tmp_path: Path,
    body: bytes,
    in_process: dict[str, list[tuple[object, ...]]],
    monkeypatch: pytest.MonkeyPatch,
    workers: None,
) -> None:
    """Where no pool can be made (no working sem_open, no processes left), the sync parses
    in its own process."""
    import concurrent.futures

    def no_pool(*args: object, **kwargs: object) -> None:
        raise OSError("this platform lacks a functioning sem_open implementation")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    assert poll(open_archive(tmp_path / "there.db"), body, T0).counts["new"] == MANY
    assert dump(tmp_path / "there.db") == in_process


def test_a_parse_past_its_deadline_fails_the_poll_and_writes_no_talk(
    tmp_path: Path, body: bytes, monkeypatch: pytest.MonkeyPatch, workers: None
) -> None:
    monkeypatch.setattr(parse, "_WORKER_DEADLINE_S", 0.001)  # a spawned process takes longer
    result = poll(open_archive(tmp_path / "a.db"), body, T0)
    assert result.outcome == "error"
    assert result.error is not None and "icalendar took over 0.001 s" in result.error
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("SELECT count(*) FROM talks").fetchone() == (0,)
