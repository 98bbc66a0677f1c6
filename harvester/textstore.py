"""Each version's text stored once: how `talk_versions` keeps `raw` and `description`.

A site VEVENT is mostly its DESCRIPTION, and a site DESCRIPTION is mostly its abstract,
so the row keeps the abstract once and derives the other two (SQL generated columns):

- `description` = `description_frame`, a template where the abstract and the other
  fields the site repeats in it (talk page, title, speaker, series) stand as one control
  character each, expanded from the row's own columns (or the whole description, when
  `description_form` is NULL). Pure SQL: any SQLite reads it.
- `raw` = `harvester_raw(raw_z, description)`, a function registered on every connection
  the harvester (and its Datasette plugin) opens. `raw_z` is the VEVENT with the value of
  its DESCRIPTION line cut out, deflated: the function escapes and folds `description`
  back in (ics.escape_text, ics.fold_line). A VEVENT that does not come back byte for
  byte that way is kept whole in `raw_z` instead.

`raw_z` begins with its format byte. Formats are frozen once archives hold them (the
dictionary included): a change is a new format, and every format stays readable.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from harvester import ics

RAW_FUNCTION = "harvester_raw"

# Format 1: raw deflate (no zlib header or checksum) with _DICTIONARY_1; the second byte
# is 0 for the whole VEVENT, else 1 + the index of the ics.FOLD_RULES rule that refolds
# the DESCRIPTION line.
_FORMAT_1 = 1
_WHOLE = 0
_LEVEL = 9
_WBITS = -15
_MEMORY = 2  # zlib's memLevel: the encoder's, not the format's; small inputs need little
_LINE_BREAK = re.compile(rb"\r?\n")
_LINE_END = re.compile(rb"\n(?![ \t])")  # an LF that is no fold
# Where the DESCRIPTION value was, in the residual: no text the harvester keeps has NUL.
_MARK = b"\0"
# Text common to the site's VEVENTs (later parts are cheaper to refer to). Frozen.
_DICTIONARY_1 = (
    b"https://zoom.us/j/ Password hint: Interactive livestream: View-only livestream: "
    b"URL:https://\r\nSEQUENCE:0\r\nLOCATION:https://researchseminars.org/talk/\r\n"
    b"END:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:\r\nDTSTART:20"
    b"0000Z\r\nDTEND:20"
    b"0000Z\r\nDTSTAMP:20"
    b"Z\r\nUID:\r\nDESCRIPTION:\0\\n\r\nLOCATION:https://researchseminars.org/talk/"
)

STORED = ("description_frame", "description_form", "raw_z")  # the columns the row really stores
DERIVED = ("description", "raw")  # generated from them


def stored_columns(columns: Iterable[str]) -> list[str]:
    """The columns written for a row with `columns`: the derived ones become the stored."""
    return [c for c in columns if c not in DERIVED] + list(STORED)


Packed = tuple[str | None, int | None, bytes | None]
"""The values of STORED for a row."""


def stored_row(
    row: Mapping[str, Any], prepared: Mapping[tuple[Any, ...], Packed] | None = None
) -> dict[str, Any]:
    """A version row as written: `description` and `raw` replaced by what derives them,
    taken from `prepared` (by `text_key`) when it holds them."""
    stored = {k: v for k, v in row.items() if k not in DERIVED}
    found = prepared.get(text_key(row)) if prepared else None
    stored["description_frame"], stored["description_form"], stored["raw_z"] = found or packed(row)
    return stored


def packed(row: Mapping[str, Any]) -> Packed:
    """What a row with these texts stores for them (the deflate, checked, takes longest)."""
    return (*frame(row), pack_raw(row.get("raw"), row.get("description")))


def text_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything `packed(row)` depends on."""
    return tuple(row.get(name) for name in _TEXT_FIELDS)


# --- description -----------------------------------------------------------------------------

# Template 1: each field that occurs verbatim in the description stands for itself as one
# control character (the harvester's text fields have none): the abstract first, as it is
# the longest; then the parts of the site's header. Expanded in the reverse order, by the
# column's SQL expression (written out in migrations/0012_textstore.sql).
_TEMPLATE_1 = (
    ("\x05", "abstract"),
    ("\x01", "talk_url"),
    ("\x02", "title"),
    ("\x03", "speaker"),
    ("\x04", "series_name"),
)
_PLACEHOLDER = re.compile("[" + "".join(mark for mark, _field in _TEMPLATE_1) + "]")
_TEXT_FIELDS = ("raw", "description", *(field for _mark, field in _TEMPLATE_1))


