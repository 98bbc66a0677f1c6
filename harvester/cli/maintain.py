"""`harvester compact`: compact old polls now."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from harvester.archive import compact_polls
from harvester.cli._app import App, archive_errors
from harvester.humane import counted, human_time


@click.command()
@click.pass_obj
def compact(app: App) -> None:
    """Compact old unchanged polls into one row per feed per day.

    Unchanged polls older than `[archive] keep_polls` (default 30d) leave `fetches` for
    `poll_days`; failed polls and polls that changed something are kept. A sync does this
    by itself (at most once a day), as does the daemon; this runs it now. It takes the
    write lock in short batches, so it can run beside a sync or the daemon.
    """
    db = app.archive()
    with archive_errors():
        done = compact_polls(db, datetime.now(UTC), app.config.archive_keep_polls, force=True)
    app.say(f"{counted(done.polls, 'unchanged poll')} before {human_time(done.before)} compacted")
