"""`harvester run`: the daemon. One APScheduler job per feed, a heartbeat, and signals.

- Every enabled feed is one job (id: the feed's `url_hash`, never its URL, which may hold a
  token) on an `IntervalTrigger` of the feed's interval (per-feed override, else
  `[schedule] interval`) with `[schedule] jitter` (at most a quarter of the interval);
  `coalesce`, one instance per feed, misfire grace of one interval. The first polls start
  at once and are spread out: one a second at most, all within half an interval.
- A feed whose last poll failed backs off: its interval doubles per consecutive failure
  (`feeds.consecutive_failures`, so cron syncs count too), up to `--max-backoff`, and is
  back to normal after a success. Other feeds are unaffected.
- Polls run in worker threads; each poll opens its own archive connection (sqlite3
  connections are never shared between threads) and is one transaction (`sync.poll_feed`).
- SIGHUP reloads the config: added, removed and changed feeds take effect, feeds that did
  not change keep their schedule. A config that does not load is refused with an error
  logged, and the old one keeps running.
- SIGTERM/SIGINT: no new polls; a poll waiting to retry stops waiting and is abandoned,
  as is one about to send another request (a retry, a redirect); polls in flight get
  `--grace` to commit.
  Whatever is still running then is abandoned before commit (SQLite rolls it back). A
  second SIGTERM/SIGINT stops at once.
- A heartbeat in the archive's `daemon` table (see `harvester.health`) lets
  `harvester status` tell a running daemon from a dead one.
- The steps around the polls are a sync's (`harvester.run`): the outbox is sent after
  each poll, and `run.upkeep` (integrity check, series metadata, compaction, statistics,
  each at most daily) runs hourly.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlite_utils import Database

from harvester import follow, health, outbox, run
from harvester.archive import consecutive_failures, open_archive
from harvester.config import Config, HttpSettings, load_config
from harvester.errors import ConfigError
from harvester.fetch import FetchPolicy, make_client
from harvester.logs import get_logger
from harvester.site import url_hash  # the job id only: the archive keys feeds itself
from harvester.sync import FeedTarget, poll_feed, utc_now

log = get_logger("harvester.daemon")

DEFAULT_WORKERS = 4
DEFAULT_MAX_BACKOFF_S = 6 * 3600.0
DEFAULT_GRACE_S = 10.0
FIRST_POLL_GAP_S = 1.0  # the first polls after a start or a reload: one a second at most
JITTER_SHARE = 0.25  # jitter is at most this share of a feed's interval
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
UPKEEP_EVERY_S = 3600.0  # how often the daemon asks; the archive markers make it daily
UPKEEP_FIRST_S = 300.0  # the first ask, once the first polls are done


class PollAbandonedError(Exception):
    """The daemon is stopping: a poll that had not reached its transaction is dropped."""


@dataclass(frozen=True)
class FeedPlan:
    """How the daemon polls one feed."""

    key: str  # url_hash: the job id
    url: str
    name: str
    interval: float
    jitter: float


def plans_for(config: Config) -> dict[str, FeedPlan]:
    plans = {}
    for feed in (*config.feeds, *follow.daemon_feeds(config)):  # [[follow]]: issue 23
        if not feed.enabled:
            continue
        interval = feed.interval_or(config.schedule.interval)
        key = url_hash(feed.url)
        jitter = min(config.schedule.jitter, interval * JITTER_SHARE)
        plans[key] = FeedPlan(key, feed.url, feed.name, interval, jitter)
    return plans


def backoff_interval(interval: float, failures: int, cap: float) -> float:
    """The interval doubled per consecutive failure, at most `cap` (never below `interval`)."""
    if failures <= 0:
        return interval
    return max(interval, min(interval * 2.0 ** min(failures, 64), cap))


def first_poll_delays(plans: list[FeedPlan]) -> list[float]:
    """Seconds to each feed's first poll: at once, then one a second at most, every feed
    within half of its interval (so many feeds with a short interval go closer together)."""
    count = len(plans)
    return [
        min(i * FIRST_POLL_GAP_S, plan.interval / 2 * i / count) for i, plan in enumerate(plans)
    ]


class SignalInbox:
    """Signals as a queue read by the main thread (self-pipe: nothing runs in a handler)."""

    def __init__(self, signals: tuple[signal.Signals, ...]) -> None:
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for signum in signals:
            signal.signal(signum, lambda *_: None)

    def wait(self, timeout: float | None = None) -> signal.Signals | None:
        ready, _, _ = select.select([self._read], [], [], timeout)
        if not ready:
            return None
        return signal.Signals(os.read(self._read, 1)[0])


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None,
        db_override: str | None,
        workers: int = DEFAULT_WORKERS,
        max_backoff: float = DEFAULT_MAX_BACKOFF_S,
        grace: float = DEFAULT_GRACE_S,
    ) -> None:
        self.config = config
        self.config_path, self.db_override = config_path, db_override
        self.max_backoff, self.grace = max_backoff, grace
        self.plans: dict[str, FeedPlan] = {}
        self.failures: dict[str, int] = {}  # consecutive failures after each feed's last poll
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.in_flight = 0
        self.client = self._make_client(config.http)
        self.retired_clients: list[httpx.Client] = []
        # Notifications go out in their own thread after polls: a poll never waits for one.
        self.notifier = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="notify")
        self.notify_queued = False
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "default": ThreadPoolExecutor(workers),
                "heartbeat": ThreadPoolExecutor(1),  # never starved by slow polls
                "upkeep": ThreadPoolExecutor(1),  # never delays a heartbeat
            },
            job_defaults={"coalesce": True, "max_instances": 1},
        )

    # --- the main thread ------------------------------------------------------------------

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the number of polls abandoned at the stop."""
        inbox = SignalInbox((*STOP_SIGNALS, signal.SIGHUP))
        plans = plans_for(self.config)  # with [[follow]], maybe none until the API answers
        self._write_heartbeat(
            health.start_heartbeat,
            feeds=len(plans),
            config=str(self.config.path) if self.config.path else None,
        )
        self.scheduler.start()
        with self.lock:
            self._apply(plans)
        self._notify_soon()  # what an earlier run queued and did not send
        self.scheduler.add_job(
            self._heartbeat,
            IntervalTrigger(seconds=health.HEARTBEAT_EVERY_S, timezone=UTC),
            id="heartbeat",
            name="heartbeat",
            executor="heartbeat",
        )
        self.scheduler.add_job(  # hourly; the steps themselves do their work at most daily
            self._upkeep,
            IntervalTrigger(seconds=UPKEEP_EVERY_S, timezone=UTC),
            id="upkeep",
            name="upkeep",
            executor="upkeep",
            next_run_time=datetime.now(UTC) + timedelta(seconds=UPKEEP_FIRST_S),
        )
        log.info(
            "daemon.started",
            pid=os.getpid(),
            archive=str(self.config.archive_path),
            feeds=len(self.plans),
            config=str(self.config.path),
        )
        while True:
            signum = inbox.wait()
            if signum == signal.SIGHUP:
                self.reload()
            elif signum in STOP_SIGNALS:
                return self.stop(signum, inbox)

    def reload(self) -> None:
        """Re-read the config; a config that cannot be used is refused and the old one kept."""
        try:
            config = load_config(self.config_path, self.db_override)
            outbox.check_filters(config)
            plans = plans_for(config)
            if not plans and not config.follow:
                raise ConfigError(config.path or "", "feeds", "no enabled feed to poll")
            if config.archive_path != self.config.archive_path:
                raise ConfigError(
                    config.path or "", "archive.path", "changed: restart the daemon to switch"
                )
        except ConfigError as exc:
            log.error("config.reload_failed", error=str(exc), kept_feeds=len(self.plans))
            return
        with self.lock:
            if config.http != self.config.http:
                self.retired_clients.append(self.client)
                self.client = self._make_client(config.http)
            self.config = config
            added, removed, changed = self._apply(plans)
        _in_archive(config, run.prepare, "notify.register_failed")
        log.info(
            "config.reloaded",
            feeds=len(plans),
            added=added,
            removed=removed,
            changed=changed,
            config=str(config.path),
        )

    def stop(self, signum: signal.Signals, inbox: SignalInbox) -> int:
        log.info("daemon.stopping", signal=signum.name, polls_in_flight=self.in_flight)
        self.stopping.set()
        self.scheduler.shutdown(wait=False)
        self.notifier.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + self.grace
        while self.in_flight and (left := deadline - time.monotonic()) > 0:
            if inbox.wait(min(left, 0.05)) in STOP_SIGNALS:
                log.warning("daemon.forced_stop", polls_in_flight=self.in_flight)
                break
        abandoned = self.in_flight
        self._write_heartbeat(health.stop_heartbeat)
        for client in (self.client, *self.retired_clients):
            with contextlib.suppress(Exception):
                client.close()
        log.info("daemon.stopped", polls_abandoned=abandoned)
        return abandoned

    # --- scheduling (callers hold self.lock) ------------------------------------------------

    def _apply(self, plans: dict[str, FeedPlan]) -> tuple[list[str], list[str], list[str]]:
        """Make the jobs match `plans`; returns the names added, removed and changed."""
        old, self.plans = self.plans, plans
        gone = old.keys() - plans.keys()
        for key in gone:
            self.failures.pop(key, None)
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(key)
        changed = []
        for key in plans.keys() & old.keys():
            before, after = old[key], plans[key]
            if (before.interval, before.jitter) != (after.interval, after.jitter):
                job = self.scheduler.get_job(key)
                if job is not None:
                    job.modify(misfire_grace_time=_grace_time(after))
                    job.reschedule(self._trigger(after, self.failures.get(key, 0)))
            if before != after:
                changed.append(after.name)
        added = [plans[key] for key in plans if key not in old]
        now = datetime.now(UTC)
        for plan, delay in zip(added, first_poll_delays(added), strict=True):
            self.scheduler.add_job(
                self._poll,
                self._trigger(plan, 0),
                args=[plan.key],
                id=plan.key,
                name=plan.name,
                next_run_time=now + timedelta(seconds=delay),
                misfire_grace_time=_grace_time(plan),
                replace_existing=True,
            )
        return [p.name for p in added], sorted(old[k].name for k in gone), changed

    def _trigger(self, plan: FeedPlan, failures: int) -> IntervalTrigger:
        interval = backoff_interval(plan.interval, failures, self.max_backoff)
        return IntervalTrigger(seconds=interval, jitter=plan.jitter or None, timezone=UTC)

    # --- worker threads ---------------------------------------------------------------------

    def _poll(self, key: str) -> None:
        with self.lock:
            plan = self.plans.get(key)
            if plan is None or self.stopping.is_set():
                return
            self.in_flight += 1
            client, config = self.client, self.config
        try:
            failures = self._poll_once(plan, client, config)
        finally:
            with self.lock:
                self.in_flight -= 1
        if failures is not None:
            self._adjust(key, failures)
        self._notify_soon()

    def _poll_once(self, plan: FeedPlan, client: httpx.Client, config: Config) -> int | None:
        """One poll in its own connection; the feed's consecutive failures after it."""
        try:
            with contextlib.closing(open_archive(config.archive_path)) as db:
                target = FeedTarget(plan.url, plan.name, gone_after=config.schedule.gone_after)
                poll_feed(db, client, target, config.http.max_bytes)
                return consecutive_failures(db, plan.url)
        except PollAbandonedError:
            log.info("feed.poll_abandoned", feed=plan.name, reason="daemon stopping")
            return None
        except Exception as exc:
            log.exception("feed.poll_crashed", feed=plan.name, error=str(exc))
            with self.lock:
                return self.failures.get(plan.key, 0) + 1

    def _notify_soon(self) -> None:
        """Deliver the outbox in the notifier thread (one run queued at most)."""
        with self.lock:
            if not self.config.notify or self.notify_queued or self.stopping.is_set():
                return
            self.notify_queued = True
        with contextlib.suppress(RuntimeError):  # the daemon is stopping
            self.notifier.submit(self._send_notifications)

    def _send_notifications(self) -> None:
        with self.lock:
            self.notify_queued = False
            config = self.config
        _in_archive(config, run.send, "notify.send_crashed")

    def _adjust(self, key: str, failures: int) -> None:
        """Back a failing feed off (or bring a recovered one back) by rescheduling its job."""
        with self.lock:
            plan = self.plans.get(key)
            if plan is None or self.stopping.is_set():
                return
            previous, self.failures[key] = self.failures.get(key, 0), failures
            job = self.scheduler.get_job(key)
            if job is None or previous == failures:
                return
            interval = backoff_interval(plan.interval, failures, self.max_backoff)
            if interval != job.trigger.interval_length:
                job.reschedule(self._trigger(plan, failures))
        if failures:
            log.warning("feed.backoff", feed=plan.name, failures=failures, next_poll_in_s=interval)
        else:
            log.info("feed.recovered", feed=plan.name, next_poll_in_s=interval)

    def _upkeep(self) -> None:
        """`run.upkeep` (its steps at most daily), then the series [[follow]]'s topics
        bring in (searched at most daily) join the plans; stops when the daemon does."""
        if self.stopping.is_set():
            return
        try:
            run.upkeep(self.config, utc_now(), should_stop=self.stopping.is_set)
            if self.config.follow and not self.stopping.is_set():
                plans = plans_for(self.config)  # the topics, asked outside the lock
                with self.lock:
                    self._apply(plans)
        except Exception as exc:  # a bug: this thread must not die silently
            log.error("daemon.upkeep_failed", error=str(exc))

    def _heartbeat(self) -> None:
        if not self.stopping.is_set():
            self._write_heartbeat(health.beat, feeds=len(self.plans))

    def _write_heartbeat(self, write: Any, **kwargs: Any) -> None:
        try:
            with contextlib.closing(open_archive(self.config.archive_path)) as db:
                write(db, utc_now(), **kwargs)
        except Exception as exc:
            log.error("daemon.heartbeat_failed", error=str(exc))

    # --- HTTP -------------------------------------------------------------------------------

    def _make_client(self, settings: HttpSettings) -> httpx.Client:
        """The client all polls share (so per-host limits hold across feeds). Once the
        daemon is stopping it sends no more requests (a retry, a redirect: such a poll has
        not reached its transaction) and a wait between retries ends at once."""
        policy = FetchPolicy.from_settings(settings, sleep=self.stopping.wait)
        client = make_client(settings, policy=policy)
        client.event_hooks["request"].append(self._refuse_when_stopping)  # the client's own list
        return client

    def _refuse_when_stopping(self, _request: httpx.Request) -> None:
        if self.stopping.is_set():
            raise PollAbandonedError


def _grace_time(plan: FeedPlan) -> int:
    return max(1, round(plan.interval))


def _in_archive(
    config: Config, step: Callable[[Database, Config, datetime], Any], event: str
) -> None:
    """One of the run's steps in its own connection; a failure is logged, the polls go on."""
    try:
        with contextlib.closing(open_archive(config.archive_path)) as db:
            step(db, config, utc_now())
    except Exception as exc:
        log.exception(event, error=str(exc))
