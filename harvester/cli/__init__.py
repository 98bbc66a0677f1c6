"""The `harvester` command line: a thin layer over the pipeline and the archive queries.

The root group is the CLI's secrets choke point: it remembers the secrets of every URL on
the command line before anything runs, masks click's own error messages, and redacts all
of stdout and stderr (summaries, errors, warnings, log lines) while a command runs.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from harvester import __version__
from harvester.cli._output import redacted_click_errors, redacted_output
from harvester.redact import redact, remember_urls_in

# name → (module:attribute in harvester.cli, one-line help). A command's module is imported
# only when the command runs (or its own help shows): `harvester --help` and the
# archive-reading commands start without httpx, APScheduler, tomlkit or Datasette. The
# one-line help is what `harvester --help` lists; tests/test_startup.py checks it against
# each command's.
COMMANDS: dict[str, tuple[str, str]] = {
    "compact": ("maintain:compact", "Compact old unchanged polls into one row per feed per day."),
    "discover": (
        "feeds:discover",
        "Find series through the site's JSON API ([site] base_url) and optionally follow them.",
    ),
    "export": (
        "read:export",
        "The talks as the archive knew them at a time: every talk present then, sorted by UID.",
    ),
    "feeds": (
        "feeds:feeds_group",
        "List and edit the feeds of the config file (comments and layout are kept).",
    ),
    "history": (
        "read:history",
        "Every version of one talk, oldest first: its kinds of change, when it happened (between "
        "the last time the archive saw the old content and the poll that saw the new), and what "
        "changed, word by word for long texts.",
    ),
    "import": (
        "sync:import_",
        "Archive local .ics files exactly as if they had been fetched (backfill, offline use).",
    ),
    "notify": (
        "notify:notify",
        "Deliver the pending notifications of the [[notify]] targets (one message per target).",
    ),
    "run": (
        "run:run",
        "The daemon: poll every enabled feed on its interval until SIGTERM or SIGINT.",
    ),
    "serve": (
        "serve:serve",
        "Browse the archive in Datasette: search, upcoming talks, changes, a calendar (.ics) and "
        "a changes feed (Atom).",
    ),
    "snapshot": (
        "snapshot:snapshot",
        "Copy the archive to OUT as of one moment, safe while `harvester run` writes.",
    ),
    "status": (
        "read:status",
        "A table of the feeds: last outcome, last poll, last success, talks, changes, problems.",
    ),
    "sync": (
        "sync:sync",
        "Poll every enabled feed of the config once (or only URLS) and archive the changes.",
    ),
}


class _Harvester(click.Group):
    """The root group: no command's output, nor click's, shows a known secret."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        for arg in args:
            remember_urls_in(arg)
        with redacted_output():
            return super().main(args, *rest, **kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with redacted_click_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with redacted_click_errors():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list without importing every command's module."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:  # a command not loaded yet: its one-line help, shortened by click
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load_command(name: str) -> click.Command:
    module, _, attribute = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(f"harvester.cli.{module}"), attribute)
    assert isinstance(command, click.Command)
    return command


@click.group(cls=_Harvester, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message="harvester, version %(version)s")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Config file. Default: $HARVESTER_CONFIG, then ./config/harvester.toml.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    envvar="HARVESTER_DB",
    help="Archive file; overrides archive.path of the config ($HARVESTER_DB).",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    help="Log format on stderr. Default: console on a terminal, json otherwise.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug events too (HTTP requests).")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only; no summary.")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    db_path: str | None,
    log_format: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Archive researchseminars.org calendars in SQLite, with the full history of every talk."""
    from harvester.cli._app import App
    from harvester.logs import configure_logging

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    taken = configure_logging(log_format, level)  # type: ignore[arg-type]
    ctx.obj = App(config_path, db_path, quiet, logs_for_people=taken == "console")


def main() -> None:
    """The console script. What no command could turn into a clear line of its own still
    ends in one, never a traceback: a damaged archive, text that is not UTF-8."""
    import sqlite3

    try:
        cli(prog_name="harvester")
    except sqlite3.DatabaseError as exc:
        _last_word(
            f"the archive cannot be read: {exc} (is it damaged? restore it from a backup,"
            " or recover it with the sqlite3 shell's .recover)",
            1,
        )
    except UnicodeError as exc:
        _last_word(f"a name or an argument is not valid UTF-8 ({type(exc).__name__})", 2)


def _last_word(message: str, code: int) -> None:
    click.echo(f"error: {redact(message)}", err=True)
    raise SystemExit(code)
