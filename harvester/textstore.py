"""How `talk_versions` keeps each version's texts: `raw` compressed, `description` once.

- `raw` is the VEVENT exactly as received, as a standard zlib stream: any tool reads it
  with `zlib.decompress(raw).decode()` (`unpack_raw` here).
- `description` is a generated column in plain SQL. A site DESCRIPTION is mostly the
  fields the row already holds (the abstract, then the talk page, title, speaker and
  series in its header), so the row stores `description_frame`, a template where each of
  those fields stands as one control character (`description_form` 1), or the whole
  description (`description_form` NULL) when the template would not give it back exactly.
  The column's expression is in migrations/0012_textstore.sql.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

_LEVEL = 9  # small texts: level 9 costs little more than 6, and keeps 1-2% more

STORED = ("description_frame", "description_form")  # what the row stores for `description`
DERIVED = ("description",)  # generated from them


def stored_columns(columns: Iterable[str]) -> list[str]:
    """The columns written for a row with `columns`: the derived ones become the stored."""
    return [c for c in columns if c not in DERIVED] + list(STORED)


Packed = tuple[str | None, int | None, bytes | None]
"""`description_frame`, `description_form` and `raw` as stored for a row."""


def stored_row(
    row: Mapping[str, Any], prepared: Mapping[tuple[Any, ...], Packed] | None = None
) -> dict[str, Any]:
    """A version row as written: `description` replaced by its template and `raw`
    compressed, taken from `prepared` (by `text_key`) when it holds them."""
    stored = {k: v for k, v in row.items() if k not in DERIVED}
    found = prepared.get(text_key(row)) if prepared else None
    stored["description_frame"], stored["description_form"], stored["raw"] = found or packed(row)
    return stored


def packed(row: Mapping[str, Any]) -> Packed:
    """What a row with these texts stores for them (compressing takes longest)."""
    return (*frame(row), pack_raw(row.get("raw")))


def text_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything `packed(row)` depends on."""
    return tuple(row.get(name) for name in _TEXT_FIELDS)


def pack_raw(raw: str | None) -> bytes | None:
    return None if raw is None else zlib.compress(raw.encode("utf-8"), _LEVEL)


def unpack_raw(stored: bytes | None) -> str | None:
    return None if stored is None else zlib.decompress(stored).decode("utf-8")


# --- description -----------------------------------------------------------------------------

# Template 1: each field that occurs verbatim in the description stands for itself as one
# control character (the harvester's text fields have none): the abstract first, as it is
# the longest; then the parts of the site's header. Expanded in the reverse order.
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
