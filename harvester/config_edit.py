"""Editing `harvester.toml` in place, keeping the user's comments and layout (tomlkit).

Every edit changes only the lines of the `[[feeds]]` entry it touches: adding appends an
entry, removing takes out the entry's own lines (comments that follow it stay where they
were), disabling adds one `enabled = false` line under the entry's keys. The new text is
validated as a config before it is written, atomically; a file tomlkit cannot reproduce
byte for byte is refused rather than rewritten.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Array, Comment, InlineTable, Item, Null, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from harvester.config import FETCHABLE_SCHEMES, parse_config
from harvester.errors import ConfigEditError, ConfigError
from harvester.site import (
    SITE_HOST,
    default_feed_name,
    is_shortname,
    normalize_url,
    series_feed_url,
    split_url,
)

NEW_CONFIG_HEADER = (
    "# seminar-harvester configuration, created by `harvester feeds add`.\n"
    "# Every key is optional except feeds[].url; see `harvester --help`.\n"
)
# A series or talk page of the site, or its feed: the feed is the page's path + /ics.
_PAGE_PATH = re.compile(r"^/(?P<page>seminar/[^/]+|talk/[^/]+/-?\d+)(/ics)?/?$")


@dataclass(frozen=True)
class FeedEntry:
    """One `[[feeds]]` entry as written in the file."""

    index: int
    url: str  # canonical feed URL (may hold a personal token: mask before showing)
    name: str
    enabled: bool


def canonical_feed_url(ref: str, base_url: str) -> str:
    """The feed URL a user means by `ref`: a bare shortname, a feed URL or a page URL.

    `webcal://` means https, the site's old host names mean the site, and on the site a
    series or talk page URL means that page's feed.
    """
    ref = ref.strip()
    if is_shortname(ref):
        return series_feed_url(base_url, ref)
    parts = split_url(ref)
    if parts is None or parts.scheme.lower() not in FETCHABLE_SCHEMES or not parts.hostname:
        raise ConfigEditError(
            f"{ref!r} is neither a series shortname (like MITNT) nor an http(s) or webcal URL"
        )
    url = normalize_url(ref)  # the site's old host names are the site's now
    parts = urlsplit(url)
    on_site = parts.netloc.lower() in {SITE_HOST, urlsplit(base_url).netloc.lower()}
    if on_site and (match := _PAGE_PATH.match(parts.path)):
        return urlunsplit((parts.scheme, parts.netloc, f"/{match['page']}/ics", parts.query, ""))
    return url


class ConfigFile:
    """One config file opened for editing; `save()` writes it back."""

    def __init__(self, path: Path, text: str, base_url: str, *, created: bool = False) -> None:
        self.path, self.base_url, self.created = path, base_url, created
        self.original = text
        self.crlf = "\r\n" in text and "\n" not in text.replace("\r\n", "")
        try:
            self.doc: TOMLDocument = tomlkit.parse(text)
        except tomlkit.exceptions.TOMLKitError as exc:
            raise ConfigEditError(f"{path}: not valid TOML: {exc}") from None
        if tomlkit.dumps(self.doc) != text:
            raise ConfigEditError(f"{path}: {_why_not_editable(text)}")

    @classmethod
    def open(cls, path: Path, base_url: str, *, create: bool = False) -> ConfigFile:
        """The config at `path`; a missing file is an error unless `create`."""
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            if not create:
                raise ConfigEditError(f"{path}: no such file") from None
            return cls(path, NEW_CONFIG_HEADER, base_url, created=True)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigEditError(f"{path}: cannot read: {exc}") from None
        return cls(path, text, base_url)

    # --- reading -----------------------------------------------------------------------

    def entries(self) -> list[FeedEntry]:
        entries = []
        for index, table in enumerate(self._feed_tables()):
            url, name = table.get("url"), table.get("name")
            if not isinstance(url, str):
                continue
            with contextlib.suppress(ConfigEditError):  # else kept as written
                url = canonical_feed_url(url, self.base_url)
            if not (isinstance(name, str) and name):
                name = default_feed_name(url)
            entries.append(FeedEntry(index, url, name, table.get("enabled", True) is not False))
        return entries

    def find(self, ref: str) -> FeedEntry | None:
        """The entry named `ref`, or whose feed `ref` means (URL, page URL or shortname)."""
        entries = self.entries()
        if named := next((e for e in entries if e.name == ref), None):
            return named
        try:
            url = canonical_feed_url(ref, self.base_url)
        except ConfigEditError:
            return None
        return next((e for e in entries if e.url == url), None)

    def _feeds_item(self) -> AoT | Array | None:
        if "feeds" not in self.doc:
            return None
        item = self.doc.item("feeds")
        if not isinstance(item, AoT | Array):
            raise ConfigEditError(f"{self.path}: feeds must be an array of [[feeds]] tables")
        return item

    def _feed_tables(self) -> list[Table | InlineTable]:
        item = self._feeds_item()
        if item is None:
            return []
        tables: list[Any] = item.body if isinstance(item, AoT) else list(item.value)
        return [t for t in tables if isinstance(t, Table | InlineTable)]

    # --- editing -----------------------------------------------------------------------

    def add(self, url: str, *, name: str | None = None, interval: str | None = None) -> None:
        """Append a `[[feeds]]` entry for `url` (already canonical)."""
        values = {k: v for k, v in (("url", url), ("name", name), ("interval", interval)) if v}
        item = self._feeds_item()
        if isinstance(item, Array):
            inline = tomlkit.inline_table()
            inline.update(values)
            item.append(inline)
            return
        table = tomlkit.table()
        table.update(values)
        if item is not None and item.body and not self._is_last_in_document(item):
            # Comments after the last entry introduce whatever table follows the feeds:
            # keep them there, after the new entry.
            last = item.body[-1].value
            for trailing in _split_trailing(last):
                table.value.add(trailing)
            _ensure_trail_newline(last)
            table.trivia.indent = "\n"
        else:
            table.trivia.indent = self._end_with_newline()
        if item is None:
            self.doc.append("feeds", AoT([table]))
        else:
            item.append(table)

    def remove(self, entry: FeedEntry) -> None:
        item = self._feeds_item()
        if isinstance(item, Array):
            del item[entry.index]
            return
        assert item is not None
        table = item.body[entry.index]
        trailing = _split_trailing(table.value)
        host = item.body[entry.index - 1].value if entry.index > 0 else self._table_before(item)
        if host is not None and (blank := _last_blank_line(host)) is not None:
            # One blank line separated the entry from what came before: it goes with it.
            if trailing and isinstance(trailing[0], Whitespace):
                trailing = trailing[1:]
            elif (
                not trailing
                and entry.index == len(item.body) - 1
                and self._is_last_in_document(item)
            ):
                host.body[blank] = (None, Null())  # key-less: the key index is unaffected
        if trailing:
            self._rehome_before(item, entry.index, trailing, host)
        del item[entry.index]
        if not item.body:
            self.doc.remove("feeds")

    def _rehome_before(
        self, aot: AoT, index: int, trailing: list[Item], host: Container | None
    ) -> None:
        """Put the comments that followed entry `index` where the entry was."""
        if host is not None:
            _ensure_trail_newline(host)
            for trailing_item in trailing:
                host.add(trailing_item)
            return
        # Nothing before to hold them: they become the start of whatever follows.
        text = "".join(t.as_string() for t in trailing)
        following = aot.body[index + 1] if index + 1 < len(aot.body) else self._neighbours(aot)[1]
        if isinstance(following, Table | AoT):
            header = following.body[0] if isinstance(following, AoT) else following
            header.trivia.indent = text + header.trivia.indent
        else:
            for trailing_item in trailing:
                self.doc.add(trailing_item)

    def _neighbours(self, aot: AoT) -> tuple[Item | None, Item | None]:
        """The document's items just before and just after `aot`."""
        items: list[Item | None] = [None, *_items(self.doc), None]
        index = next(i for i, item in enumerate(items) if item is aot)
        return items[index - 1], items[index + 1]

    def _table_before(self, aot: AoT) -> Container | None:
        previous = self._neighbours(aot)[0]
        if isinstance(previous, Table) and not previous.is_super_table():
            return previous.value
        return None

    def set_enabled(self, entry: FeedEntry, enabled: bool) -> bool:
        """Enable or disable an entry; False when it already was."""
        if entry.enabled == enabled:
            return False
        table = self._feed_tables()[entry.index]
        if enabled:
            current = table.value.item("enabled") if isinstance(table, Table) else None
            if isinstance(current, Item) and current.trivia.comment:
                table["enabled"] = True  # keep the user's comment on that line
            else:
                del table["enabled"]  # the default: back to the entry as it was
        elif "enabled" in table or isinstance(table, InlineTable):
            table["enabled"] = False
        else:
            trailing = _split_trailing(table.value)
            _ensure_trail_newline(table.value)
            table.add("enabled", False)
            for trailing_item in trailing:
                table.value.add(trailing_item)
        return True

    def _is_last_in_document(self, item: Item) -> bool:
        body = [it for it in _items(self.doc) if not isinstance(it, Whitespace)]
        return bool(body) and body[-1] is item

    def _end_with_newline(self) -> str:
        """End the document's text with a newline; the indent that leaves one blank line
        between it and a table added at its end."""
        tail = self._tail()
        if tail and not tail.endswith("\n"):
            last = _last_rendered_item(self.doc)
            if last is not None:
                last.trivia.trail += "\n"
        return "" if not tail or tail.endswith("\n\n") else "\n"

    def _tail(self) -> str:
        """The end of the rendered document (rendering only its last part: adds stay linear)."""
        items = _items(self.doc)
        last = items[-1] if items else None
        if isinstance(last, AoT) and last.body:
            tail = last.body[-1].as_string()  # the last entry's body, header left out
        elif last is not None and not isinstance(last, Whitespace | Comment):
            tail = last.as_string()
        else:
            tail = ""
        return tail if len(tail) >= 2 else self.doc.as_string()

    # --- writing -----------------------------------------------------------------------

    @property
    def text(self) -> str:
        text = tomlkit.dumps(self.doc)
        if self.crlf:
            text = re.sub(r"(?<!\r)\n", "\r\n", text)
        return text

    def validate(self) -> None:
        """Refuse text that would not load as a config (duplicate names, bad values...)."""
        text = self.text
        try:
            parse_config(tomllib.loads(text), self.path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigEditError(f"{self.path}: the edit would not be valid TOML: {exc}") from None
        except ConfigError as exc:
            raise ConfigEditError(f"the edit would make the config invalid: {exc}") from None

    def save(self) -> None:
        """Validate, then replace the file atomically (same permissions); no-op if unchanged."""
        if not self.created and self.text == self.original:
            return
        self.validate()
        _atomic_write(self.path, self.text)


# A table header line, `[name]` or `[[name]]`, alone on its line but for a comment.
_HEADER = re.compile(r"^[ \t]*(\[\[?[^\]\n]+\]\]?)[ \t]*(#.*)?$")


def _why_not_editable(text: str) -> str:
    """Why tomlkit cannot give the file back line for line, and what to do about it.

    The one known cause: `[[feeds]]` entries with another table between them. tomlkit
    keeps an array of tables in one place, so saving would move lines the user wrote
    (the file itself is valid: sync and run read it as it is).
    """
    headers = []  # (line number, first key, the header as written)
    for number, line in enumerate(text.splitlines(), 1):
        if match := _HEADER.match(line):
            written = match.group(1)
            key = written.strip("[]").split(".")[0].strip().strip("\"'")
            headers.append((number, key, written))
    feeds = [number for number, key, _ in headers if key == "feeds"]
    for number, key, written in headers:
        if key != "feeds" and feeds and feeds[0] < number < feeds[-1]:
            later = next(line for line in feeds if line > number)
            return (
                f"cannot edit: {written} at line {number} splits the [[feeds]] entries, and"
                " saving would move lines you wrote (sync and run read the file as it is);"
                f" put every [[feeds]] entry together (move the one at line {later}, and any"
                f" after it, above line {number}), then run the command again, or edit the"
                " file by hand"
            )
    return "this file's layout cannot be edited without changing other lines; edit it by hand"


def _split_trailing(container: Container) -> list[Item]:
    """Take the comments and blank lines after a table's last key out of its body."""
    body = container.body
    start = len(body)
    while start > 0 and body[start - 1][0] is None:
        if not isinstance(body[start - 1][1], Comment | Whitespace | Null):
            break
        start -= 1
    trailing = [item for _key, item in body[start:] if not isinstance(item, Null)]
    del body[start:]  # only key-less items: the container's key index is unaffected
    return trailing


def _items(container: Container) -> list[Item]:
    return [item for _key, item in container.body if not isinstance(item, Null)]


def _last_blank_line(container: Container) -> int | None:
    """The index in `container.body` of its last item, if that is a blank line."""
    for index in range(len(container.body) - 1, -1, -1):
        if not isinstance(item := container.body[index][1], Null):
            return index if isinstance(item, Whitespace) else None
    return None


def _ensure_trail_newline(container: Container) -> None:
    items = _items(container)
    last = items[-1] if items else None
    if (
        last is not None
        and not isinstance(last, Whitespace | Table | AoT)
        and "\n" not in last.trivia.trail
    ):
        last.trivia.trail += "\n"


def _last_rendered_item(container: Container) -> Item | None:
    for _key, item in reversed(container.body):
        if isinstance(item, Null):
            continue
        if isinstance(item, Table):
            return _last_rendered_item(item.value) or item
        if isinstance(item, AoT):
            return _last_rendered_item(item.body[-1].value) if item.body else None
        return item
    return None


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
