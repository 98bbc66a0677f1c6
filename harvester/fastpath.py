"""The fast path of the parse stage: skip the work that a poll with no change does not need.

researchseminars.org rewrites DTSTAMP on every download and sends no validators, so every
poll brings a body whose bytes differ from the last one. Two levels find what did not
change, without icalendar:

1. **The body.** `body_fingerprint` hashes the body with its DTSTAMP line masked
   wherever it occurs (a few ms for 2 MB; the site stamps every event of a download
   alike). Equal to the last successful poll's, and the archive still as that poll left
   it, the poll is `unchanged` with no parse at all (`store.record_unchanged_body`).
2. **The events.** Otherwise `parse_fast` splits the body into its VEVENT blocks (the
   blocks `parse.split_vevents` gives), fingerprints each (`parse.fingerprint_block`:
   DTSTAMP, folding, line endings and blank lines taken out) and reads its UID and DTSTAMP
   from the unfolded lines. A block whose UID and fingerprint the archive has (active) is a
   `KnownTalk`; only the others go to icalendar, in a calendar that is the body with the
   known blocks cut out. A body that differs from the last only in folding or line endings
   thus costs no icalendar parse either. A block that is, byte for byte but for its
   DTSTAMP line, one the feed carried at its last poll (`feed_talks.raw_key`) is that
   block again and is not even unfolded.

The result is exactly what `parse.parse_feed` and the diff would make of the body. Whenever
that is not certain, the body takes the full parse instead: any component other than
VCALENDAR and VEVENT, a BEGIN/END line that is not plain (lower case, trailing blanks,
folded or hidden by folding), invalid UTF-8, stray CRs, a UID seen twice, or an icalendar
result that does not line up with the blocks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from harvester import workers
from harvester.errors import ParseError
from harvester.model import KnownTalk, TalkRecord
from harvester.parse import ParsedFeed, calendar_events, is_dtstamp, talk_from_event, unfolded_lines

# --- level 1: the body --------------------------------------------------------------------

# A line icalendar reads as a DTSTAMP (any case, blanks in the name), with any
# continuation lines, from the line break before it.
_DTSTAMP_LINE = re.compile(
    rb"\n(?i:D[ \t]*T[ \t]*S[ \t]*T[ \t]*A[ \t]*M[ \t]*P)[ \t]*[:;][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*"
)
# What a DTSTAMP line is replaced by in a fingerprint: no calendar has NUL bytes.
_DTSTAMP_MARK = b"\n\0DTSTAMP\0"


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
    at = text.find(b"\nDTSTAMP")
    end = text.find(b"\n", at + 1) if at >= 0 else -1
    if at < 0 or end < 0 or text[end + 1 : end + 2] in (b" ", b"\t"):
        return BodyPrint(hashlib.sha256(text).hexdigest(), None, usable=at < 0)
    line = text[at : end + 1]
    fingerprint = hashlib.sha256(text.replace(line, _DTSTAMP_MARK)).hexdigest()
    dtstamp = _plain_dtstamp(line[1:].rstrip(b"\r\n"))
    return BodyPrint(fingerprint, dtstamp, usable=dtstamp is not None)


def stamps_uniform(text: bytes) -> bool:
    """Whether every DTSTAMP line of `text` is the same plain line (or there is none)."""
    lines = set(_DTSTAMP_LINE.findall(text))
    return len(lines) == 0 or (
        len(lines) == 1 and _plain_dtstamp(lines.pop()[1:].removesuffix(b"\r")) is not None
    )


_PLAIN_DTSTAMP = re.compile(
    rb"DTSTAMP(?:;VALUE=DATE-TIME)?:(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z?"
)


def _plain_dtstamp(line: bytes) -> str | None:
    """The parse's ISO form of a plain UTC or floating DTSTAMP line; None for anything else."""
    match = _PLAIN_DTSTAMP.fullmatch(line)
    if not match:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return moment.isoformat()


# --- level 2: the events ------------------------------------------------------------------

# A line that starts with BEGIN: or END:, from the line break before it.
_COMPONENT_LINE = re.compile(rb"\n(?i:BEGIN|END):")
_CALENDAR_START = (b"BEGIN:VCALENDAR\r\n", b"BEGIN:VCALENDAR\n")
_CALENDAR_END = b"\nEND:VCALENDAR"


@dataclass(frozen=True)
class Block:
    """One VEVENT of the body as the scan sees it."""

    start: int
    end: int  # text[start:end] is the block `split_vevents` gives
    fingerprint: str
    uid: str | None  # None when only icalendar can tell (then the block is parsed)
    dtstamp: str | None
    raw_key: str  # its raw bytes without the DTSTAMP line: equal means same block again


Carried = Mapping[str, tuple[str, str]]
"""raw_key → (uid, fingerprint) of the blocks the feed carried at its last poll that the
scan read with certainty (`feed_talks.raw_key`)."""


