"""Parse stage: an iCalendar body → talk records (pure, no I/O). icalendar is the one parser.

researchseminars.org puts the speakers in SUMMARY and everything else (title, talk page,
series name, livestream, room, abstract, comments) in DESCRIPTION; other calendars still
archive, with the title taken from SUMMARY.

**The fast path** (`parse_body`). researchseminars.org rewrites DTSTAMP on every download
and sends no validators, so every poll brings a body whose bytes differ from the last one.
Two levels find what did not change, and icalendar reads only what did:

1. **The body.** `body_fingerprint` hashes the body with its DTSTAMP line masked
   wherever it occurs (a few ms for 2 MB; the site stamps every event of a download
   alike). Equal to the last successful poll's, and the archive still as that poll left
   it, the poll is `unchanged` with no parse at all (the sync asks the archive first).
2. **The events.** Otherwise `parse_fast` splits the body into its VEVENT blocks
   (`scan`: where `split_vevents` cuts, each block fingerprinted without its
   DTSTAMP, folding, line endings and blank lines, and its UID and DTSTAMP read from its
   unfolded lines). A block whose UID and fingerprint the archive has (active) is a
   `KnownTalk`; icalendar parses only the others, a few hundred at a time, in the
   calendar around them. A body that differs from the last only in folding or line
   endings costs no event parse either.

The result is exactly what `parse_feed` and the diff would make of the body. Whenever that
is not certain, the body takes the full parse (`parse_feed`) instead: any component other
than VCALENDAR and VEVENT, a BEGIN/END line that is not plain (lower case, trailing blanks,
folded or hidden by folding), invalid UTF-8, stray CRs, a UID seen twice, or an icalendar
result that does not line up with the blocks.

**The lexer** (the first part below) cuts a body into content lines and components on
bytes, the same way for the full parse and the fast path, and reads nothing but what the
fast path needs (UID and DTSTAMP, `scan`):

- **unfolding** (RFC 5545 §3.1) happens on bytes, before decoding: a fold may split a
  multi-byte UTF-8 character. `unfold` is the rule icalendar applies; `fingerprint_lines`
  keeps the first release's rule, which the archived fingerprints were made with.
- **decoding** (`decode`) is UTF-8 after unfolding; `model.clean_text` drops the C0 control
  characters other than tab and newline from a property's text before it is stored.
- **DTSTAMP** is the download time on researchseminars.org: fingerprints leave it out.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from harvester.errors import ParseError
from harvester.model import KnownTalk, TalkRecord, clean_text, masked
from harvester.site import http_url
from harvester.sitetext import site_fields, uid_parts

if TYPE_CHECKING:  # icalendar is imported when a body needs it: most polls need none
    from concurrent.futures import Executor

    import icalendar

T = TypeVar("T")


# --- folds and lines -----------------------------------------------------------------------

# icalendar's fold: a line break (not itself after a line break), then any line breaks,
# then a blank.
_PARSER_FOLD = re.compile(rb"(?:(?<!\n)\r\n|(?<![\r\n])\n)(?:\r?\n)*[ \t]")
# The fingerprint's fold: one line break, then a blank.
_FOLD = re.compile(rb"\r?\n[ \t]")
_LINE_BREAK = re.compile(rb"\r\n|\n|\r")
_CONTINUATION = (b" ", b"\t")


def unfold(data: bytes) -> bytes:
    """`data` with every fold taken out, exactly as icalendar unfolds (but on bytes)."""
    if not _plainly_folded(data):
        return _PARSER_FOLD.sub(b"", data)
    # Every fold is then one line break and one blank, and taking one out makes no other.
    if b"\r" in data:
        data = data.replace(b"\r\n ", b"").replace(b"\r\n\t", b"")
    return data.replace(b"\n ", b"").replace(b"\n\t", b"")


_BLANK_LINE_FOLDS = (b"\n\n ", b"\n\n\t", b"\n\r\n ", b"\n\r\n\t")


def _plainly_folded(data: bytes) -> bool:
    """No stray CR (each one is in a CRLF) and no blank line before a continuation line."""
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return False
    return not any(fold in data for fold in _BLANK_LINE_FOLDS)


def unfolds_to_utf8(data: bytes) -> bool:
    """Whether `data` is valid UTF-8 once unfolded (`decode(unfold(data))` finds no bad
    byte). Valid UTF-8 stays valid when folds, whole ASCII characters, are taken out: only
    a body that is not valid as it is needs unfolding first."""
    if data.isascii():
        return True
    check = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:  # a piece at a time: no copy of a whole large body as text
        for start in range(0, len(data), _PIECE):
            check.decode(view[start : start + _PIECE], final=start + _PIECE >= len(data))
    except UnicodeDecodeError:
        return decode(unfold(data)).bad_at is None
    return True


_PIECE = 1 << 20


def continues(text: bytes, line_end: int) -> bool:
    """Whether the line break at `line_end` (an LF) is a fold: the next line goes on."""
    return text[line_end + 1 : line_end + 2] in _CONTINUATION


def unfolded_lines(block: bytes) -> list[bytes] | None:
    """The block's lines after unfolding, split on line breaks; None for an unusual block.

    The same lines as the fingerprint's general rule (and as icalendar unfolds), computed
    with plain byte operations: usual when every CR belongs to a CRLF and no blank line is
    followed by a continuation line. Otherwise None.
    """
    text = block.replace(b"\r\n", b"\n") if b"\r" in block else block
    if text.endswith(b"\r"):  # a block cut right before its final LF
        text = text[:-1]
    if b"\r" in text or (b"\n\n" in text and (b"\n\n " in text or b"\n\n\t" in text)):
        return None
    if b"\n " in text:
        text = text.replace(b"\n ", b"")
    if b"\t" in text and b"\n\t" in text:
        text = text.replace(b"\n\t", b"")
    return text.split(b"\n")


def property_name(line: bytes) -> bytes:
    """The name icalendar reads from a content line: up to `:` or `;`, blanks dropped."""
    name = line.partition(b":")[0].partition(b";")[0]
    if b" " in name or b"\t" in name:
        name = name.replace(b" ", b"").replace(b"\t", b"")
    return name.upper()


# --- text ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    text: str
    bad_at: int | None  # the offset of the first invalid UTF-8 byte, replaced; None if valid


def decode(unfolded: bytes) -> Decoded:
    """Unfolded bytes → text: UTF-8, invalid bytes replaced (and the first one's offset)."""
    try:
        return Decoded(unfolded.decode("utf-8"), None)
    except UnicodeDecodeError as exc:
        return Decoded(unfolded.decode("utf-8", "replace"), exc.start)


# --- DTSTAMP ---------------------------------------------------------------------------------

# A line icalendar reads as a DTSTAMP (any case, blanks in the name), with any
# continuation lines, from the line break before it.
_DTSTAMP_LINE = re.compile(
    rb"\n(?i:D[ \t]*T[ \t]*S[ \t]*T[ \t]*A[ \t]*M[ \t]*P)[ \t]*[:;][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*"
)
_PLAIN_DTSTAMP = re.compile(
    rb"DTSTAMP(?:;VALUE=DATE-TIME)?:(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z?"
)
# Where a plain DTSTAMP line starts, from the line break before it.
_PLAIN_START = b"\nDTSTAMP"
# What a DTSTAMP line is replaced by in a fingerprint: no calendar has NUL bytes.
DTSTAMP_MARK = b"\n\0DTSTAMP\0"


def is_dtstamp(line: bytes) -> bool:
    """Whether an unfolded line is a DTSTAMP line, as the fingerprint decides."""
    return line[:7].upper() == b"DTSTAMP" and line[7:8] in (b":", b";")


def plain_dtstamp(line: bytes) -> str | None:
    """The parse's ISO form of a plain UTC or floating DTSTAMP line; None for anything else
    (an impossible time too)."""
    match = _PLAIN_DTSTAMP.fullmatch(line)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC).isoformat()
    except ValueError:
        return None


