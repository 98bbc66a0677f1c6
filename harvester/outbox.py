"""The sender of the notifications outbox: delivers what polls queued, after the polls.

Polls queue rows (`archive.queue_notifications`, inside each poll's own transaction); this
module delivers them later: one digest per target per run, then marks each row sent, or
failed with its attempts, its masked error and when to try again (exponential backoff);
after `[notifications] max_attempts` a row is given up (`failed`). Rows are leased while
they are being sent, so two processes on one archive never send a row twice; a process
killed before it sends leaves the rows pending for the next run. Weekly digests
(harvester.digest) are queued here, committed before any send, and go out the same way,
one message per row.

Nothing here raises for a target that cannot be reached: archiving never fails because of
a notification.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from harvester import archive as store
from harvester import digest as weekly
from harvester.config import Config, NotificationSettings, NotifyConfig
from harvester.errors import ConfigError
from harvester.logs import get_logger
from harvester.notify import Target, deliver, digest, fold_name, server_host
from harvester.redact import redact

log = get_logger("harvester.notify")

LEASE = timedelta(minutes=10)  # a send that takes longer may be repeated by another process
CRASH_ENV = "HARVESTER_TEST_CRASH"  # tests: `before_send` kills the process at that point


@dataclass
class TargetResult:
    target: str  # which entry: `notify[0] json://hook…` (the URL masked)
    count: int  # notifications in the message
    error: str | None = None  # masked

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class SendReport:
    results: list[TargetResult] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(r.count for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return sum(r.count for r in self.results if not r.ok)


def check_filters(config: Config) -> None:
    """ConfigError for a `[[notify]]` `match` the archive's search cannot run."""
    for i, entry in enumerate(config.notify):
        if entry.match is not None and (why := store.search_problem(entry.match)) is not None:
            raise ConfigError(
                config.path or "", f"notify[{i}].match", f"not a search the archive can run: {why}"
            )


def targets(db: Database, config: Config) -> list[Target]:
    """The config's `[[notify]]` entries, each keyed in this archive (never by its URL).

    ConfigError for a `match` the archive's search cannot run: refused before any poll."""
    check_filters(config)
    return [_target(config, entry, store.url_key(db, entry.url)) for entry in config.notify]


def _target(config: Config, entry: NotifyConfig, key: str) -> Target:
    return Target(
        key=key,
        url=entry.url,
        series=entry.series,
        kinds=entry.kinds,
        upcoming_only=entry.upcoming_only,
        allow_private=entry.allow_private or config.http.allow_private,
        match=entry.match,
        speakers=tuple(fold_name(name) for name in entry.speakers),
        digest=entry.digest,
        timezone=entry.timezone,
    )


def label(index: int, url: str) -> str:
    """How output names a target: its config key and its masked URL."""
    return f"notify[{index}] {redact(url)}"


def register(db: Database, config: Config, now: datetime) -> None:
    """Before polling: tell the archive which targets its polls queue notifications for
    (a weekly target gets its digest only)."""
    per_change = [t for t in targets(db, config) if t.digest is None]
    store.register_notify_targets(db, per_change, now)


def send_pending(db: Database, config: Config, now: datetime, *, retry: bool = False) -> SendReport:
    """Deliver the due outbox rows of the configured targets, one message per target."""
    report = SendReport()
    configured = targets(db, config)
    by_key = {t.key: t for t in configured}
    labels = {t.key: label(i, t.url) for i, t in enumerate(configured)}
    if not by_key:
        return report
    weekly.queue_due(db, configured, now)  # committed before any send, as a poll's rows are
    if os.environ.get(CRASH_ENV) == "before_send":
        os.kill(os.getpid(), signal.SIGKILL)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in store.claim_notifications(db, by_key, now, now + LEASE, retry=retry):
        groups.setdefault(str(row["target"]), []).append(row)
    messages = [(key, changes, *digest(changes)) for key, changes in groups.items()]
    messages += [
        (str(row["target"]), [row], str(row["title"]), str(row["body"]))
        for row in store.claim_digests(db, by_key, now, now + LEASE, retry=retry)
    ]
    for key, changes, title, body in messages:
        error = _deliver(by_key[key], title, body, config.notifications.timeout)
        shown = labels[key]
        ids = [int(c["id"]) for c in changes]
        if error is None:
            store.mark_notifications_sent(db, ids, now)
            log.info("notify.sent", target=shown, notifications=len(ids))
        else:
            outcomes = [
                _after_failure(int(c["id"]), int(c["attempts"]), now, config.notifications)
                for c in changes
            ]
            store.mark_notifications_failed(db, outcomes, error)
            given_up = sum(1 for _, status, _ in outcomes if status == "failed")
            log.warning(
                "notify.failed",
                target=shown,
                notifications=len(ids),
                given_up=given_up,
                error=error,
            )
        report.results.append(TargetResult(shown, len(ids), error))
    return report


def _deliver(target: Target, title: str, body: str, timeout: float) -> str | None:
    """One delivery, within the URL policy and `timeout` seconds of wall clock: a receiver
    that answers a byte at a time is left behind (its thread ends with the process)."""
    refused = None if target.allow_private else _refused(target.url)
    if refused is not None:
        return refused
    outcome: list[str | None] = []

    def send() -> None:
        try:
            outcome.append(deliver(target.url, title, body))
        except Exception as exc:  # an Apprise plugin's bug must not stop the others
            outcome.append(f"{type(exc).__name__}: {exc}")

    sender = threading.Thread(target=send, name="notify", daemon=True)
    sender.start()
    sender.join(timeout)
    if not outcome:
        return f"no answer within {timeout:g} s ([notifications] timeout)"
    return None if outcome[0] is None else redact(outcome[0])


def _refused(url: str) -> str | None:
    """Why the URL policy refuses the server `url` posts to (as it would a feed's), or None."""
    from harvester._http import AddressRefusedError, UrlPolicy  # httpx: not for `status`

    host = server_host(url)
    try:
        if host is not None:
            UrlPolicy().connect_addresses(host)
    except AddressRefusedError as exc:
        if exc.unresolved:  # Apprise will say so itself
            return None
        return exc.reason.replace("[http] allow_private", "allow_private on the [[notify]] entry")
    return None


def _after_failure(
    row_id: int, attempts: int, now: datetime, settings: NotificationSettings
) -> tuple[int, str, str | None]:
    """(id, status, next attempt) for a row whose send failed for the `attempts + 1`th time."""
    attempts += 1
    if attempts >= settings.max_attempts:
        return row_id, "failed", None
    delay = min(settings.backoff * 2 ** (attempts - 1), settings.max_backoff)
    return row_id, "pending", (now + timedelta(seconds=delay)).isoformat()


def send_test(config: Config) -> list[TargetResult]:
    """One test message to every target; what happened, target by target."""
    results = []
    for i, entry in enumerate(config.notify):
        error = _deliver(
            _target(config, entry, "test"),
            "seminar-harvester: test notification",
            "This is a test message from seminar-harvester: notifications reach you here.",
            config.notifications.timeout,
        )
        results.append(TargetResult(label(i, entry.url), 0, error))
    return results
