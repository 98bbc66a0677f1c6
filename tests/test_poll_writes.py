"""What one poll costs the archive: one write transaction, and how many rows it changes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from harvester.archive import open_archive
from harvester.sync import PollResult
from tests.test_fastpath import T0, body_of, make_talks, poll, refold


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    archive = open_archive(tmp_path / "a.db")
    yield archive
    archive.conn.close()


def transactions_of(db: Any, body: bytes, hours: int) -> tuple[PollResult, list[str]]:
    """The poll's result and the write transactions it began."""
    begun: list[str] = []

    def trace(statement: str) -> None:
        if statement.lstrip().upper().startswith("BEGIN"):
            begun.append(statement.strip())

    db.conn.set_trace_callback(trace)
    try:
        result = poll(db, body, T0 + timedelta(hours=hours))
    finally:
        db.conn.set_trace_callback(None)
    return result, begun


def test_every_kind_of_poll_is_one_write_transaction(db: Any) -> None:
    talks = make_talks(random.Random(3), 20)
    first, begun = transactions_of(db, body_of(talks, T0), 0)
    assert first.outcome == "changed" and begun == ["BEGIN IMMEDIATE"]
    # the body shortcut
    same, begun = transactions_of(db, body_of(talks, T0 + timedelta(hours=1)), 1)
    assert same.outcome == "unchanged" and begun == ["BEGIN IMMEDIATE"]
    # the per-event fingerprints: same talks, folded otherwise
    refolded = refold(body_of(talks, T0 + timedelta(hours=2)), 40)
    again, begun = transactions_of(db, refolded, 2)
    assert again.outcome == "unchanged" and begun == ["BEGIN IMMEDIATE"]
    # a change
    talks[3].title = "A new title"
    changed, begun = transactions_of(db, body_of(talks, T0 + timedelta(hours=3)), 3)
    assert changed.counts["changed"] == 1 and begun == ["BEGIN IMMEDIATE"]
    # a failed poll (a body that is no calendar)
    failed, begun = transactions_of(db, b"<html>not a calendar</html>", 4)
    assert failed.outcome == "error" and begun == ["BEGIN IMMEDIATE"]