def frame(row: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """(`description_frame`, `description_form`): the row's description as a template of
    its other fields (form 1), or as it is (form NULL) when it would not come back exactly."""
    description = row.get("description")
    if not description or _PLACEHOLDER.search(description):
        return description, None
    template = description
    for mark, field in _TEMPLATE_1:
        value = row.get(field)
        if value and value in template:
            template = template.replace(value, mark)
    if template == description or unframe(template, 1, row) != description:
        return description, None
    return template, 1


def unframe(frame_text: str | None, form: int | None, row: Mapping[str, Any]) -> str | None:
    """The description: what the SQL expression of the column computes."""
    if form is None or frame_text is None:
        return frame_text
    text = frame_text
    for mark, field in reversed(_TEMPLATE_1):
        if _PLACEHOLDER.search(row.get(field) or ""):
            return None  # SQL would expand it again: `frame` never makes such a template
        text = text.replace(mark, row.get(field) or "")
    return text


# --- raw ---------------------------------------------------------------------------------------


def pack_raw(raw: str | None, description: str | None) -> bytes | None:
    """`raw` as stored in `raw_z`: what `unpack_raw(…, description)` gives back exactly."""
    if raw is None:
        return None
    data = raw.encode("utf-8", "surrogatepass")
    if description and _MARK not in data:
        escaped = _escaped(description)
        found = _residual(data, escaped)
        if found is not None:
            residual, first_line = found
            for index in _likely_rules(first_line):
                if _rebuild(residual, escaped, ics.FOLD_RULES[index]) == data:
                    return bytes([_FORMAT_1, 1 + index]) + _deflate(residual)
    return bytes([_FORMAT_1, _WHOLE]) + _deflate(data)


def _likely_rules(first_line: int) -> list[int]:
    """The FOLD_RULES that can have made a first physical line of `first_line` octets (none
    makes a longer one than its `first`), those that fill it exactly first. The order is
    fixed: two rules may both rebuild a block, and the same block must store the same bytes."""
    rules = [i for i, rule in enumerate(ics.FOLD_RULES) if rule.first >= first_line]
    return sorted(rules, key=lambda i: ics.FOLD_RULES[i].first != first_line)


def unpack_raw(raw_z: bytes | None, description: str | None) -> str | None:
    """The VEVENT text `pack_raw` was given."""
    if raw_z is None:
        return None
    if raw_z[0] != _FORMAT_1:
        raise ValueError(f"unknown raw_z format {raw_z[0]}")
    data = _inflate(raw_z[2:])
    if raw_z[1] != _WHOLE:
        if description is None:
            raise ValueError("raw_z needs the description it was stored with")
        data = _rebuild(data, _escaped(description), ics.FOLD_RULES[raw_z[1] - 1])
    return data.decode("utf-8", "surrogatepass")


def _escaped(description: str) -> bytes:
    return ics.escape_text(description).encode("utf-8", "surrogatepass")


def _unfold(folded: bytes) -> bytes:
    """A line whose every line break is a fold, unfolded (plain replaces: cheaper than re)."""
    for fold in (b"\r\n ", b"\r\n\t", b"\n ", b"\n\t"):
        folded = folded.replace(fold, b"")
    return folded


def _residual(data: bytes, escaped: bytes) -> tuple[bytes, int] | None:
    """`data` with its first DESCRIPTION line unfolded and the `escaped` description in it
    replaced by the mark, and the octets of the line's first physical line; None when
    there is no such line or no such text in it."""
    at = data.find(b"\nDESCRIPTION")
    if at < 0:
        return None
    start = at + 1
    line_end = _LINE_END.search(data, start)  # the next line break that is not a fold
    end = line_end.start() if line_end else len(data)
    if data[end - 1 : end] == b"\r":
        end -= 1
    folded = data[start:end]  # every line break in it is a fold
    first_break = _LINE_BREAK.search(folded)
    first_line = first_break.start() if first_break else len(folded)
    line = _unfold(folded)
    value_at = line.find(escaped, line.find(b":") + 1)
    if value_at < 0:
        return None
    marked = line[:value_at] + _MARK + line[value_at + len(escaped) :]
    return data[:start] + marked + data[end:], first_line


def _rebuild(residual: bytes, escaped: bytes, rule: ics.FoldRule) -> bytes:
    at = residual.index(_MARK)
    start = residual.rfind(b"\n", 0, at) + 1
    end = residual.find(b"\n", at)
    end = len(residual) if end < 0 else end
    newline = b"\r\n" if residual[end - 1 : end] == b"\r" else b"\n"
    if newline == b"\r\n":
        end -= 1
    line = residual[start:at] + escaped + residual[at + 1 : end]
    return residual[:start] + ics.fold_line(line, rule, newline) + residual[end:]


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEMORY, zdict=_DICTIONARY_1)
    return packer.compress(data) + packer.flush()


def _inflate(data: bytes) -> bytes:
    unpacker = zlib.decompressobj(_WBITS, zdict=_DICTIONARY_1)
    return unpacker.decompress(data) + unpacker.flush()


# --- SQL -----------------------------------------------------------------------------------------


def register(conn: sqlite3.Connection) -> None:
    """The functions `talk_versions` needs: `harvester_raw` (read) and, for the migration
    that rebuilt the table, `harvester_raw_z` and `harvester_frame` (write)."""
    conn.create_function(RAW_FUNCTION, 2, unpack_raw, deterministic=True)
    conn.create_function("harvester_raw_z", 2, pack_raw, deterministic=True)
    conn.create_function("harvester_frame", 6, _sql_frame, deterministic=True)


@contextlib.contextmanager
def raw_unread(conn: sqlite3.Connection) -> Iterator[None]:
    """Inside: `raw` reads as NULL, inflating nothing. SQLite computes every generated
    column of a row it writes (an INSERT into talk_versions would rebuild the `raw` just
    packed) and of every row `PRAGMA quick_check` visits (every version the archive holds:
    seconds for a large one), where neither uses the value."""
    conn.create_function(RAW_FUNCTION, 2, _no_raw, deterministic=True)
    try:
        yield
    finally:
        conn.create_function(RAW_FUNCTION, 2, unpack_raw, deterministic=True)


def _no_raw(_raw_z: bytes | None, _description: str | None) -> None:
    return None


def _sql_frame(
    description: str | None,
    abstract: str | None,
    talk_url: str | None,
    title: str | None,
    speaker: str | None,
    series_name: str | None,
) -> str:
    """`[frame, form]` as JSON, from the columns of `_TEMPLATE_1` (in the migration)."""
    fields = (abstract, talk_url, title, speaker, series_name)
    row = dict(zip([field for _mark, field in _TEMPLATE_1], fields, strict=True))
    return json.dumps(frame(row | {"description": description}))