def dtstamp_lines(text: bytes) -> set[bytes]:
    """Every distinct DTSTAMP line of `text` as icalendar would read it (raw, with folds)."""
    return {line[1:].removesuffix(b"\r") for line in _DTSTAMP_LINE.findall(text)}


def plain_dtstamp_line(text: bytes) -> slice | None:
    """Where the first DTSTAMP line of `text` is, from the LF before it to its LF; None
    when there is none. Its line may still be folded or not plain: see `continues` and
    `plain_dtstamp`.
    """
    at = text.find(_PLAIN_START)
    if at < 0:
        return None
    line_end = text.find(b"\n", at + 1)
    return slice(at, line_end if line_end >= 0 else -1)


# --- fingerprints ----------------------------------------------------------------------------


def fingerprint_lines(block: bytes) -> list[bytes]:
    """The unfolded lines a fingerprint covers: no blank lines, no DTSTAMP."""
    lines = unfolded_lines(block)
    if lines is None:  # the general rule, for blocks with stray CRs or blank-line folds
        lines = _LINE_BREAK.split(_FOLD.sub(b"", block))
    return [line for line in lines if line.strip() and not is_dtstamp(line)]


def fingerprint_of(lines: Iterable[bytes]) -> str:
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


def fingerprint_block(block: bytes) -> str:
    """A hash of one VEVENT that ignores DTSTAMP, line folding, line endings and blank lines."""
    return fingerprint_of(fingerprint_lines(block))


