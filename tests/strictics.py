"""A strict RFC 5545 reading of a calendar, stricter than icalendar's lenient parser.

`strict_events` fails on the first line that breaks the rules the harvester promises:
CRLF after every line, at most 75 octets a line, folds that do not split a UTF-8
character, no control characters, balanced components, and every VEVENT with UID,
DTSTAMP, DTSTART and DTEND. It returns each VEVENT's properties (name → unfolded value).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
REQUIRED = ("UID", "DTSTAMP", "DTSTART", "DTEND")


def physical_lines(body: bytes) -> list[bytes]:
    assert body.endswith(b"\r\n"), "the last line must end in CRLF"
    lines = body[:-2].split(b"\r\n")
    for number, line in enumerate(lines, 1):
        assert len(line) <= 75, f"line {number} has {len(line)} octets"
        assert not _CONTROL.search(line.replace(b"\t", b" ")), f"control character, line {number}"
        assert b"\t" not in line, f"tab in line {number}"
        line.decode("utf-8")  # a fold that split a character leaves a line that cannot decode
    return lines


def logical_lines(body: bytes) -> list[str]:
    logical: list[bytes] = []
    for line in physical_lines(body):
        if line.startswith(b" "):
            assert logical, "a continuation line before any content line"
            logical[-1] += line[1:]
        else:
            logical.append(line)
    return [line.decode("utf-8") for line in logical]


def strict_events(body: bytes) -> list[dict[str, str]]:
    lines = logical_lines(body)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    stack: list[str] = []
    events: list[dict[str, str]] = []
    for line in lines:
        name, _, value = line.partition(":")
        prop = name.split(";", 1)[0].upper()
        if prop == "BEGIN":
            stack.append(value)
            if value == "VEVENT":
                events.append({})
        elif prop == "END":
            assert stack and stack.pop() == value, f"unbalanced END:{value}"
        elif stack and stack[-1] == "VEVENT":
            assert prop not in events[-1] or prop in ("ATTENDEE", "COMMENT"), f"{prop} twice"
            events[-1][prop] = value
    assert not stack, "a component is not closed"
    for event in events:
        missing = [prop for prop in REQUIRED if prop not in event]
        assert not missing, f"{event.get('UID')}: no {missing}"
    return events
