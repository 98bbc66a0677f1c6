"""The `harvester run` command (registered on the CLI group in `harvester.cli`)."""

from __future__ import annotations

import contextlib
import logging
import os

import click

from harvester.cli._app import EXIT_LOCKED, App, Duration, UsageProblem, fail
from harvester.cli.notify import prepare_run
from harvester.daemon import (
    DEFAULT_GRACE_S,
    DEFAULT_MAX_BACKOFF_S,
    DEFAULT_WORKERS,
    Daemon,
)
from harvester.errors import LockBusyError
from harvester.lock import hold


@click.command()
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="Polls running at once.",
)
@click.option(
    "--max-backoff",
    type=Duration(),
    default=DEFAULT_MAX_BACKOFF_S,
    show_default="6h",
    help="Longest interval a failing feed backs off to (it doubles per consecutive failure).",
)
@click.option(
    "--grace",
    type=Duration(),
    default=DEFAULT_GRACE_S,
    show_default="10s",
    help="On SIGTERM/SIGINT, how long polls in flight may take to finish.",
)
@click.pass_obj
def run(app: App, workers: int, max_backoff: float, grace: float) -> None:
    """The daemon: poll every enabled feed on its interval until SIGTERM or SIGINT.

    SIGHUP reloads the config (a bad config is refused and the old one kept). A failing
    feed backs off. Logs go to stderr (JSON lines when not on a terminal). Exit code 0 on
    a clean stop, 1 when the archive cannot be opened, 2 for a usage or config error
    (including a config with neither an enabled feed nor a [[follow]]), 3 when another
    `harvester run` already uses this archive. With [[follow]] alone, the daemon waits for
    the topics' series (asked again hourly while the site's API does not answer).
    """

    config = app.config
    if not any(feed.enabled for feed in config.feeds) and not config.follow:
        raise UsageProblem(f"no feeds to poll: add [[feeds]] to {config.path or 'a config file'}")
    with contextlib.closing(app.archive()) as db:  # create, migrate and check up front
        prepare_run(app, db)
    daemon = Daemon(
        config,
        config_path=app.config_path,
        db_override=app.db_path,
        workers=workers,
        max_backoff=max_backoff,
        grace=grace,
    )
    try:
        with hold(config.archive_path, "daemon"):
            abandoned = daemon.serve()
            if abandoned:
                # Worker threads still inside a poll would keep the interpreter alive: leave
                # now, still holding the locks (closing the lock's descriptor of the archive
                # would drop the SQLite locks of those threads). Their uncommitted
                # transactions are rolled back by SQLite.
                logging.shutdown()
                os._exit(0)
    except LockBusyError as exc:
        fail(f"another `harvester run` uses this archive: {exc}", EXIT_LOCKED)