@dataclass(frozen=True)
class BodyPrint:
    fingerprint: str  # sha256 of the body with its DTSTAMP lines masked
    dtstamp: str | None  # the value of its first DTSTAMP line, as the parse gives it
    usable: bool  # that line is one plain line, or there is no DTSTAMP at all


def body_fingerprint(text: bytes) -> BodyPrint:
    """Fingerprint `text` (a body after `check_calendar_bytes`) without its DTSTAMP values.

    Every copy of the body's first DTSTAMP line (the site stamps each event of a download
    alike) becomes a fixed mark: two bodies with equal fingerprints have the same bytes
    but for that line, in the same places. Other DTSTAMP lines stay, so a body stamped
    unevenly never equals another; `stamps_uniform` tells whether a body was even.
    """
    where = plain_dtstamp_line(text)
    if where is None or where.stop < 0 or continues(text, where.stop):
        return BodyPrint(hashlib.sha256(text).hexdigest(), None, usable=where is None)
    line = text[where.start : where.stop + 1]
    fingerprint = hashlib.sha256(text.replace(line, DTSTAMP_MARK)).hexdigest()
    dtstamp = plain_dtstamp(line[1:].rstrip(b"\r\n"))
    return BodyPrint(fingerprint, dtstamp, usable=dtstamp is not None)


def stamps_uniform(text: bytes) -> bool:
    """Whether every DTSTAMP line of `text` is the same plain line (or there is none)."""
    lines = dtstamp_lines(text)
    return len(lines) == 0 or (len(lines) == 1 and plain_dtstamp(lines.pop()) is not None)


# --- components ------------------------------------------------------------------------------

_COMPONENT_LINE = re.compile(
    rb"^(BEGIN|END):([A-Za-z0-9-]+)[ \t]*\r?$", re.MULTILINE | re.IGNORECASE
)
# A line that starts with BEGIN: or END:, from the line break before it.
_RAW_COMPONENT_LINE = re.compile(rb"\n(?i:BEGIN|END):")
CALENDAR_START = (b"BEGIN:VCALENDAR\r\n", b"BEGIN:VCALENDAR\n")
CALENDAR_END = b"\nEND:VCALENDAR"
_COMPONENT_NAMES = (b"BEGIN", b"END")


def calendar_count(body: bytes) -> int:
    """How many `BEGIN:VCALENDAR` lines `body` has (one, for a feed)."""
    return sum(
        1
        for match in _COMPONENT_LINE.finditer(body)
        if match[1].upper() == b"BEGIN" and match[2].upper() == b"VCALENDAR"
    )


def split_vevents(body: bytes) -> list[bytes] | None:
    """The raw text of each VEVENT directly inside the VCALENDAR, in order.

    None when the BEGIN/END structure is not what a single well-formed calendar has.
    """
    spans = vevent_spans(body)
    return None if spans is None else [body[start:end] for start, end in spans]