def scan(text: bytes, carried: Carried | None = None) -> list[Block] | None:
    """The VEVENT blocks of `text` with fingerprint, UID and DTSTAMP; None when in doubt.

    Two views of the body must agree: its raw component lines (where `split_vevents`
    cuts, all of them plain) and its unfolded lines (what icalendar reads). A block whose
    raw bytes (DTSTAMP aside) are a block the feed carried last time is that block again:
    it is not unfolded and read again.
    """
    if not text.startswith(_CALENDAR_START) or not text.endswith(_CALENDAR_END):
        return None
    spans = _raw_blocks(text)
    if spans is None:
        return None
    carried = carried or {}
    stamps_seen: dict[bytes, str | None] = {}
    blocks: list[Block] = []
    view = memoryview(text)
    for start, end in spans:
        raw_key, stamp = _raw_key(text, view, start, end)
        again = carried.get(raw_key)
        if again is not None and stamp is not False:
            dtstamp = _seen_dtstamp(stamp, stamps_seen) if isinstance(stamp, bytes) else None
            if stamp is None or dtstamp is not None:
                blocks.append(Block(start, end, again[1], again[0], dtstamp, raw_key))
                continue
        block = _scan_block(text[start:end], start, end, raw_key, stamps_seen)
        if block is None:
            return None
        blocks.append(block)
    if _hidden_component(_cut(text, blocks)):
        return None
    return blocks


def _raw_key(
    text: bytes, view: memoryview, start: int, end: int
) -> tuple[str, bytes | bool | None]:
    """A hash of the raw block `text[start:end]` with its DTSTAMP line masked, and that line.

    The line is None when there is none, False when it is not one plain line (folded,
    or several): such a block is then always read in full.
    """
    at = text.find(b"\nDTSTAMP", start, end)
    if at < 0:
        return hashlib.sha256(view[start:end]).hexdigest(), None
    line_end = text.find(b"\n", at + 1, end)
    if line_end < 0 or text[line_end + 1 : line_end + 2] in (b" ", b"\t"):
        return hashlib.sha256(view[start:end]).hexdigest(), False
    digest = hashlib.sha256(view[start:at])
    digest.update(_DTSTAMP_MARK)
    digest.update(view[line_end:end])
    if text.find(b"\nDTSTAMP", line_end, end) >= 0:
        return digest.hexdigest(), False
    return digest.hexdigest(), text[at + 1 : line_end].removesuffix(b"\r")


def _seen_dtstamp(line: bytes, seen: dict[bytes, str | None]) -> str | None:
    """`_plain_dtstamp`, once per distinct line: one download usually stamps all alike."""
    if line not in seen:
        seen[line] = _plain_dtstamp(line)
    return seen[line]


