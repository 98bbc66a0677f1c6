"""structlog, configured once: a console renderer on a terminal, JSON lines otherwise.

Standard-library loggers (httpx, apscheduler) go through the same processors. The final
renderer's line, tracebacks included, goes through `harvester.redact.redact`: no secret the
harvester knows leaves in a log line, whichever field or record carried it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

from harvester.redact import redact, redact_query_secrets

LogFormat = Literal["console", "json"]


def configure_logging(
    log_format: LogFormat | None = None, level: int = logging.INFO, stream: TextIO | None = None
) -> LogFormat:
    """Set up structlog and route stdlib logging through it; safe to call more than once.
    Returns the format taken."""
    stream = stream or sys.stderr
    if log_format is None:
        log_format = "console" if stream.isatty() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if log_format == "console"
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )

    def redacted(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        """The final renderer's line (a str from both renderers), masked whole."""
        return redact_query_secrets(redact(renderer(logger, method, event_dict)))

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redacted,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO with the full URL; keep it for -v only.
    noisy_level = max(level, logging.WARNING) if level > logging.DEBUG else logging.DEBUG
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(noisy_level)
    # Apprise quotes URLs, headers and payloads in forms of its own, which the remembered
    # secrets may not match: none of its lines is shown, even with -v. A failed delivery's
    # reason comes back through `notify.deliver` (captured, masked) as `notify.failed`.
    apprise = logging.getLogger("apprise")
    apprise.setLevel(logging.WARNING)
    apprise.propagate = False
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # Apprise's HTTP: its request lines
    return log_format


def get_logger(name: str = "harvester") -> Any:
    return structlog.get_logger(name)