def vevent_spans(body: bytes) -> list[tuple[int, int]] | None:
    """Where `split_vevents` cuts `body`: (start, end) of each VEVENT, or None."""
    spans: list[tuple[int, int]] = []
    stack: list[bytes] = []
    start = 0
    for match in _COMPONENT_LINE.finditer(body):
        kind, name = match.group(1).upper(), match.group(2).upper()
        if kind == b"BEGIN":
            stack.append(name)
            if stack == [b"VCALENDAR", b"VEVENT"]:
                start = match.start()
        else:
            if not stack or stack[-1] != name:
                return None
            if stack == [b"VCALENDAR", b"VEVENT"]:
                spans.append((start, match.end()))
            stack.pop()
    return spans if not stack else None


def plain_vevent_spans(text: bytes) -> list[tuple[int, int]] | None:
    """Where `split_vevents` cuts `text`, when every raw component line is plain.

    A plain component line is what the splitter and icalendar both read the same way:
    upper case, nothing after the name, not continued on a folded line.
    """
    if not text.startswith(CALENDAR_START) or not text.endswith(CALENDAR_END):
        return None
    starts = [m.start() + 1 for m in _RAW_COMPONENT_LINE.finditer(text)]
    if len(starts) % 2 == 0 or starts[-1] != len(text) - len(CALENDAR_END) + 1:
        return None
    spans = []
    for i in range(0, len(starts) - 1, 2):
        begin_end = _plain_line_end(text, starts[i], b"BEGIN:VEVENT")
        end = _plain_line_end(text, starts[i + 1], b"END:VEVENT")
        if begin_end is None or end is None:
            return None
        spans.append((starts[i], end))
    return spans


def _plain_line_end(text: bytes, start: int, expected: bytes) -> int | None:
    """Where the component line at `start` ends (before its LF), if it is exactly `expected`."""
    end = start + len(expected)
    if text[start:end] != expected:
        return None
    if text[end : end + 1] == b"\r":
        end += 1
    if text[end : end + 1] != b"\n" or continues(text, end):
        return None
    return end


def only_calendar_components(context: bytes) -> bool:
    """True when BEGIN:VCALENDAR and END:VCALENDAR are the context's only component lines."""
    lines = unfolded_lines(context)
    if lines is None:
        return False
    names = [property_name(line) for line in lines if line[:3].upper() in (b"BEG", b"END")]
    return [name for name in names if name in _COMPONENT_NAMES] == [b"BEGIN", b"END"]


def cut(text: bytes, spans: Iterable[tuple[int, int]]) -> bytes:
    """`text` without the (sorted) spans."""
    bounds = [0, *itertools.chain.from_iterable(spans), len(text)]
    pairs = zip(bounds[::2], bounds[1::2], strict=True)
    return b"".join(text[start:end] for start, end in pairs)


def uids(body: bytes) -> list[str]:
    """The UID of each VEVENT of a well-formed body, in order (empty when it is not one)."""
    found = []
    for block in split_vevents(body) or []:
        for line in unfolded_lines(block) or []:
            if property_name(line) == b"UID":
                found.append(line.partition(b":")[2].decode("utf-8", "replace").strip())
                break
    return found


# --- the blocks of a body, as the fast path sees them ------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """One VEVENT of the body as the scan sees it."""

    start: int
    end: int  # text[start:end] is the block `split_vevents` gives
    fingerprint: str
    uid: str | None  # None when only icalendar can tell (then the block is parsed)
    dtstamp: str | None


def scan(text: bytes) -> list[Block] | None:
    """The VEVENT blocks of `text` with fingerprint, UID and DTSTAMP; None when in doubt.

    Two views of the body must agree: its raw component lines (where `split_vevents`
    cuts, all of them plain) and its unfolded lines (what icalendar reads).
    """
    spans = plain_vevent_spans(text)
    if spans is None:
        return None
    stamps_seen: dict[bytes, str | None] = {}
    blocks: list[Block] = []
    for start, end in spans:
        block = _scan_block(text[start:end], start, end, stamps_seen)
        if block is None:
            return None
        blocks.append(block)
    if not only_calendar_components(cut(text, spans)):
        return None
    return blocks


