"""Notifications: which archived changes a `[[notify]]` target wants, the digest message,
and delivery through Apprise.

Deciding and formatting are pure. `deliver` is the only I/O: one Apprise notification to
one URL, with Apprise's own log captured so that its error (which may quote the URL and
its password) comes back as a string for the caller to mask and store.
"""

from __future__ import annotations

import json
import os
import unicodedata
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harvester.humane import counted, human_time
from harvester.humane import parse_moment as _moment
from harvester.model import DEFAULT_NOTIFY_KINDS


@dataclass(frozen=True)
class Target:
    """One `[[notify]]` entry. `key` names it in the archive; the URL is never stored."""

    key: str
    url: str
    series: frozenset[str] | None = None  # None: every series
    kinds: frozenset[str] = frozenset(DEFAULT_NOTIFY_KINDS)
    upcoming_only: bool = True
    allow_private: bool = False
    match: str | None = None  # a full-text query, run by the archive's search (talks_fts)
    speakers: tuple[str, ...] = ()  # folded names (`fold_name`)
    digest: str | None = None  # "weekly": the target gets only its weekly digest
    timezone: str = "UTC"

    @property
    def filtered(self) -> bool:
        return self.match is not None or bool(self.speakers)


def fold_name(text: str) -> str:
    """A name as speakers are compared: case folded, accents gone, one space between words
    ("Émile  PICARD" → "emile picard"). The one rule for names, in config and in talks."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.split())


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in fold_name(text)).split()


def speaks(names: Iterable[str], change: Mapping[str, Any]) -> bool:
    """Whether one of `names` (folded) is among the version's speakers: its words, in
    order, within a speaker's name ("noether" is in "Emmy Noether", "noe" is not)."""
    wanted = [_words(name) for name in names]
    for speaker in _speaker_names(change):
        have = _words(speaker)
        for words in wanted:
            if words and any(have[i : i + len(words)] == words for i in range(len(have))):
                return True
    return False


def _speaker_names(change: Mapping[str, Any]) -> list[str]:
    try:
        people = json.loads(change.get("speakers") or "[]")
    except (TypeError, ValueError):
        people = []
    names = [p["name"] for p in people if isinstance(p, dict) and isinstance(p.get("name"), str)]
    return names or ([str(change["speaker"])] if change.get("speaker") else [])


def version_kinds(change: Mapping[str, Any]) -> set[str]:
    """The kinds a version counts as for notifications: `new`, `removed`, `restored`, or
    the kinds of a `changed` version."""
    if change["change"] in ("new", "removed", "restored"):
        return {str(change["change"])}
    return {str(kind) for kind in change.get("kinds") or []}


def wants(
    target: Target, change: Mapping[str, Any], now: datetime, *, matched: bool = False
) -> bool:
    """Whether `target` is to be told of this version (never of an automatic one).

    A target with `match` or `speakers` wants only talks that match its query (`matched`:
    the archive's search found the version) or that one of its speakers gives."""
    if change.get("automatic") or target.digest is not None:
        return False
    if target.series is not None and change.get("series_id") not in target.series:
        return False
    if not version_kinds(change) & target.kinds:
        return False
    if target.upcoming_only and not _upcoming(change, now):
        return False
    return not target.filtered or matched or speaks(target.speakers, change)


def _upcoming(change: Mapping[str, Any], now: datetime) -> bool:
    end = _moment(change.get("dtend")) or _moment(change.get("dtstart"))
    return end is not None and end > now


