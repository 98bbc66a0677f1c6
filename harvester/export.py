"""Serialisers for `harvester export`: JSON, CSV and iCalendar (harvester.calendars)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from typing import Any

from defusedcsv import csv

from harvester.archive import EXPORT_FIELDS

FORMATS = ("json", "csv", "ics")


def to_json(talks: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(talks), ensure_ascii=False, indent=2) + "\n"


# defusedcsv prefixes a quote to cells starting with = + - @ | % (not numbers); a spreadsheet
# also takes a cell starting with a tab or a CR as a formula's start, so those get it too.
_TAB_OR_CR = ("\t", "\r")
# What a spreadsheet skips before a formula: a byte order mark, zero-width characters and
# spaces (defusedcsv looks at the first character only).
_SKIPPED = "\ufeff\u200b\u200c\u200d\u2060 \u00a0"
_FORMULA_STARTS = ("=", "+", "-", "@", "|", "%", *_TAB_OR_CR)


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that a spreadsheet will not run as a formula."""
    if isinstance(value, list):
        value = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, str):
        return value
    head = value.lstrip(_SKIPPED)  # defusedcsv judges the rest as it is
    if value.startswith(_TAB_OR_CR) or (head != value and head.startswith(_FORMULA_STARTS)):
        return "'" + value
    return value


def to_csv(talks: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    # CRLF (RFC 4180): before Python 3.12 a CR in a cell is quoted only when it is part of
    # the line terminator, and an unquoted CR breaks the row for every reader.
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS), lineterminator="\r\n")
    writer.writeheader()
    for talk in talks:
        writer.writerow({k: csv_cell(v) for k, v in talk.items()})
    return out.getvalue()


def to_ics(talks: Sequence[dict[str, Any]]) -> str:
    """The calendar of the talks, by the one renderer the Datasette `.ics` output uses too."""
    from harvester.calendars import render_calendar  # icalendar: only for this format

    return render_calendar(talks).decode("utf-8")


# RFC 5545 TEXT has no control characters but HTAB (line breaks are escaped as \n); XML 1.0
# (the Atom feed) has none but HTAB, LF and CR, and no U+FFFE/U+FFFF.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")


def clean_text(value: str) -> str:
    """Text for a calendar or a feed: CRLF and CR become LF, other control characters go."""
    return _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


class DefusedWriter:
    """Datasette's csv.writer (it calls only `writerow`), formula cells neutralised."""

    def __init__(self, file: Any, *args: Any, **kwargs: Any) -> None:
        self._writer = csv.writer(file, *args, **kwargs)

    def writerow(self, row: Any) -> Any:
        return self._writer.writerow([csv_cell(value) for value in row])


def render(talks: Sequence[dict[str, Any]], fmt: str) -> str:
    return {"json": to_json, "csv": to_csv, "ics": to_ics}[fmt](talks)