def _scan_block(
    raw: bytes, start: int, end: int, stamps_seen: dict[bytes, str | None]
) -> Block | None:
    lines = unfolded_lines(raw)
    if lines is None:
        return None
    kept = []
    uid: str | None = None
    uid_lines = stamp_lines = 0
    dtstamp = None
    last = len(lines) - 1
    for index, line in enumerate(lines):
        if line.startswith(_PLAIN_NAMES):
            kept.append(line)
            continue
        if not line.strip():
            continue
        name = property_name(line)
        if name == b"DTSTAMP":
            stamp_lines += 1
            if line not in stamps_seen:  # one download usually stamps all alike
                stamps_seen[line] = plain_dtstamp(line)
            dtstamp = stamps_seen[line]
        elif name == b"UID":
            uid_lines += 1
            uid = _plain_uid(line)
        elif name in _COMPONENT_NAMES and 0 < index < last:
            return None  # a nested component, or one hidden by folding
        if not is_dtstamp(line):  # exactly what `fingerprint_block` keeps
            kept.append(line)
    fingerprint = fingerprint_of(kept)
    sure = uid_lines == 1 and (stamp_lines == 0 or (stamp_lines == 1 and dtstamp is not None))
    return Block(start, end, fingerprint, uid if sure else None, dtstamp)


# Lines whose property name is surely none of UID, DTSTAMP, BEGIN, END: kept as they are.
_PLAIN_NAMES = (b"SUMMARY", b"DTSTART", b"DTEND", b"DESCRIPTION", b"LOCATION", b"URL", b"X-")


def _plain_uid(line: bytes) -> str | None:
    """The UID as the parse gives it, for a line without parameters or escapes."""
    colon = line.find(b":")
    if colon != 3 or b"\\" in line:
        return None
    try:
        uid = clean_text(line[4:].decode("utf-8")).strip()
    except UnicodeDecodeError:
        return None
    return uid or None


# --- the parse ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedFeed:
    talks: list[TalkRecord]
    warnings: list[str] = field(default_factory=list)
    events: int = 0  # VEVENTs in the body, including skipped ones
    # The fast path's events that the archive already has, unparsed (`parse_fast`).
    known: list[KnownTalk] = field(default_factory=list)
    skimmed: bool = False  # by the fast path: `talks` are only the events the archive lacks


# --- the whole body ----------------------------------------------------------------------

CHUNK = 500  # events icalendar parses at once: its tree of a whole large feed is huge


def check_calendar_bytes(body: bytes) -> bytes:
    """Refuse bodies that cannot be a calendar, with a reason a person understands."""
    text = body.removeprefix(b"\xef\xbb\xbf").strip()
    if not text:
        raise ParseError("empty body, not a calendar")
    if b"\x00" in text:
        raise ParseError("body contains NUL bytes, not a calendar")
    if not text[:15].upper().startswith(b"BEGIN:VCALENDAR"):
        start = text[:40].decode("utf-8", "replace").splitlines()[0]
        kind = "an HTML page" if start.lstrip().startswith("<") else "not a calendar"
        raise ParseError(f"{kind}: body starts with {start!r}")
    return text


def parse_feed(body: bytes) -> ParsedFeed:
    """Every VEVENT of a complete VCALENDAR as a talk record; raise ParseError otherwise."""
    text = check_calendar_bytes(body)
    warnings: list[str] = []
    bad_at = None if unfolds_to_utf8(text) else decode(unfold(text)).bad_at
    if bad_at is not None:
        warnings.append(f"invalid UTF-8 at byte {bad_at}; replaced")
        text = text.decode("utf-8", "replace").encode("utf-8")
    head = list(warnings)
    try:
        count, events = _events_in_chunks(text)
        talks = records_in_order(events, warnings)
    except MisreadError:  # the reference way, with a tree of the whole calendar
        warnings = list(head)
        at_once = _events_at_once(text, warnings)
        count, talks = len(at_once), records_in_order(at_once, warnings)
    return ParsedFeed(talks=talks, warnings=warnings, events=count)


Event = tuple["icalendar.cal.Component", bytes, int]  # (event, its raw block, its position)


class MisreadError(Exception):
    """icalendar does not see exactly the VEVENT blocks the lexer cut."""


