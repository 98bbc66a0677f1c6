"""The ICS lexer (the first part of parse.py): folds, decoding, DTSTAMP, components and fingerprints."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar.parser.content_line import UFOLD

from harvester import parse
from harvester.model import clean_text
from tests.sitesim import refold_octets

EVENT = (
    b"BEGIN:VEVENT\r\nSUMMARY:Ada (X)\r\nDTSTART:20300101T150000Z\r\n"
    b"DTSTAMP:20260101T000000Z\r\nUID:S/1\r\nEND:VEVENT\r"
)
BODY = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + EVENT + b"\n" + EVENT + b"\nEND:VCALENDAR"


def test_unfold_joins_continuation_lines_like_icalendar() -> None:
    assert parse.unfold(b"A:x\r\n y\r\n\tz\nB:1") == b"A:xyz\nB:1"
    assert parse.unfold(b"A:x\r\n\r\n y") == b"A:xy"  # a blank line before a fold, too
    assert parse.unfold(b"A:x\r\nB:y") == b"A:x\r\nB:y"


def test_a_fold_inside_a_utf8_character_decodes_after_unfolding() -> None:
    line = "SUMMARY:∂ Ünïcödé 🚀".encode()
    folded = line[:10] + b"\r\n " + line[10:]  # inside the three octets of ∂
    assert parse.decode(parse.unfold(folded)) == parse.Decoded(line.decode(), None)
    assert parse.decode(b"A:\xff").bad_at == 2


def test_clean_text_drops_c0_controls_but_tab_and_newline() -> None:
    assert parse.decode(b"A:a\x07b\r\n").text == "A:a\x07b\r\n"  # decoding keeps them
    assert clean_text("x\x00\x01\x1f\ty\nz\x7f") == "x\ty\nz\x7f"


def test_dtstamp_lines() -> None:
    assert parse.is_dtstamp(b"DTSTAMP:20260101T000000Z") and parse.is_dtstamp(b"dtstamp;X=1:2")
    assert not parse.is_dtstamp(b"DTSTAMPX:1") and not parse.is_dtstamp(b"DTSTART:1")
    assert parse.property_name(b"D TSTAMP:1") == b"DTSTAMP" != parse.property_name(b"UID:1")
    assert parse.plain_dtstamp(b"DTSTAMP:20260101T000000Z") == "2026-01-01T00:00:00+00:00"
    assert parse.plain_dtstamp(b"DTSTAMP;TZID=X:20260101T000000") is None
    assert parse.plain_dtstamp(b"DTSTAMP:20261341T000000Z") is None
    assert parse.dtstamp_lines(BODY) == {b"DTSTAMP:20260101T000000Z"}
    assert parse.stamps_uniform(BODY)
    assert not parse.stamps_uniform(BODY.replace(b"20260101T", b"20250101T", 1))


def test_components_are_split_where_the_vevents_are() -> None:
    spans = parse.vevent_spans(BODY)
    assert spans is not None and [BODY[s:e] for s, e in spans] == [EVENT, EVENT]
    assert parse.plain_vevent_spans(BODY) == spans
    assert parse.split_vevents(BODY) == [EVENT, EVENT]
    assert parse.split_vevents(BODY.replace(b"END:VEVENT", b"END:VTODO", 1)) is None
    lower = BODY.replace(b"BEGIN:VEVENT", b"begin:vevent", 1)
    assert parse.split_vevents(lower) is not None and parse.plain_vevent_spans(lower) is None
    context = parse.cut(BODY, spans)
    assert context == b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n\n\nEND:VCALENDAR"
    assert parse.only_calendar_components(context)
    assert not parse.only_calendar_components(context.replace(b"VERSION", b"BEGIN:VTODO"))


def test_fingerprint_ignores_dtstamp_folding_and_line_endings_only() -> None:
    base = parse.fingerprint_block(EVENT)
    assert parse.fingerprint_block(EVENT.replace(b"20260101T000000Z", b"20991231T235959Z")) == base
    assert parse.fingerprint_block(EVENT.replace(b"\r\n", b"\n")) == base
    assert parse.fingerprint_block(EVENT.replace(b"Ada (X)", b"Ada\r\n  (X)")) == base
    assert parse.fingerprint_block(EVENT.replace(b"Ada (X)", b"Ad\r\n a (X)")) == base
    assert parse.fingerprint_block(EVENT.replace(b"Ada", b"Eve")) != base
    assert parse.fingerprint_lines(EVENT)[1] == b"SUMMARY:Ada (X)"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=200), st.integers(10, 80), st.integers(10, 80))
def test_refolding_anywhere_keeps_the_text_and_the_fingerprint(
    text: str, first: int, second: int
) -> None:
    line = b"SUMMARY:" + text.replace("\r", "").replace("\n", "").encode()
    event = b"BEGIN:VEVENT\r\n" + line + b"\r\nUID:u\r\nEND:VEVENT\r\n"
    a, b = refold_octets(event, first), refold_octets(event, second)
    assert (
        parse.fingerprint_block(a) == parse.fingerprint_block(b) == parse.fingerprint_block(event)
    )
    assert parse.decode(parse.unfold(a)).text == parse.decode(event).text


def test_body_fingerprint_masks_the_stamp() -> None:
    first = parse.body_fingerprint(BODY)
    later = parse.body_fingerprint(BODY.replace(b"20260101T000000Z", b"20260102T000000Z"))
    assert first.fingerprint == later.fingerprint and later.usable
    assert later.dtstamp == "2026-01-02T00:00:00+00:00"
    folded = parse.body_fingerprint(BODY.replace(b"DTSTAMP:2026", b"DTSTAMP:2026\r\n "))
    assert not folded.usable and folded.dtstamp is None


# --- unfolding as icalendar does ---------------------------------------------------------

FOLD_PIECES = [b"\r\n", b"\n", b"\r", b" ", b"\t", b"A:", b"x", b"\xc3", b"\xa9", b"\xff"]


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(FOLD_PIECES), max_size=40))
def test_unfold_is_icalendars_unfolding(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    # icalendar unfolds text; latin-1 maps each byte to one character and back
    reference = UFOLD.sub("", data.decode("latin-1")).encode("latin-1")
    assert parse.unfold(data) == reference
    assert parse.unfolds_to_utf8(data) == (parse.decode(reference).bad_at is None)


def test_a_fold_inside_a_character_is_valid_utf8_once_unfolded() -> None:
    assert parse.unfolds_to_utf8("SUMMARY:é".encode()[:-1] + b"\r\n " + "é".encode()[-1:])
    assert not parse.unfolds_to_utf8(b"SUMMARY:\xc3\r\n x")
