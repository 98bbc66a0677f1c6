"""One exception tree: every error the harvester raises on purpose is a `HarvesterError`.

Each message is one line a user can act on. The CLI shows `str(exc)` after secret masking
(`harvester.redact`), so a message may name a URL as it was given.
"""

from __future__ import annotations

from pathlib import Path

from harvester.redact import redact


class HarvesterError(Exception):
    """The base: a failure the harvester understands, with a one-line message."""


class ConfigError(HarvesterError):
    """A config file that cannot be used; the message names the file and the key."""

    def __init__(self, path: Path | str, key: str, reason: str) -> None:
        self.path, self.key, self.reason = str(path), key, reason
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {reason}")


class ConfigEditError(HarvesterError):
    """An edit that cannot be made; the file is left untouched."""


class ApiError(HarvesterError):
    """The site's JSON API could not be used; the message is one line a user can act on."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status, self.code = status, code
        super().__init__(message)


class FetchError(HarvesterError):
    """A poll that produced no usable body."""

    def __init__(
        self,
        url: str,
        reason: str,
        status: int | None = None,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = redact(reason)
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(f"{redact(url)}: {self.reason}")


class ParseError(HarvesterError):
    """The body is not one complete calendar; nothing from it may be archived."""


class StaleKnowledgeError(HarvesterError):
    """A KnownTalk no longer matches the archive (another poll changed it meanwhile)."""


class ArchiveError(HarvesterError):
    """The archive cannot be opened or written; the message says which file and why."""


class ArchiveWriteError(ArchiveError):
    """SQLite could not write (disk full, read-only file, I/O error); nothing was written."""


class LockBusyError(HarvesterError):
    """Another process holds the lock; the message says which lock and, if known, who."""