def _events_at_once(text: bytes, warnings: list[str]) -> list[Event]:
    """The events of `text`, parsed by icalendar in one go (the reference, for odd bodies)."""
    try:
        events = calendar_events(text)
    except ParseError as exc:
        events = _events_alone(text, exc, warnings)
    blocks = split_vevents(text)
    if blocks is None or len(blocks) != len(events):
        blocks = [event.to_ical() for event in events]
    return [(e, b, n) for n, (e, b) in enumerate(zip(events, blocks, strict=True), start=1)]


# The calendar the events are read in when the feed's own other parts cannot be read.
_BARE_CALENDAR = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-\r\nEND:VCALENDAR"  # as `calendar_of` wants it
)


def _events_alone(
    text: bytes, error: ParseError, warnings: list[str]
) -> list[icalendar.cal.Component]:
    """The VEVENTs of `text` read in a calendar of their own, when what surrounds them (a
    VTIMEZONE with an offset of 99 hours, say) is what icalendar cannot read: a warning,
    not a failed feed. `error` again when the events themselves are the trouble."""
    blocks = split_vevents(text)
    if not blocks or calendar_count(text) != 1:
        raise error
    try:
        events = calendar_events(calendar_of(_BARE_CALENDAR, blocks))
    except ParseError:
        raise error from None
    if len(events) != len(blocks):
        raise error
    reason = str(error).removeprefix("not one complete VCALENDAR: ")
    warnings.append(f"read the events without the calendar's other parts, unreadable ({reason})")
    return events


def _events_in_chunks(text: bytes) -> tuple[int, Iterator[Event]]:
    """How many events `text` has, and the events parsed `CHUNK` at a time; MisreadError
    when that is not sure (here or while they are read)."""
    spans = plain_vevent_spans(text)
    context = cut(text, spans) if spans else b""
    if not spans or unfolded_lines(context) is None:
        raise MisreadError  # no events, or lines the lexer and icalendar may read apart
    blocks = ((n, text[s:e]) for n, (s, e) in enumerate(spans, start=1))
    return len(spans), read_events(context, blocks)


def read_events(context: bytes, blocks: Iterable[tuple[int, bytes]]) -> Iterator[Event]:
    """icalendar's event of each block (position, raw VEVENT), read `CHUNK` at a time in
    the calendar `context` (a body with its VEVENT blocks cut out); MisreadError when
    icalendar does not see exactly those blocks. With no blocks, it still reads `context`.
    """
    chunks = _batched(blocks, CHUNK)
    for chunk in itertools.chain([next(chunks, ())], chunks):
        try:
            events = calendar_events(calendar_of(context, [raw for _, raw in chunk]))
        except ParseError:
            raise MisreadError from None
        if len(events) != len(chunk):
            raise MisreadError
        for event, (position, raw) in zip(events, chunk, strict=True):
            yield event, raw, position


def _batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


def calendar_of(context: bytes, blocks: Sequence[bytes]) -> bytes:
    """The calendar `context` (a body with its VEVENT blocks cut out) with `blocks` put back
    before its END:VCALENDAR line.
    """
    if not blocks:
        return context
    at = len(context) - len(CALENDAR_END) + 1
    return context[:at] + b"\n".join(blocks) + b"\n" + context[at:]


def calendar_events(text: bytes) -> list[icalendar.cal.Component]:
    """The VEVENTs directly inside the one VCALENDAR of `text` (icalendar's parse).

    The text is unfolded before it is decoded: a fold may split a UTF-8 character.
    """
    import icalendar

    decoded = decode(unfold(text)).text
    try:
        calendar = icalendar.Calendar.from_ical(decoded)
    except (ValueError, IndexError, KeyError) as exc:
        raise ParseError(f"not one complete VCALENDAR: {_first_line(exc)}") from None
    return [c for c in calendar.subcomponents if c.name == "VEVENT"]


def records_in_order(events: Iterable[Event], warnings: list[str]) -> list[TalkRecord]:
    """Talk records in body order; a later event with the same UID replaces an earlier one."""
    by_uid: dict[str, TalkRecord] = {}
    for event, block, position in events:
        record = talk_from_event(event, block, position, warnings)
        if record is None:
            continue
        if by_uid.pop(record.uid, None) is not None:  # the last one takes the last place
            warnings.append(f"event #{position}: duplicate UID {record.uid!r}; the last one wins")
        by_uid[record.uid] = record
    return list(by_uid.values())


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


# --- the fast path ----------------------------------------------------------------------

