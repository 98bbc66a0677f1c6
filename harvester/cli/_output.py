"""The CLI's output choke point: `redacted_output` masks every write to stdout and stderr,
`redacted_click_errors` every click error message; and `aligned`, the one table layout of
the terminal. Cheap to import: `harvester --help` loads this and click, nothing of the
pipeline."""

from __future__ import annotations

import contextlib
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from typing import IO, Any

import click

from harvester.redact import escape_controls, redact


class _RedactingText:
    """A text stream whose every write goes through `redact`; the rest is the stream's own."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: Any) -> int:
        if isinstance(text, str):
            text = redact(text)
        return self._stream.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    @property
    def buffer(self) -> _RedactingBinary:
        return _RedactingBinary(self._stream.buffer)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _RedactingBinary:
    """The binary side (click writes bytes there): decoded, redacted, encoded back."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        size = len(data)
        if isinstance(data, bytes | bytearray):
            text = bytes(data).decode("utf-8", "surrogateescape")
            data = redact(text).encode("utf-8", "surrogateescape")
        self._stream.write(data)
        return size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """While the CLI runs, everything written to stdout and stderr is redacted (logs too)."""
    saved = sys.stdout, sys.stderr
    sys.stdout = _RedactingText(saved[0])
    sys.stderr = _RedactingText(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def redacted_click_errors() -> Iterator[None]:
    """A click error's message (usage, bad parameter, file errors) is masked before it shows."""
    try:
        yield
    except click.ClickException as exc:
        exc.message = redact(exc.message)  # type: ignore[misc]
        if isinstance(exc, click.FileError):
            exc.ui_filename = redact(exc.ui_filename)  # type: ignore[misc]
        raise


def aligned(rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """The rows as lines whose columns line up: two spaces between columns, each as wide
    as its widest cell on screen, the columns in `right` (numbers) aligned to the right,
    no trailing spaces. Each cell is measured as it will show: masked (a secret is shorter
    than its mask's input) and with its control characters escaped."""
    rows = [[escape_controls(redact(cell)) for cell in row] for row in rows]
    widths = [max(map(_screen_width, column)) for column in zip(*rows, strict=True)]
    lines = []
    for row in rows:
        cells = []
        for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
            padding = " " * (width - _screen_width(cell))
            cells.append(padding + cell if index in right else cell + padding)
        lines.append("  ".join(cells).rstrip())
    return lines


def _screen_width(text: str) -> int:
    """Columns `text` takes on a terminal: wide (CJK) characters two, combining ones none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )
