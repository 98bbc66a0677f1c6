"""What every command shares: the `App` state, exit codes, one `UsageProblem`, param types;
the output choke point (`redacted_output`) lives in `harvester.cli._output`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from harvester.config import Config, load_config, parse_duration
from harvester.errors import ArchiveError, ConfigError, HarvesterError

if TYPE_CHECKING:
    from sqlite_utils import Database

EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 1, 2, 3
POLL_COUNTS = ("new", "changed", "removed", "restored", "unchanged")  # as output lists them


class UsageProblem(HarvesterError, click.ClickException):  # noqa: N818 (the name users see)
    """A usage or config error: one line on stderr, exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        click.ClickException.__init__(self, message)


@dataclass
class App:
    config_path: str | None
    db_path: str | None
    quiet: bool
    # Log lines read by people (console): a failed poll's is then the one line it gets.
    logs_for_people: bool = False
    _config: Config | None = field(default=None, init=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            if self.db_path is not None and not self.db_path.strip():
                raise UsageProblem("--db (or $HARVESTER_DB) is empty: give the archive's path")
            try:
                self._config = load_config(self.config_path, self.db_path)
            except ConfigError as exc:
                raise UsageProblem(f"bad config: {exc}") from None
        return self._config

    def archive(self, *, read_only: bool = False) -> Database:
        """The configured archive; `read_only` for the commands that only read it."""
        from harvester.archive import open_archive  # sqlite-utils: not for `--help`

        with archive_errors():
            return open_archive(
                self.config.archive_path,
                file_mode=self.config.archive_file_mode,
                read_only=read_only,
            )

    def say(self, text: str) -> None:
        if not self.quiet:
            click.echo(text)


@contextlib.contextmanager
def archive_errors() -> Iterator[None]:
    """An archive that cannot be written (disk full, read-only) ends the command: exit 1."""
    try:
        yield
    except ArchiveError as exc:
        fail(str(exc))


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


class IsoTime(click.ParamType):  # type: ignore[type-arg]
    """ISO 8601 date or date-time; without an offset it is UTC."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-05-01T12:00:00Z)", param, ctx)
        try:
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            self.fail(
                f"{value!r} is out of range: in UTC it is before year 1 or after 9999", param, ctx
            )


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration as in the config: `90s`, `10m`, `6h`, or plain seconds."""

    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value, "command line", param.name if param else "")
        except ConfigError as exc:
            self.fail(exc.reason, param, ctx)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)