Lookup = Callable[[list[str]], Mapping[str, str]]
"""UIDs → the fingerprints the archive holds for those of them that are active."""


def parse_fast(text: bytes, lookup: Lookup) -> ParsedFeed | None:
    """`parse_feed` for a body after `check_calendar_bytes`, parsing only unknown events.

    None when the body must take the full parse instead (see the module's doc).
    """
    blocks = scan(text)
    if blocks is None:
        return None
    scanned = [b.uid for b in blocks if b.uid is not None]
    if _repeats(scanned):
        return None  # duplicate UIDs: the full parse decides which one wins
    archived = lookup(scanned)
    known = [b for b in blocks if _is_in(b, archived)]
    unknown = [(i, b) for i, b in enumerate(blocks, start=1) if not _is_in(b, archived)]
    # Known blocks are valid UTF-8 once unfolded: their fingerprints came from parsed
    # text. Anything else takes the full parse, which replaces it with a warning.
    if not unfolds_to_utf8(cut(text, [(b.start, b.end) for b in known])):
        return None
    parsed = _parse_unknown(text, cut(text, [(b.start, b.end) for b in blocks]), unknown)
    if parsed is None:
        return None
    records, warnings = parsed
    if _repeats([r.uid for r in records] + [b.uid for b in known]):
        return None  # a parsed event repeats a UID: the full parse decides which one wins
    return ParsedFeed(
        talks=records,
        warnings=warnings,
        events=len(blocks),
        known=[KnownTalk(b.uid, b.fingerprint, b.dtstamp) for b in known if b.uid],
        skimmed=True,
    )


Records = tuple[list[TalkRecord], list[str]]  # talk records, and the warnings of their parse


def _parse_unknown(text: bytes, context: bytes, unknown: list[tuple[int, Block]]) -> Records | None:
    """icalendar's records of the unknown blocks in body order, read in the calendar
    `context` around them; None when icalendar does not see exactly those blocks.

    With `MANY` unknown blocks or more, in another process when `other_processes` runs.
    """
    items = [(n, text[block.start : block.end], block.fingerprint) for n, block in unknown]
    if _workers is not None and len(items) >= MANY:
        from concurrent.futures.process import BrokenProcessPool

        try:
            found = _workers.get().submit(_records, context, items).result(_WORKER_DEADLINE_S)
        except TimeoutError:  # an OSError: before the next clause
            raise ParseError(f"icalendar took over {_WORKER_DEADLINE_S} s") from None
        # No worker to be had (no working sem_open, no processes left) or it died (killed,
        # out of memory): parse here.
        except (BrokenProcessPool, OSError, ImportError):
            return _records(context, items)
        # That process knows no secret: mask them here.
        return None if found is None else ([masked(r) for r in found[0]], found[1])
    return _records(context, items)


def _records(context: bytes, items: list[tuple[int, bytes, str]]) -> Records | None:
    """The records of the blocks (position, raw VEVENT, fingerprint) read in `context`."""
    warnings: list[str] = []
    records = []
    fingerprints = {position: fingerprint for position, _, fingerprint in items}
    try:
        for event, raw, position in read_events(context, ((n, raw) for n, raw, _ in items)):
            record = talk_from_event(event, raw, position, warnings, fingerprints[position])
            if record is not None:
                records.append(record)
    except MisreadError:
        return None
    return records, warnings


# A first sync is mostly icalendar's parse and the archive's writes: with the parse in other
# processes, one feed's parse runs while another's talks are written (docs/performance.md).
MANY = 100  # unknown events of one body worth another process
_WORKER_DEADLINE_S = 600


