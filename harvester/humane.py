"""Readable text for people: times as "Tue 1 Dec 2026, 16:00 UTC", counts as "1 talk"
and "3 talks" (pure, no I/O).

Shared by the terminal, the notifications and the Datasette pages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def human_time(value: Any, *, missing: str = "?") -> str:
    """`Tue 1 Dec 2026, 16:00 UTC`; `missing` for no time at all, `?` for one unreadable."""
    if not value:
        return missing
    moment = parse_moment(value)
    if moment is None:
        return "?"
    return f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M} UTC"


def parse_moment(value: Any) -> datetime | None:
    """An ISO 8601 text as an aware UTC datetime (naive ones are UTC), or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset past year 9999 or before 1
        return None


def counted(count: int, word: str, plural: str | None = None) -> str:
    """`1 talk`, `0 talks`, `3 talks`; `plural` for a word that is not made with an s."""
    return f"{count} {word if count == 1 else plural or word + 's'}"
