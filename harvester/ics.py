"""The iCalendar lexer: content lines, folds, components, DTSTAMP and fingerprints (bytes).

Every rule about how an .ics body is cut into lines and components lives here, so that the
full parse and the fast path (parse.py) cut a body the same way. It reads no property but
what the fast path needs (UID, DTSTAMP: `scan`): icalendar is the one parser.

- **unfolding** (RFC 5545 §3.1) happens on bytes, before decoding: a fold may split a
  multi-byte UTF-8 character. `unfold` is the rule icalendar applies; `fingerprint_lines`
  keeps the first release's rule, which the archived fingerprints were made with.
- **decoding** (`decode`) is UTF-8 after unfolding; `clean_text` drops the C0 control
  characters other than tab and newline from a property's text before it is stored.
- **DTSTAMP** is the download time on researchseminars.org: fingerprints leave it out.

Pure functions; no icalendar.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

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
    cut = line.find(b":")
    if cut < 0:
        cut = len(line)
    semicolon = line.find(b";", 0, cut)
    name = line[: semicolon if semicolon >= 0 else cut]
    if b" " in name or b"\t" in name:
        name = name.replace(b" ", b"").replace(b"\t", b"")
    return name.upper()


# --- text ------------------------------------------------------------------------------------

# C0 controls but tab and newline.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f]")


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


def clean_text(text: str) -> str:
    """A property's text without C0 control characters other than tab and newline."""
    return _CONTROLS.sub("", text) if _CONTROLS.search(text) else text


def _iso_moment(match: re.Match[bytes] | None) -> str | None:
    """The ISO form of a matched year, month, day, hour, minute and second in UTC; None
    for no match or an impossible time."""
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return moment.isoformat()


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
    """The parse's ISO form of a plain UTC or floating DTSTAMP line; None for anything else."""
    return _iso_moment(_PLAIN_DTSTAMP.fullmatch(line))


def dtstamp_lines(text: bytes) -> set[bytes]:
    """Every distinct DTSTAMP line of `text` as icalendar would read it (raw, with folds)."""
    return {line[1:].removesuffix(b"\r") for line in _DTSTAMP_LINE.findall(text)}


def plain_dtstamp_line(text: bytes, start: int = 0, end: int | None = None) -> slice | None:
    """Where the first DTSTAMP line of `text[start:end]` is, from the LF before it to its
    LF; None when there is none. Its line may still be folded or not plain: see
    `continues` and `plain_dtstamp`.
    """
    end = len(text) if end is None else end
    at = text.find(_PLAIN_START, start, end)
    if at < 0:
        return None
    line_end = text.find(b"\n", at + 1, end)
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
    """`text` without the (sorted) spans (`text` itself when there are none)."""
    spans = list(spans)
    if not spans:
        return text
    pieces = []
    previous = 0
    for start, end in spans:
        pieces.append(text[previous:start])
        previous = end
    pieces.append(text[previous:])
    return b"".join(pieces)


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
    uids = stamps = 0
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
            stamps += 1
            if line not in stamps_seen:  # one download usually stamps all alike
                stamps_seen[line] = plain_dtstamp(line)
            dtstamp = stamps_seen[line]
        elif name == b"UID":
            uids += 1
            uid = _plain_uid(line)
        elif name in _COMPONENT_NAMES and 0 < index < last:
            return None  # a nested component, or one hidden by folding
        if not is_dtstamp(line):  # exactly what `fingerprint_block` keeps
            kept.append(line)
    fingerprint = fingerprint_of(kept)
    sure = uids == 1 and (stamps == 0 or (stamps == 1 and dtstamp is not None))
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