class _Workers:
    """Up to `count` spawned processes, the pool started when first needed (a sync that
    parses little never imports multiprocessing)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.lock = threading.Lock()
        self.pool: Executor | None = None

    def get(self) -> Executor:
        with self.lock:
            if self.pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                spawn = multiprocessing.get_context("spawn")  # a fork copies the threads' locks
                self.pool = ProcessPoolExecutor(self.count, mp_context=spawn)
            return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


_workers: _Workers | None = None


@contextmanager
def other_processes(count: int) -> Iterator[None]:
    """While the block runs, the events of bodies with `MANY` unknown events or more are
    parsed in up to `count` other processes."""
    global _workers
    _workers = workers = _Workers(count)
    try:
        yield
    finally:
        _workers = None
        workers.close()


def _is_in(block: Block, archived: Mapping[str, str]) -> bool:
    return block.uid is not None and archived.get(block.uid) == block.fingerprint


def _repeats(uids: Sequence[str | None]) -> bool:
    return len(set(uids)) != len(uids)


def parse_body(text: bytes, lookup: Lookup | None) -> ParsedFeed:
    """The fast path's reading of a body after `check_calendar_bytes`, or the full parse
    when the fast path is not certain of it (or `lookup` is None)."""
    fast = parse_fast(text, lookup) if lookup is not None else None
    return fast or parse_feed(text)


# --- one event ---------------------------------------------------------------------------


def talk_from_event(
    event: icalendar.cal.Component,
    block: bytes,
    position: int,
    warnings: list[str],
    fingerprint: str | None = None,
) -> TalkRecord | None:
    """One talk record, or None (with a warning naming the event) when it cannot be archived.

    `fingerprint` is `fingerprint_block(block)` when the caller has it already. Text
    fields hold no C0 control characters (`raw` keeps the block as received); URLs are
    kept only when they are http(s) URLs (`site.http_url`). Every secret the harvester
    knows is masked (the fingerprint, of the block as received, stays).
    """
    summary = _text(event, "SUMMARY")
    label = f"event #{position}" + (f" ({summary[:60]!r})" if summary else "")
    uid = _text(event, "UID")
    if not uid:
        warnings.append(f"{label} has no UID; skipped")
        return None
    label = f"event {uid!r}"
    try:
        dtstart = _time(event, "DTSTART")
        dtend = _time(event, "DTEND") or _end_from_duration(event)
        dtstamp = _time(event, "DTSTAMP")
    except (ValueError, OverflowError, TypeError) as exc:
        warnings.append(f"{label} has an unusable date ({_first_line(exc)}); skipped")
        return None
    if dtstart is None:
        warnings.append(f"{label} has no DTSTART; skipped")
        return None
    description, location = _text(event, "DESCRIPTION"), _text(event, "LOCATION")
    series_id, counter = uid_parts(uid)
    site = site_fields(summary, description, location)
    record = TalkRecord(
        uid=uid,
        dtstart=dtstart,
        dtend=dtend,
        dtstamp=_shared(dtstamp),  # one download stamps every event alike
        fingerprint=fingerprint or fingerprint_block(block),
        raw=block.decode("utf-8", "replace"),
        summary=summary,
        description=description,
        location=location,
        urls=_urls(event),
        series_id=_shared(series_id),
        counter=counter,
        **(site or {"title": summary}),
    )
    return masked(record)


def _shared(text: str | None) -> str | None:
    """One string object for a value many records repeat (memory, for large feeds)."""
    return sys.intern(text) if text is not None else None


def _first(event: icalendar.cal.Component, name: str) -> Any:
    """The property's first occurrence (icalendar gives a list when it occurs twice)."""
    prop = event.get(name)
    return prop[0] if isinstance(prop, list) else prop


def _text(event: icalendar.cal.Component, name: str) -> str | None:
    """A TEXT value as stored: no C0 controls but tab and newline, no blanks around."""
    value = _first(event, name)
    return None if value is None else clean_text(str(value)).strip() or None


def _urls(event: icalendar.cal.Component) -> tuple[str, ...]:
    value = event.get("URL")
    values = value if isinstance(value, list) else [value] if value is not None else []
    return tuple(url for v in values if (url := http_url(str(v).strip())))


def _time(event: icalendar.cal.Component, name: str) -> str | None:
    prop = _first(event, name)
    return None if prop is None else iso_utc(prop.dt)


def iso_utc(value: object) -> str:
    """ISO 8601 in UTC with an explicit offset; a floating time is taken as UTC."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise ValueError(f"expected a date or date-time, got {type(value).__name__}")


def _end_from_duration(event: icalendar.cal.Component) -> str | None:
    duration, start = _first(event, "DURATION"), _first(event, "DTSTART")
    if duration is None or start is None:
        return None
    return iso_utc(start.dt + duration.dt)
