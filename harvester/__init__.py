"""seminar-harvester: archive researchseminars.org calendars with the full history of every talk.

The public API is small; everything else lives in private modules:

- :func:`harvester.config.load_config` reads and validates a config file.
- :func:`harvester.sync.poll_feed` runs one feed through fetch → parse → diff → store.
- :func:`harvester.archive.open_archive` opens (and migrates) an archive.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seminar-harvester")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

PROJECT_URL = "https://github.com/seminar-harvester/seminar-harvester"
USER_AGENT = f"seminar-harvester/{__version__} (+{PROJECT_URL})"
