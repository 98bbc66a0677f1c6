"""seminar-harvester: archive researchseminars.org calendars with the full history of every talk.

The public API is small; everything else lives in private modules:

- :func:`harvester.config.load_config` reads and validates a config file.
- :func:`harvester.sync.poll_feed` runs one feed through fetch → parse → diff → store.
- :func:`harvester.archive.open_archive` opens (and migrates) an archive.

`__version__` and `USER_AGENT` are looked up on first use: importlib.metadata costs a
start-up of its own, and `harvester --help` should not pay it.
"""

from __future__ import annotations

from functools import cache

PROJECT_URL = "https://github.com/seminar-harvester/seminar-harvester"


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seminar-harvester")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "0.0.0"


def user_agent() -> str:
    return f"seminar-harvester/{_version()} (+{PROJECT_URL})"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    if name == "USER_AGENT":
        return user_agent()
    raise AttributeError(f"module 'harvester' has no attribute {name!r}")
