"""The one calendar renderer: archived talks → a strict RFC 5545 calendar (pure, no I/O).

Used by `harvester export --format ics` and by Datasette's `.ics` output, so both give the
same events. Every VEVENT has UID, DTSTAMP (when the archive saw this version), DTSTART,
DTEND and SEQUENCE (the version, so calendar clients update a changed talk). SUMMARY is
"Title — Speaker", DESCRIPTION plain text. icalendar folds lines at 75 octets without
splitting a UTF-8 character and ends every line with CRLF; control characters are removed
before they get there. A rescheduled talk's old slot (negative counter) is left out, and
so are removed talks unless `keep_cancelled` keeps them as `STATUS:CANCELLED`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import icalendar

from harvester import __version__
from harvester.humane import parse_moment
from harvester.site import http_url

PRODID = f"-//seminar-harvester//{__version__}//EN"
DEFAULT_NAME = "researchseminars.org talks"
REFRESH = timedelta(hours=1)  # how often a client should fetch the calendar again
DEFAULT_LENGTH = timedelta(hours=1)  # a talk without DTEND
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but LF (escaped as \n)


def render_calendar(
    talks: Iterable[Mapping[str, Any]],
    *,
    name: str | None = None,
    keep_cancelled: bool = False,
) -> bytes:
    """A VCALENDAR of `talks` (rows with the `talks` fields, JSON fields decoded or not),
    named after their series if they have one, else `name`."""
    rows = list(talks)
    events = [event for talk in rows if (event := event_ical(talk, keep_cancelled))]
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", clean_text(_one_series(rows) or name or DEFAULT_NAME))
    calendar.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", icalendar.vDuration(REFRESH))  # PT1H, not "1:00:00"
    if not events:  # RFC 5545 wants one component at least: a filter may match no talk
        calendar.add_component(_utc_timezone())
    ical: bytes = calendar.to_ical()
    assert ical.endswith(_END)
    return ical[: -len(_END)] + b"".join(events) + _END


_END = b"END:VCALENDAR\r\n"
# The serialised VEVENT of each talk as last rendered (icalendar's folding is slow: a
# calendar of 1,000 talks takes half a second). Keyed by every field and the option, as
# JSON (what the archive's rows are made of), so a changed talk is rendered again.
EVENT_CACHE_SIZE = 20_000


def event_ical(talk: Mapping[str, Any], keep_cancelled: bool = False) -> bytes:
    """The VEVENT of one talk, serialised (b"" for a talk the calendar leaves out)."""
    return _event_of(
        json.dumps([keep_cancelled, sorted(talk.items())], default=str, ensure_ascii=False)
    )


@functools.lru_cache(maxsize=EVENT_CACHE_SIZE)
def _event_of(key: str) -> bytes:
    keep_cancelled, items = json.loads(key)
    event = talk_event(dict(items), keep_cancelled)
    return event.to_ical() if event is not None else b""


def _utc_timezone() -> icalendar.Timezone:
    timezone = icalendar.Timezone()
    timezone.add("tzid", "UTC")
    standard = icalendar.TimezoneStandard()
    standard.add("dtstart", datetime(1970, 1, 1))
    standard.add("tzoffsetfrom", timedelta(0))
    standard.add("tzoffsetto", timedelta(0))
    standard.add("tzname", "UTC")
    timezone.add_component(standard)
    return timezone


def talk_event(talk: Mapping[str, Any], keep_cancelled: bool = False) -> icalendar.Event | None:
    """One talk as a VEVENT, or None for what a calendar leaves out (or cannot show)."""
    removed = talk.get("status") == "removed"
    if (removed and not keep_cancelled) or (talk.get("counter") or 0) < 0:
        return None
    start = parse_moment(talk.get("dtstart"))
    if start is None:
        return None
    end = parse_moment(talk.get("dtend"))
    event = icalendar.Event()
    event.add("uid", clean_text(str(talk["uid"])))
    event.add("dtstamp", parse_moment(talk.get("changed_at")) or start)
    event.add("dtstart", start)
    event.add("dtend", end if end and end > start else _plus_default_length(start))
    event.add("sequence", max(int(talk.get("version") or 0), 0))
    event.add("summary", clean_text(summary(talk)))
    event.add("description", clean_text(description(talk)))
    if room := talk.get("room"):
        event.add("location", clean_text(str(room)))
    if page := http_url(talk.get("talk_url")):
        event.add("url", page)
    if removed:
        event.add("status", "CANCELLED")
    return event


def _plus_default_length(start: datetime) -> datetime:
    """An hour after `start`, or the last moment a date can hold (a talk at 9999-12-31)."""
    try:
        return start + DEFAULT_LENGTH
    except OverflowError:
        return datetime.max.replace(tzinfo=start.tzinfo, microsecond=0)


def summary(talk: Mapping[str, Any]) -> str:
    """`Title — Speaker`, or whichever of the two the talk has."""
    parts = [str(part) for part in (talk.get("title"), talk.get("speaker")) if part]
    return " — ".join(parts) or str(talk["uid"])


def description(talk: Mapping[str, Any]) -> str:
    """Plain text: series, speakers, room, livestream, talk page, then abstract and comments."""
    facts = [
        ("Series", talk.get("series_name")),
        ("Speakers", speakers_text(talk.get("speakers")) or talk.get("speaker")),
        ("Room", talk.get("room")),
        ("Livestream", http_url(talk.get("livestream_url"))),
        ("Talk page", http_url(talk.get("talk_url"))),
    ]
    lines = [f"{label}: {value}" for label, value in facts if value]
    for text in (talk.get("abstract"), talk.get("comments")):
        if text:
            lines += ["", str(text)]
    return "\n".join(lines)


def speakers_text(speakers: Any) -> str:
    """`Name (Affiliation), Name` from the stored JSON list (or the list itself)."""
    if isinstance(speakers, str):
        try:
            speakers = json.loads(speakers)
        except ValueError:
            return ""
    if not isinstance(speakers, list):
        return ""
    names = []
    for speaker in speakers:
        if isinstance(speaker, Mapping) and speaker.get("name"):
            affiliation = speaker.get("affiliation")
            names.append(f"{speaker['name']} ({affiliation})" if affiliation else speaker["name"])
    return ", ".join(str(name) for name in names)


def clean_text(text: str) -> str:
    """`text` without control characters (CR, tabs and the like become spaces)."""
    return _CONTROL.sub(" ", text.replace("\r\n", "\n"))


def _one_series(talks: list[Mapping[str, Any]]) -> str | None:
    names = {talk.get("series_name") for talk in talks}
    return str(names.pop()) if len(names) == 1 and None not in names else None
