"""Each version's texts as stored (harvester/textstore.py, migrations 0012 and 0018): exact."""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester import _schema, textstore
from harvester.archive import open_archive, prepare_texts
from harvester.model import CONTENT_FIELDS, TalkRecord
from harvester.parse import parse_feed
from tests.conftest import ROOT

SAMPLES = sorted(
    {*Path("/work/shared/samples").glob("*.ics"), *(ROOT / "data/samples").glob("*.ics")}
)
HEAD = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:researchseminars.org\r\n"
TAIL = b"END:VCALENDAR\r\n"
SITE_DESCRIPTION = (
    'Title: <a href="https://researchseminars.org/talk/S/1/">Motives\\, and more</a>\\n'
    "by Ada Lovelace (Engines\\, Ltd.) as part of Series ∩ Friends\\n\\n\\nAbstract\\n"
)


def records(body: bytes) -> list[TalkRecord]:
    parsed = parse_feed(body)
    assert parsed.talks, parsed.warnings
    return list(parsed.talks)


def event(description_line: bytes | None, *, newline: bytes = b"\r\n", extra: bytes = b"") -> bytes:
    lines = [
        b"BEGIN:VEVENT",
        b"SUMMARY:Ada Lovelace (Engines\\, Ltd.)",
        b"DTSTART:20261204T090000Z",
    ]
    lines += [b"DTSTAMP:20261201T000000Z", b"UID:S/1"]
    if description_line is not None:
        lines.append(description_line)
    lines += [b"LOCATION:https://researchseminars.org/talk/S/1/", b"END:VEVENT"]
    return newline.join(lines) + newline + extra


def calendar(*events: bytes) -> bytes:
    return HEAD + b"".join(events) + TAIL


def assert_exact(record: TalkRecord) -> bytes:
    packed = textstore.pack_raw(record.raw)
    assert packed is not None
    assert zlib.decompress(packed).decode("utf-8") == record.raw  # standard zlib, nothing else
    assert textstore.unpack_raw(packed) == record.raw
    row = record_row(record)
    frame, form = textstore.frame(row)
    assert textstore.unframe(frame, form, row) == record.description
    return packed


def record_row(record: TalkRecord) -> dict[str, Any]:
    return {field: getattr(record, field) for field in CONTENT_FIELDS}


# --- exact rebuilds --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_every_sample_event_comes_back_exactly(path: Path, newline: bytes) -> None:
    body = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", newline)
    for record in records(body):
        packed = assert_exact(record)
        assert len(packed) < len(record.raw.encode())
        frame, form = textstore.frame(record_row(record))
        assert form == 1 and frame is not None and len(frame) < 80


HOSTILE: dict[str, bytes] = {
    "invalid utf-8, replaced": event(b"DESCRIPTION:" + SITE_DESCRIPTION.encode() + b"caf\xe9 \xff"),
    "bare CRs and mixed line ends": event(b"DESCRIPTION:a\r b", newline=b"\n").replace(
        b"UID:S/1\n", b"UID:S/1\r\n"
    ),
    "huge line, unfolded": event(b"DESCRIPTION:" + b"word " * 40_000),
    "huge line, folded": event(
        b"DESCRIPTION:" + ("wörd " * 40_000).encode().replace(b"d", b"d\r\n ")
    ),
    "parameters": event(('DESCRIPTION;LANGUAGE=en;X-A="b:c":' + SITE_DESCRIPTION + "Hi").encode()),
    "no description": event(None),
    "empty description": event(b"DESCRIPTION:"),
    "blank description": event(b"DESCRIPTION:  \\n "),
    "two descriptions": event(b"DESCRIPTION:one\r\nDESCRIPTION:two"),
    "tab folds": event(b"DESCRIPTION:" + SITE_DESCRIPTION.encode() + b"abc\r\n\tdef"),
    "odd fold widths": event(b"DESCRIPTION:abc\r\n def\r\n ghi\r\n  jkl"),
    "escaped newline as \\N": event(b"DESCRIPTION:a\\Nb"),
    "control characters": event(b"DESCRIPTION:bell\x07 \x01 \x05 and \x1b end"),
    "unescaped commas": event(b"DESCRIPTION:a, b; c"),
    "fold inside a UTF-8 character": event(
        b"DESCRIPTION:" + "∩∩∩".encode()[:4] + b"\r\n " + "∩∩∩".encode()[4:]
    ),
    "description property in lower case": event(b"description:lower"),
    "abstract not in the description": event(
        ("DESCRIPTION:" + SITE_DESCRIPTION + "The abstract  with  spaces\\n").encode()
    ),
}


