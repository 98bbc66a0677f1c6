"""seminar-harvester: archive researchseminars.org calendars with the full history of every talk.

The public API is small; everything else lives in private modules:

- :func:`harvester.config.load_config` reads and validates a config file.
- :func:`harvester.sync.poll_feed` runs one feed through fetch → parse → diff → store.
- :func:`harvester.archive.open_archive` opens (and migrates) an archive.

`__version__` is the one place the version is written (pyproject.toml reads it from here):
looking it up through importlib.metadata would cost every start-up about 20 ms.
"""

from __future__ import annotations

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/seminar-harvester/seminar-harvester"
USER_AGENT = f"seminar-harvester/{__version__} (+{PROJECT_URL})"


def user_agent() -> str:
    return USER_AGENT