def _scan_block(
    raw: bytes, start: int, end: int, raw_key: str, stamps_seen: dict[bytes, str | None]
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
        name = _property_name(line)
        if name == b"DTSTAMP":
            stamps += 1
            dtstamp = _seen_dtstamp(line, stamps_seen)
        elif name == b"UID":
            uids += 1
            uid = _plain_uid(line)
        elif name in _COMPONENT and 0 < index < last:
            return None  # a nested component, or one hidden by folding
        if not is_dtstamp(line):  # exactly what `fingerprint_block` keeps
            kept.append(line)
    fingerprint = hashlib.sha256(b"\n".join(kept)).hexdigest()
    sure = uids == 1 and (stamps == 0 or (stamps == 1 and dtstamp is not None))
    return Block(start, end, fingerprint, uid if sure else None, dtstamp, raw_key)


def _hidden_component(context: bytes) -> bool:
    """True unless BEGIN:VCALENDAR and END:VCALENDAR are the context's only component lines."""
    lines = unfolded_lines(context)
    if lines is None:
        return True
    names = [_property_name(line) for line in lines if line[:3].upper() in (b"BEG", b"END")]
    return [name for name in names if name in _COMPONENT] != [b"BEGIN", b"END"]


_COMPONENT = (b"BEGIN", b"END")
# Lines whose property name is surely none of UID, DTSTAMP, BEGIN, END: kept as they are.
_PLAIN_NAMES = (b"SUMMARY", b"DTSTART", b"DTEND", b"DESCRIPTION", b"LOCATION", b"URL", b"X-")


def _raw_blocks(text: bytes) -> list[tuple[int, int]] | None:
    """Where `split_vevents` cuts `text`, when every raw component line is plain."""
    starts = [m.start() + 1 for m in _COMPONENT_LINE.finditer(text)]
    if len(starts) % 2 == 0 or starts[-1] != len(text) - len(_CALENDAR_END) + 1:
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
    """Where the component line at `start` ends (before its LF), if it is exactly `expected`.

    A plain component line is what the splitter and icalendar both read the same way:
    upper case, nothing after the name, not continued on a folded line.
    """
    end = start + len(expected)
    if text[start:end] != expected:
        return None
    if text[end : end + 1] == b"\r":
        end += 1
    if text[end : end + 1] != b"\n" or text[end + 1 : end + 2] in (b" ", b"\t"):
        return None
    return end


def _property_name(line: bytes) -> bytes:
    """The name icalendar reads from a content line: up to `:` or `;`, blanks dropped."""
    cut = line.find(b":")
    if cut < 0:
        cut = len(line)
    semicolon = line.find(b";", 0, cut)
    name = line[: semicolon if semicolon >= 0 else cut]
    if b" " in name or b"\t" in name:
        name = name.replace(b" ", b"").replace(b"\t", b"")
    return name.upper()


def _plain_uid(line: bytes) -> str | None:
    """The UID as the parse gives it, for a line without parameters or escapes."""
    colon = line.find(b":")
    if colon != 3 or b"\\" in line:
        return None
    try:
        uid = line[4:].decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return uid or None


def _cut(text: bytes, blocks: Iterable[Block]) -> bytes:
    pieces = []
    previous = 0
    for block in blocks:
        pieces.append(text[previous : block.start])
        previous = block.end
    pieces.append(text[previous:])
    return b"".join(pieces)


# --- putting it together ------------------------------------------------------------------

Lookup = Callable[[list[str]], Mapping[str, str]]
"""UIDs → the fingerprints the archive holds for those of them that are active."""


def parse_fast(text: bytes, lookup: Lookup, carried: Carried | None = None) -> ParsedFeed | None:
    """`parse_feed` for a body after `check_calendar_bytes`, parsing only unknown events.

    None when the body must take the full parse instead (see the module's doc).
    """
    blocks = scan(text, carried)
    if blocks is None:
        return None
    uids = [b.uid for b in blocks if b.uid is not None]
    if len(set(uids)) != len(uids):
        return None  # duplicate UIDs: the full parse decides which one wins
    # A block the feed carried before is taken as known (the archive had it then; the
    # poll's transaction checks it still does). The others are looked up.
    archived: dict[str, str] = {
        b.uid: b.fingerprint for b in blocks if b.uid is not None and b.raw_key in (carried or {})
    }
    if len(archived) < len(uids):
        archived.update(lookup([u for u in uids if u not in archived]))
    known = [b for b in blocks if _is_in(b, archived)]
    unknown = [(i, b) for i, b in enumerate(blocks, start=1) if not _is_in(b, archived)]
    try:
        # Known blocks are valid UTF-8: their fingerprints came from parsed text.
        _cut(text, known).decode("utf-8")  # else the full parse replaces it, with a warning
    except UnicodeDecodeError:
        return None
    parsed = _parse_unknown(text, known, unknown)
    if parsed is None:
        return None
    records, warnings = parsed
    present = [r.uid for r in records] + [b.uid for b in known if b.uid is not None]
    if len(set(present)) != len(present):
        return None  # a parsed event repeats a UID: the full parse decides which one wins
    return ParsedFeed(
        talks=records,
        warnings=warnings,
        events=len(blocks),
        known=[KnownTalk(b.uid, b.fingerprint, b.dtstamp) for b in known if b.uid],
        raw_keys={b.uid: b.raw_key for b in blocks if b.uid is not None},
    )


Parsed = tuple[list[TalkRecord], list[str]]
Unknown = list[tuple[int, Block]]  # (position in the body, block)


def _parse_unknown(text: bytes, known: list[Block], unknown: Unknown) -> Parsed | None:
    """Records of the unknown blocks, parsed by icalendar in the calendar around them.

    Many of them: half goes to the worker process (workers.py) while this one parses the
    other half; the halves are joined in body order. None if icalendar disagrees.
    """
    pool = workers.parse_pool() if len(unknown) >= workers.MIN_EVENTS else None
    if pool is None:
        return parse_events(_cut(text, known), _items(text, unknown))
    first, second = unknown[: len(unknown) // 2], unknown[len(unknown) // 2 :]
    skip_first = sorted([*known, *(b for _, b in first)], key=lambda b: b.start)
    skip_second = sorted([*known, *(b for _, b in second)], key=lambda b: b.start)
    try:
        future = pool.submit(parse_events, _cut(text, skip_first), _items(text, second))
    except Exception:  # the pool cannot start or is broken: parse here
        return parse_events(_cut(text, known), _items(text, unknown))
    here = parse_events(_cut(text, skip_second), _items(text, first))
    try:
        there = future.result()
    except Exception:
        there = parse_events(_cut(text, skip_first), _items(text, second))
    if here is None or there is None:
        return None
    return here[0] + there[0], here[1] + there[1]


def _items(text: bytes, unknown: Unknown) -> list[tuple[int, bytes, str]]:
    return [(position, text[b.start : b.end], b.fingerprint) for position, b in unknown]


def parse_events(calendar: bytes, items: list[tuple[int, bytes, str]]) -> Parsed | None:
    """Talk records of the VEVENTs of `calendar`, which are the `items` (position, raw block,
    fingerprint) in order; None when icalendar does not see exactly those events.

    A top-level function: the worker process runs it too.
    """
    try:
        events = calendar_events(calendar)
    except ParseError:
        return None
    if len(events) != len(items):
        return None
    warnings: list[str] = []
    records = []
    for event, (position, raw, fingerprint) in zip(events, items, strict=True):
        record = talk_from_event(event, raw, position, warnings, fingerprint)
        if record is not None:
            records.append(record)
    return records, warnings


def _is_in(block: Block, archived: Mapping[str, str]) -> bool:
    return block.uid is not None and archived.get(block.uid) == block.fingerprint
