"""One poll of one feed through the pipeline: fetch → parse → diff → store; and many.

Fetching and parsing happen outside any transaction; the diff and every write of a poll
happen inside one `BEGIN IMMEDIATE` transaction that re-reads the archive state first.
`sync_feeds` polls many feeds on threads.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from sqlite_utils import Database

from harvester import archive as store
from harvester.config import HttpSettings, ScheduleSettings
from harvester.diff import Changes, diff
from harvester.diff import gone as feed_gone
from harvester.errors import FetchError, ParseError, StaleKnowledgeError
from harvester.logs import get_logger
from harvester.parse import (
    BodyPrint,
    ParsedFeed,
    body_fingerprint,
    check_calendar_bytes,
    other_processes,
    parse_body,
    stamps_uniform,
)
from harvester.redact import redact
from harvester.site import FeedKind

if TYPE_CHECKING:
    import httpx

Clock = Callable[[], datetime]
log = get_logger("harvester.sync")


GONE = frozenset({404, 410})  # the answers that say a feed is gone (rule 5b)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FeedTarget:
    """A feed to poll: its full URL (maybe secret), a display name, and its kind if fixed."""

    url: str
    name: str | None = None
    kind: FeedKind | None = None
    gone_after: float = ScheduleSettings.gone_after  # rule 5b, in seconds


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
    *,
    fast: bool = True,
) -> PollResult:
    """Fetch one feed and archive what it says; never raises for a bad feed.

    `fast=False` takes the full parse for every body (the reference the fast path is
    tested and measured against).
    """
    from harvester.fetch import fetch  # httpx: not for `harvester import`

    started, t0 = clock(), time.monotonic()
    feed = _peek_feed(db, target)  # read only: the poll's one transaction comes after the fetch
    try:
        result = fetch(
            client,
            target.url,
            max_bytes,
            etag=feed.etag if feed else None,
            last_modified=feed.last_modified if feed else None,
        )
    except FetchError as exc:
        facts = store.FetchFacts(started, clock(), http_status=exc.status)
        return _failed(db, target, facts, exc.reason, t0, gone=exc.status in GONE)
    facts = store.FetchFacts(
        started,
        clock(),
        http_status=result.status,
        bytes=len(result.body) if result.body is not None else 0,
        etag=result.etag,
        last_modified=result.last_modified,
    )
    if result.body is None:
        return _not_modified(db, target, facts, t0)
    return archive_body(db, target, result.body, facts, facts.finished_at, t0, fast=fast, feed=feed)


def archive_body(
    db: Database,
    target: FeedTarget,
    body: bytes,
    facts: store.FetchFacts,
    observed_at: datetime,
    t0: float | None = None,
    *,
    fast: bool = True,
    feed: store.FeedRow | None = None,
) -> PollResult:
    """Parse a body and, in one transaction, diff it against the archive and store it.

    Unchanged work is skipped (see parse.py): a body that is the last one again is
    archived without a parse, and otherwise only events the archive lacks are parsed.
    """
    t0 = time.monotonic() if t0 is None else t0
    feed = feed or _peek_feed(db, target)
    try:
        text = check_calendar_bytes(body)
    except ParseError as exc:
        return _failed(db, target, facts, str(exc), t0)
    body_print = body_fingerprint(text)
    if fast and feed is not None and _may_be_unchanged(feed, body_print):
        try:
            with store.immediate_transaction(db):
                feed = _locked_feed(db, target, facts.started_at, with_present=False)
                shortcut = store.record_unchanged_body(
                    db, feed, facts, body_print.fingerprint, body_print.dtstamp, observed_at
                )
                if shortcut is None:  # the archive moved on meanwhile: write nothing here
                    raise _ShortcutRefusedError
        except _ShortcutRefusedError:
            pass
        else:
            counts, events = shortcut
            result = PollResult(
                feed=redact(target.url),
                name=target.name,
                outcome="unchanged",
                counts=counts,
                events=events,
            )
            return _logged(result, t0)
    try:
        parsed, outcome, changes = _parse_and_store(
            db, target, facts, observed_at, text, body_print, fast=fast
        )
    except ParseError as exc:
        return _failed(db, target, facts, str(exc), t0)
    result = PollResult(
        feed=redact(target.url),
        name=target.name,
        outcome=outcome,
        counts=changes.counts,
        events=parsed.events,
        warnings=parsed.warnings + changes.warnings,
    )
    return _logged(result, t0)


def _parse_and_store(
    db: Database,
    target: FeedTarget,
    facts: store.FetchFacts,
    observed_at: datetime,
    text: bytes,
    body_print: BodyPrint,
    *,
    fast: bool,
) -> tuple[ParsedFeed, str, Changes]:
    """Parse the body and store it; once more with the full parse when a talk the fast
    path took as known changed meanwhile (StaleKnowledgeError: nothing was written)."""
    lookup = partial(store.active_fingerprints, db) if fast else None
    while True:
        parsed = parse_body(text, lookup)  # outside the write lock
        # After the fast path, its talks are those the archive lacks: all to be written.
        texts = store.prepare_texts(parsed.talks) if parsed.skimmed else {}
        try:
            return parsed, *_store(db, target, facts, observed_at, parsed, body_print, text, texts)
        except StaleKnowledgeError:
            if lookup is None:
                raise
            lookup = None


class _ShortcutRefusedError(Exception):
    """Rolls the shortcut's transaction back: the body must be parsed after all."""