@pytest.mark.parametrize("block", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_events_come_back_exactly(block: bytes) -> None:
    for record in records(calendar(block)):
        assert_exact(record)


def test_texts_prepared_before_the_transaction_are_used_only_for_their_own_row() -> None:
    record = records(SAMPLES[0].read_bytes())[0]
    row = record.content() | {"raw": record.raw, "uid": record.uid, "version": 1}
    assert textstore.stored_row(row, prepare_texts([record])) == textstore.stored_row(row)
    marked = {textstore.text_key(row): ("frame", None, b"z")}
    assert textstore.stored_row(row, marked)["raw"] == b"z"  # taken, not made again
    for other in (row | {"title": "Another title"}, row | {"raw": record.raw + " "}):
        assert textstore.stored_row(other, marked) == textstore.stored_row(other)


def test_a_description_holding_the_template_marks_is_kept_as_it_is() -> None:
    row = {"description": "a\x01b\x05 Ada", "speaker": "Ada", "abstract": "b"}
    assert textstore.frame(row) == ("a\x01b\x05 Ada", None)
    row = {"description": "Title by Ada", "speaker": "Ada\x03"}  # a field with a mark
    assert textstore.frame(row) == ("Title by Ada", None)


def test_fields_inside_each_other_still_expand_exactly() -> None:
    row = {
        "description": "Title: A by Ada as part of Ada's A\n\nAbstract\nAda A Ada",
        "abstract": "Ada A Ada",
        "title": "A",
        "speaker": "Ada",
        "series_name": "Ada's A",
    }
    frame, form = textstore.frame(row)
    assert form == 1 and textstore.unframe(frame, form, row) == row["description"]


# --- the archive ---------------------------------------------------------------------------


@pytest.fixture
def imported(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "archive.db"
    db = open_archive(path)
    db.close()
    from click.testing import CliRunner

    from harvester.cli import cli

    for sample in SAMPLES:
        result = CliRunner().invoke(cli, ["--db", str(path), "import", str(sample)])
        assert result.exit_code == 0, result.output
    yield path


def bare(path: Path) -> sqlite3.Connection:
    """A connection as any SQLite user has it: no harvester function."""
    return sqlite3.connect(path)


def test_versions_read_back_what_the_parser_gave(imported: Path) -> None:
    expected = {r.uid: r for sample in SAMPLES for r in records(sample.read_bytes())}
    conn = bare(imported)
    rows = conn.execute("SELECT uid, raw, description, abstract FROM talk_versions").fetchall()
    assert {uid for uid, *_ in rows} == set(expected)
    for uid, raw, description, abstract in rows:
        assert (zlib.decompress(raw).decode(), description, abstract) == (
            expected[uid].raw,
            expected[uid].description,
            expected[uid].abstract,
        )


# --- migration 0012 ------------------------------------------------------------------------

BEFORE = [m.name for m in _schema.shipped() if m.name < "0012"][-1]
OLD_COLUMNS = (
    "id", "uid", "version", "observed_at", "fetch_id", "change", "changed_fields",
    *CONTENT_FIELDS, "status", "dtstamp", "fingerprint", "raw", "kinds", "automatic",
    "automatic_reason", "previous_seen_at",
)  # fmt: skip


def old_archive(path: Path) -> list[tuple[Any, ...]]:
    """An archive as the release before 0012 stored it, with the samples' versions and odd
    ones; returns its talk_versions rows."""
    conn = sqlite3.connect(path)
    with conn:
        _schema.apply_pending(conn, upto=BEFORE)
    assert "0012_textstore" not in _schema.applied(conn)
    blocks = [sample.read_bytes() for sample in SAMPLES] + [calendar(*HOSTILE.values())]
    found = [r for body in blocks for r in parse_feed(body).talks]
    rows: list[dict[str, Any]] = []
    for n, record in enumerate(found, 1):
        row = record.content() | {"uid": f"{record.uid}#{n}", "raw": record.raw}
        rows.append(row | {"version": 1, "change": "new", "fingerprint": record.fingerprint})
    rows.append({"uid": "gone/1", "version": 2, "change": "removed", "raw": None})
    rows.append({"uid": "odd/1", "version": 1, "change": "new", "description": "x\x01\x05y"})
    with conn:
        for row in rows:
            names = ", ".join(f'"{k}"' for k in row)
            marks = ", ".join("?" * len(row))
            conn.execute(
                f"INSERT INTO talk_versions ({names}) VALUES ({marks})", list(row.values())
            )
    names = ", ".join(f'"{c}"' for c in OLD_COLUMNS)
    old = conn.execute(f"SELECT {names} FROM talk_versions ORDER BY id").fetchall()
    conn.close()
    return old


def schema(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return sorted(
        (type_, name, " ".join((sql or "").split()))
        for type_, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master")
    )


@pytest.mark.slow
def test_migration_keeps_every_version_exactly_and_makes_the_fresh_schema(tmp_path: Path) -> None:
    old = old_archive(tmp_path / "old.db")
    db = open_archive(tmp_path / "old.db")
    names = ", ".join(f'"{c}"' for c in OLD_COLUMNS)
    now = db.execute(f"SELECT {names} FROM talk_versions ORDER BY id").fetchall()
    at = OLD_COLUMNS.index("raw")
    assert [(*r[:at], textstore.unpack_raw(r[at]), *r[at + 1 :]) for r in now] == old
    forms = dict(db.execute("SELECT uid, description_form FROM talk_versions").fetchall())
    assert forms["odd/1"] is None and forms["PhysicsMeetsML/1#1"] == 1
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    fresh = open_archive(tmp_path / "fresh.db")
    assert schema(db.conn) == schema(fresh.conn)
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'talk_versions_new'").fetchone()


def test_migration_keeps_what_earlier_migrations_hung_on_the_table(tmp_path: Path) -> None:
    """Whatever migration made an index or a trigger on talk_versions (0011 may), 0012's
    rebuild makes it again, and it still works."""
    path = tmp_path / "old.db"
    old_archive(path)
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE INDEX "idx_extra" ON "talk_versions" ("dtstamp")')
        conn.execute("CREATE TABLE seen (uid TEXT, description TEXT)")
        conn.execute(
            'CREATE TRIGGER "tv_ai" AFTER INSERT ON "talk_versions" BEGIN'
            " INSERT INTO seen VALUES (new.uid, new.description); END"
        )
    conn.close()
    db = open_archive(path)
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"idx_extra", "tv_ai"} <= names
    db.execute("INSERT INTO talk_state (uid, version, status) VALUES ('n/1', 1, 'active')")
    db.execute(
        "INSERT INTO talk_versions (uid, version, change, description_frame) VALUES ('n/1', 1, 'new', 'hi')"
    )
    assert db.execute("SELECT description FROM seen").fetchall() == [("hi",)]
