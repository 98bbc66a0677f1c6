"""One poll of one feed through the pipeline: fetch → parse → diff → store.

Fetching and parsing happen outside any transaction; the diff and every write of a poll
happen inside one `BEGIN IMMEDIATE` transaction that re-reads the archive state first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from sqlite_utils import Database

from harvester import store
from harvester.diff import diff
from harvester.fetch import FetchError, fetch
from harvester.logs import get_logger
from harvester.parse import ParseError, parse_feed
from harvester.urls import FeedKind, mask_secrets

Clock = Callable[[], datetime]
log = get_logger("harvester.sync")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FeedTarget:
    """A feed to poll: its full URL (maybe secret), a display name, and its kind if fixed."""

    url: str
    name: str | None = None
    kind: FeedKind | None = None


@dataclass
class PollResult:
    feed: str  # masked URL
    name: str | None
    outcome: str  # changed / unchanged / not_modified / error
    counts: dict[str, int] = field(default_factory=dict)
    events: int = 0
    error: str | None = None
    duration_ms: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.outcome == "error"


def poll_feed(
    db: Database,
    client: httpx.Client,
    target: FeedTarget,
    max_bytes: int,
    clock: Clock = utc_now,
) -> PollResult:
    """Fetch one feed and archive what it says; never raises for a bad feed."""
    started, t0 = clock(), time.monotonic()
    feed = _feed_row(db, target, started)
    try:
        result = fetch(
            client, target.url, max_bytes, etag=feed.etag, last_modified=feed.last_modified
        )
    except FetchError as exc:
        facts = store.FetchFacts(started, clock(), http_status=exc.status)
        return _failed(db, target, feed.id, facts, exc.reason, t0)
    facts = store.FetchFacts(
        started,
        clock(),
        http_status=result.status,
        bytes=len(result.body) if result.body is not None else 0,
        etag=result.etag,
        last_modified=result.last_modified,
    )
    if result.body is None:
        return _not_modified(db, target, feed, facts, t0)
    return archive_body(db, target, result.body, facts, facts.finished_at, t0)


def archive_body(
    db: Database,
    target: FeedTarget,
    body: bytes,
    facts: store.FetchFacts,
    observed_at: datetime,
    t0: float | None = None,
) -> PollResult:
    """Parse a body and, in one transaction, diff it against the archive and store it."""
    t0 = time.monotonic() if t0 is None else t0
    try:
        parsed = parse_feed(body)
    except ParseError as exc:
        feed = _feed_row(db, target, facts.started_at)
        return _failed(db, target, feed.id, facts, str(exc), t0)
    with store.immediate_transaction(db):
        feed_id = store.ensure_feed(db, target.url, target.name, facts.started_at, target.kind)
        feed = store.load_feed(db, feed_id)
        changes = diff(store.load_state(db, feed, parsed.talks), parsed.talks, observed_at)
        outcome = "changed" if changes.any_change else "unchanged"
        store.record_success(db, feed, facts, outcome, changes, parsed.events, observed_at)
    result = PollResult(
        feed=mask_secrets(target.url),
        name=target.name,
        outcome=outcome,
        counts=changes.counts,
        events=parsed.events,
        warnings=parsed.warnings + changes.warnings,
    )
    return _logged(result, t0)


def _feed_row(db: Database, target: FeedTarget, at: datetime) -> store.FeedRow:
    with store.immediate_transaction(db):
        feed_id = store.ensure_feed(db, target.url, target.name, at, target.kind)
        return store.load_feed(db, feed_id)


def _not_modified(
    db: Database, target: FeedTarget, feed: store.FeedRow, facts: store.FetchFacts, t0: float
) -> PollResult:
    with store.immediate_transaction(db):
        store.record_success(db, feed, facts, "not_modified", None, 0, facts.finished_at)
    return _logged(
        PollResult(feed=mask_secrets(target.url), name=target.name, outcome="not_modified"), t0
    )


def _failed(
    db: Database, target: FeedTarget, feed_id: int, facts: store.FetchFacts, reason: str, t0: float
) -> PollResult:
    reason = mask_secrets(reason)
    with store.immediate_transaction(db):
        store.record_failure(db, feed_id, facts, reason)
    result = PollResult(
        feed=mask_secrets(target.url), name=target.name, outcome="error", error=reason
    )
    return _logged(result, t0)


def _logged(result: PollResult, t0: float) -> PollResult:
    result.duration_ms = round((time.monotonic() - t0) * 1000)
    for warning in result.warnings:
        log.warning("feed.warning", url=result.feed, feed=result.name, warning=warning)
    fields = {
        "url": result.feed,
        "feed": result.name,
        "outcome": result.outcome,
        "events": result.events,
        "duration_ms": result.duration_ms,
        **result.counts,
    }
    if result.failed:
        log.error("feed.polled", error=result.error, **fields)
    else:
        log.info("feed.polled", **fields)
    return result
