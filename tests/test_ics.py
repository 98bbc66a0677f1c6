"""The ICS lexer (ics.py): folds, decoding, DTSTAMP, components and fingerprints."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar.parser.content_line import UFOLD

from harvester import ics
from tests.sitesim import refold_octets

EVENT = (
    b"BEGIN:VEVENT\r\nSUMMARY:Ada (X)\r\nDTSTART:20300101T150000Z\r\n"
    b"DTSTAMP:20260101T000000Z\r\nUID:S/1\r\nEND:VEVENT\r"
)
BODY = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + EVENT + b"\n" + EVENT + b"\nEND:VCALENDAR"


def test_unfold_joins_continuation_lines_like_icalendar() -> None:
    assert ics.unfold(b"A:x\r\n y\r\n\tz\nB:1") == b"A:xyz\nB:1"
    assert ics.unfold(b"A:x\r\n\r\n y") == b"A:xy"  # a blank line before a fold, too
    assert ics.unfold(b"A:x\r\nB:y") == b"A:x\r\nB:y"


def test_a_fold_inside_a_utf8_character_decodes_after_unfolding() -> None:
    line = "SUMMARY:∂ Ünïcödé 🚀".encode()
    folded = line[:10] + b"\r\n " + line[10:]  # inside the three octets of ∂
    assert ics.decode(ics.unfold(folded)) == ics.Decoded(line.decode(), None)
    assert ics.decode(b"A:\xff").bad_at == 2


def test_clean_text_drops_c0_controls_but_tab_and_newline() -> None:
    assert ics.decode(b"A:a\x07b\r\n").text == "A:a\x07b\r\n"  # decoding keeps them
    assert ics.clean_text("x\x00\x01\x1f\ty\nz\x7f") == "x\ty\nz\x7f"


def test_dtstamp_lines() -> None:
    assert ics.is_dtstamp(b"DTSTAMP:20260101T000000Z") and ics.is_dtstamp(b"dtstamp;X=1:2")
    assert not ics.is_dtstamp(b"DTSTAMPX:1") and not ics.is_dtstamp(b"DTSTART:1")
    assert ics.property_name(b"D TSTAMP:1") == b"DTSTAMP" != ics.property_name(b"UID:1")
    assert ics.plain_dtstamp(b"DTSTAMP:20260101T000000Z") == "2026-01-01T00:00:00+00:00"
    assert ics.plain_dtstamp(b"DTSTAMP;TZID=X:20260101T000000") is None
    assert ics.plain_dtstamp(b"DTSTAMP:20261341T000000Z") is None
    assert ics.dtstamp_lines(BODY) == {b"DTSTAMP:20260101T000000Z"}
    assert ics.stamps_uniform(BODY)
    assert not ics.stamps_uniform(BODY.replace(b"20260101T", b"20250101T", 1))


def test_components_are_split_where_the_vevents_are() -> None:
    spans = ics.vevent_spans(BODY)
    assert spans is not None and [BODY[s:e] for s, e in spans] == [EVENT, EVENT]
    assert ics.plain_vevent_spans(BODY) == spans
    assert ics.split_vevents(BODY) == [EVENT, EVENT]
    assert ics.split_vevents(BODY.replace(b"END:VEVENT", b"END:VTODO", 1)) is None
    lower = BODY.replace(b"BEGIN:VEVENT", b"begin:vevent", 1)
    assert ics.split_vevents(lower) is not None and ics.plain_vevent_spans(lower) is None
    context = ics.cut(BODY, spans)
    assert context == b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n\n\nEND:VCALENDAR"
    assert ics.only_calendar_components(context)
    assert not ics.only_calendar_components(context.replace(b"VERSION", b"BEGIN:VTODO"))


def test_fingerprint_ignores_dtstamp_folding_and_line_endings_only() -> None:
    base = ics.fingerprint_block(EVENT)
    assert ics.fingerprint_block(EVENT.replace(b"20260101T000000Z", b"20991231T235959Z")) == base
    assert ics.fingerprint_block(EVENT.replace(b"\r\n", b"\n")) == base
    assert ics.fingerprint_block(EVENT.replace(b"Ada (X)", b"Ada\r\n  (X)")) == base
    assert ics.fingerprint_block(EVENT.replace(b"Ada (X)", b"Ad\r\n a (X)")) == base
    assert ics.fingerprint_block(EVENT.replace(b"Ada", b"Eve")) != base
    assert ics.fingerprint_lines(EVENT)[1] == b"SUMMARY:Ada (X)"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=200), st.integers(10, 80), st.integers(10, 80))
def test_refolding_anywhere_keeps_the_text_and_the_fingerprint(
    text: str, first: int, second: int
) -> None:
    line = b"SUMMARY:" + text.replace("\r", "").replace("\n", "").encode()
    event = b"BEGIN:VEVENT\r\n" + line + b"\r\nUID:u\r\nEND:VEVENT\r\n"
    a, b = refold_octets(event, first), refold_octets(event, second)
    assert ics.fingerprint_block(a) == ics.fingerprint_block(b) == ics.fingerprint_block(event)
    assert ics.decode(ics.unfold(a)).text == ics.decode(event).text


def test_body_fingerprint_masks_the_stamp() -> None:
    first = ics.body_fingerprint(BODY)
    later = ics.body_fingerprint(BODY.replace(b"20260101T000000Z", b"20260102T000000Z"))
    assert first.fingerprint == later.fingerprint and later.usable
    assert later.dtstamp == "2026-01-02T00:00:00+00:00"
    folded = ics.body_fingerprint(BODY.replace(b"DTSTAMP:2026", b"DTSTAMP:2026\r\n "))
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
    assert ics.unfold(data) == reference
    assert ics.unfolds_to_utf8(data) == (ics.decode(reference).bad_at is None)


def test_a_fold_inside_a_character_is_valid_utf8_once_unfolded() -> None:
    assert ics.unfolds_to_utf8("SUMMARY:é".encode()[:-1] + b"\r\n " + "é".encode()[-1:])
    assert not ics.unfolds_to_utf8(b"SUMMARY:\xc3\r\n x")