def digest(changes: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """One message for several changes: (title, body), a paragraph per talk.

    Each change row carries the version's fields and the previous version's as
    `previous_<field>` (None for a new talk)."""
    title = f"{counted(len(changes), 'change')} on researchseminars.org"
    if len(changes) == 1:
        title = f"{_headline(changes[0])}: {_what(changes[0])}"
    return title, "\n\n".join(_paragraph(change) for change in changes)


def weekly_digest(talks: Sequence[Mapping[str, Any]], week: str, timezone: str) -> tuple[str, str]:
    """The weekly message: (title, body), one paragraph per talk in start order, each with
    its time in `timezone` and the link to its page."""
    zone = zoneinfo.ZoneInfo(timezone)
    title = f"{counted(len(talks), 'talk')} for you this week ({week})"
    paragraphs = []
    for talk in talks:
        lines = [_headline(talk)]
        if talk.get("speaker"):
            lines.append(f"  {talk['speaker']}")
        lines.append(f"  {_local_time(talk.get('dtstart'), zone)}")
        if link := talk.get("talk_url"):
            lines.append(f"  {link}")
        paragraphs.append("\n".join(lines))
    return title, "\n\n".join(paragraphs)


def _local_time(value: Any, zone: zoneinfo.ZoneInfo) -> str:
    """`Tue 1 Dec 2026, 17:00 CET` (or `?`)."""
    moment = _moment(value)
    if moment is None:
        return "?"
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname() or zone.key}"


def _paragraph(change: Mapping[str, Any]) -> str:
    lines = [f"{_headline(change)} ({_what(change)})"]
    kinds = version_kinds(change)
    if "rescheduled" in kinds or "duration" in kinds:
        lines.append(
            f"  time: {human_time(change.get('previous_dtstart'))} → "
            f"{human_time(change.get('dtstart'))}"
        )
    if "retitled" in kinds:
        lines.append(f"  title: {change.get('previous_title') or '—'} → {change.get('title')}")
    if "speakers" in kinds:
        lines.append(f"  speakers: {change.get('previous_speaker')} → {change.get('speaker')}")
    if change["change"] == "new":
        lines.append(f"  at {human_time(change.get('dtstart'))}")
    if link := change.get("talk_url"):
        lines.append(f"  {link}")
    return "\n".join(lines)


def _headline(change: Mapping[str, Any]) -> str:
    title = change.get("title") or change.get("previous_title") or change["uid"]
    series = change.get("series_name") or change.get("series_id")
    return f"{title} — {series}" if series else str(title)


def _what(change: Mapping[str, Any]) -> str:
    if change["change"] != "changed":
        return str(change["change"])
    return ", ".join(sorted(version_kinds(change))) or "changed"


def check_url(url: str) -> str | None:
    """None when Apprise understands `url`, else why not (the URL is not in the reason)."""
    import apprise  # here: only commands that notify pay for importing it

    if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
        return "not an Apprise URL Apprise can use"
    return None


# Apprise's generic webhooks: the URL's host is the server the message is posted to.
_WEBHOOK_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})


def server_host(url: str) -> str | None:
    """The host a delivery to `url` connects to, when the URL names it: a generic webhook's
    host, or any scheme's host that is an IP address or `localhost`. None for a service's
    own servers (the URL's host part is then often a token, never to be looked up)."""
    import ipaddress

    import apprise

    host = getattr(apprise.Apprise.instantiate(url, suppress_exceptions=True), "host", None)
    host = host.strip("[]") if isinstance(host, str) else None  # an IPv6 literal: in brackets
    if not host:
        return None
    if url.partition("://")[0].lower() in _WEBHOOK_SCHEMES or host.lower() == "localhost":
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def deliver(url: str, title: str, body: str) -> str | None:
    """Send one message; None on success, else Apprise's error text (to be masked).

    Never through a proxy, as feeds are not: `no_proxy=*` for this process (Apprise posts
    with requests, which would take one from the environment)."""
    import apprise

    os.environ["no_proxy"] = "*"
    client = apprise.Apprise()
    if not client.add(url):
        return "not an Apprise URL Apprise can use"
    with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as captured:  # type: ignore[no-untyped-call]
        ok = client.notify(title=title, body=body)
    if ok:
        return None
    lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
    return lines[-1] if lines else "Apprise could not deliver the message"
