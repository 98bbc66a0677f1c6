"""Serialisers for `harvester export`: JSON, CSV and iCalendar."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import icalendar

from harvester import __version__
from harvester.archive import EXPORT_FIELDS

FORMATS = ("json", "csv", "ics")


def to_json(talks: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(talks), ensure_ascii=False, indent=2) + "\n"


def to_csv(talks: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS), lineterminator="\n")
    writer.writeheader()
    for talk in talks:
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                for k, v in talk.items()
            }
        )
    return out.getvalue()


def to_ics(talks: Sequence[dict[str, Any]]) -> str:
    """A calendar of the talks; DTSTAMP is when the archive last saw each version change."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", f"-//seminar-harvester {__version__}//EN")
    calendar.add("version", "2.0")
    for talk in talks:
        event = icalendar.Event()
        event.add("uid", talk["uid"])
        event.add("dtstamp", datetime.fromisoformat(talk["changed_at"]))
        event.add("dtstart", _when(talk["dtstart"]))
        if talk["dtend"]:
            event.add("dtend", _when(talk["dtend"]))
        event.add("summary", _summary(talk))
        for name in ("description", "location"):
            if talk[name]:
                event.add(name, talk[name])
        if talk["talk_url"]:
            event.add("url", talk["talk_url"])
        calendar.add_component(event)
    ical: bytes = calendar.to_ical()
    return ical.decode("utf-8")


def _when(value: str) -> Any:
    return datetime.fromisoformat(value) if "T" in value else datetime.fromisoformat(value).date()


def _summary(talk: dict[str, Any]) -> str:
    title, speaker = talk.get("title"), talk.get("speaker")
    if title and speaker and title != speaker:
        return f"{speaker}: {title}"
    return str(title or speaker or talk["uid"])


def render(talks: Sequence[dict[str, Any]], fmt: str) -> str:
    serialisers: dict[str, Callable[[Sequence[dict[str, Any]]], str]] = {
        "json": to_json,
        "csv": to_csv,
        "ics": to_ics,
    }
    return serialisers[fmt](talks)