def _store(
    db: Database,
    target: FeedTarget,
    facts: store.FetchFacts,
    observed_at: datetime,
    parsed: ParsedFeed,
    body_print: BodyPrint,
    text: bytes,
    texts: store.PreparedTexts,
) -> tuple[str, Changes]:
    """The poll's one transaction: diff the parsed body against the archive and store it.

    StaleKnowledgeError (a known talk changed meanwhile) rolls it back with nothing written.
    """
    vouches = _vouches(parsed, text)  # a scan of the whole body: before the write lock
    with store.immediate_transaction(db):
        feed = _locked_feed(db, target, facts.started_at)
        state = store.load_state(db, feed, parsed.talks, parsed.known)
        changes = diff(state, parsed.talks, observed_at, parsed.known)
        outcome = "changed" if changes.any_change else "unchanged"
        store.record_success(
            db,
            feed,
            facts,
            outcome,
            changes,
            parsed.events,
            observed_at,
            body_fingerprint=body_print.fingerprint if vouches else None,
            texts=texts,
        )
    return outcome, changes


def sync_feeds(
    open_db: Callable[[], Database],
    client: httpx.Client,
    targets: Sequence[FeedTarget],
    max_bytes: int,
    *,
    concurrency: int = 4,
    on_result: Callable[[PollResult], None] | None = None,
) -> list[PollResult]:
    """Poll `targets` with up to `concurrency` feeds at once; the results in target order.

    Each worker thread polls one feed at a time through its own archive connection
    (`open_db()`; SQLite connections belong to one thread), so every feed is still one
    `BEGIN IMMEDIATE` transaction, and memory holds at most `concurrency` feeds. The
    client's host limits keep the requests polite whatever the concurrency.
    `on_result` is called (one call at a time) as each feed finishes.
    """
    _add_feeds(open_db, targets)  # in order: feed ids do not depend on which poll ends first
    results: list[PollResult | None] = [None] * len(targets)
    jobs: queue.SimpleQueue[tuple[int, FeedTarget]] = queue.SimpleQueue()
    for job in enumerate(targets):
        jobs.put(job)
    report_lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            db = open_db()
        except BaseException as exc:
            errors.append(exc)
            return
        try:
            while not errors:
                try:
                    index, target = jobs.get_nowait()
                except queue.Empty:
                    return
                result = poll_feed(db, client, target, max_bytes)
                results[index] = result
                if on_result is not None:
                    with report_lock:
                        on_result(result)
        except BaseException as exc:  # a bug, not a bad feed: stop the sync, report it
            errors.append(exc)
        finally:
            db.conn.close()

    workers = [
        threading.Thread(target=work, name=f"sync-{n}", daemon=True)
        for n in range(max(1, min(concurrency, len(targets))))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def sync_with_client(
    open_db: Callable[[], Database],
    http: HttpSettings,
    targets: Sequence[FeedTarget],
    *,
    on_result: Callable[[PollResult], None] | None = None,
) -> list[PollResult]:
    """`sync_feeds` with a client of `http`'s settings (the CLI's `sync`)."""
    from harvester.fetch import make_client  # httpx: not for `harvester import`

    with other_processes(os.cpu_count() or 1), make_client(http) as client:
        return sync_feeds(
            open_db,
            client,
            targets,
            http.max_bytes,
            concurrency=http.concurrency,
            on_result=on_result,
        )


def _add_feeds(open_db: Callable[[], Database], targets: Sequence[FeedTarget]) -> None:
    db = open_db()
    try:
        with store.immediate_transaction(db):
            for target in targets:
                store.ensure_feed(db, target.url, target.name, utc_now(), target.kind)
    finally:
        db.conn.close()


def _may_be_unchanged(feed: store.FeedRow, body: BodyPrint) -> bool:
    """Worth asking the archive whether this body is the last successful one again."""
    return body.usable and feed.body_fingerprint == body.fingerprint and not feed.held_removals


def _vouches(parsed: ParsedFeed, text: bytes) -> bool:
    """Whether a later body with the same fingerprint may skip the parse.

    That later body has its DTSTAMP lines where this one has them; `record_unchanged_body`
    gives every talk the later body's one DTSTAMP value. That is right when this body
    stamps every talk, with one and the same line.
    """
    stamped = all(r.dtstamp is not None for r in parsed.talks) and all(
        k.dtstamp is not None for k in parsed.known
    )
    return stamped and stamps_uniform(text)


def _peek_feed(db: Database, target: FeedTarget) -> store.FeedRow | None:
    """The feed's row before a poll, read without a transaction (None: not archived yet).

    Only validators and the body fingerprint are taken from it; the poll's transaction
    reads the row again.
    """
    feed_id = store.find_feed(db, target.url)
    return None if feed_id is None else store.load_feed(db, feed_id, with_present=False)


def _locked_feed(
    db: Database, target: FeedTarget, at: datetime, *, with_present: bool = True
) -> store.FeedRow:
    """Inside the poll's transaction: the feed's row (added on first sight), read afresh."""
    feed_id = store.ensure_feed(db, target.url, target.name, at, target.kind)
    return store.load_feed(db, feed_id, with_present=with_present)


def _not_modified(
    db: Database, target: FeedTarget, facts: store.FetchFacts, t0: float
) -> PollResult:
    with store.immediate_transaction(db):
        feed = _locked_feed(db, target, facts.started_at, with_present=False)
        store.record_success(db, feed, facts, "not_modified", None, 0, facts.finished_at)
    return _logged(
        PollResult(feed=redact(target.url), name=target.name, outcome="not_modified"), t0
    )


def _failed(
    db: Database,
    target: FeedTarget,
    facts: store.FetchFacts,
    reason: str,
    t0: float,
    *,
    gone: bool = False,
) -> PollResult:
    """A failed poll (rule 8); a 404/410 is also evidence that the feed is gone (rule 5b)."""
    reason = redact(reason)
    counts: dict[str, int] = {}
    with store.immediate_transaction(db):
        feed_id = store.ensure_feed(db, target.url, target.name, facts.started_at, target.kind)
        fetch_id = store.record_failure(db, feed_id, facts, reason)
        if gone and store.record_gone(db, feed_id, facts.finished_at, target.gone_after):
            feed = store.load_feed(db, feed_id)
            changes = feed_gone(store.load_state(db, feed, []), facts.finished_at)
            store.apply_gone(db, feed_id, changes, facts.finished_at, fetch_id)
            counts = {"removed": changes.count("removed")}
    result = PollResult(
        feed=redact(target.url), name=target.name, outcome="error", error=reason, counts=counts
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
