"""Frozen: the text formats of migration 0012_textstore, as they shipped (harvester 0.x,
commit 050136a). Read by 0012 (to pack) and by 0018_plain_raw (to unpack what 0012 packed);
never imported by live code, never changed.

`raw_z` is format byte 1, then 0 for the whole VEVENT or 1 + the index of the fold rule
that refolds its DESCRIPTION line, then a raw deflate (with `_DICTIONARY_1`) of the VEVENT,
whole or with the escaped DESCRIPTION value cut out (a NUL marks where).
`description_frame` is the description with the abstract, talk_url, title, speaker and
series_name replaced by one control character each (`description_form` 1), or as it is.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FoldRule:
    first: int
    rest: int
    keep_escapes: bool = False


FOLD_RULES = (FoldRule(74, 74, keep_escapes=True), FoldRule(74, 74), FoldRule(75, 74))
_UTF8_CONTINUATION = range(0x80, 0xC0)
_ESCAPE_STARTS = b"\\^"

_FORMAT_1 = 1
_WHOLE = 0
_LEVEL = 9
_WBITS = -15
_MEMORY = 2
_LINE_BREAK = re.compile(rb"\r?\n")
_LINE_END = re.compile(rb"\n(?![ \t])")
_MARK = b"\0"
_DICTIONARY_1 = (
    b"https://zoom.us/j/ Password hint: Interactive livestream: View-only livestream: "
    b"URL:https://\r\nSEQUENCE:0\r\nLOCATION:https://researchseminars.org/talk/\r\n"
    b"END:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:\r\nDTSTART:20"
    b"0000Z\r\nDTEND:20"
    b"0000Z\r\nDTSTAMP:20"
    b"Z\r\nUID:\r\nDESCRIPTION:\0\\n\r\nLOCATION:https://researchseminars.org/talk/"
)
_TEMPLATE_1 = (
    ("\x05", "abstract"),
    ("\x01", "talk_url"),
    ("\x02", "title"),
    ("\x03", "speaker"),
    ("\x04", "series_name"),
)
_PLACEHOLDER = re.compile("[" + "".join(mark for mark, _field in _TEMPLATE_1) + "]")


# --- 0018: out of this format ----------------------------------------------------------------


def raw_zlib(raw_z: bytes | None, description: str | None) -> bytes | None:
    """The VEVENT text `raw_z` holds, as a standard zlib stream (level 9)."""
    raw = unpack_raw(raw_z, description)
    return None if raw is None else zlib.compress(raw.encode("utf-8", "surrogatepass"), 9)


def unpack_raw(raw_z: bytes | None, description: str | None) -> str | None:
    if raw_z is None:
        return None
    if raw_z[0] != _FORMAT_1:
        raise ValueError(f"unknown raw_z format {raw_z[0]}")
    data = _inflate(raw_z[2:])
    if raw_z[1] != _WHOLE:
        if description is None:
            raise ValueError("raw_z needs the description it was stored with")
        data = _rebuild(data, _escaped(description), FOLD_RULES[raw_z[1] - 1])
    return data.decode("utf-8", "surrogatepass")


# --- 0012: into this format ------------------------------------------------------------------


def pack_raw(raw: str | None, description: str | None) -> bytes | None:
    if raw is None:
        return None
    data = raw.encode("utf-8", "surrogatepass")
    if description and _MARK not in data:
        escaped = _escaped(description)
        found = _residual(data, escaped)
        if found is not None:
            residual, first_line = found
            for index in _likely_rules(first_line):
                if _rebuild(residual, escaped, FOLD_RULES[index]) == data:
                    return bytes([_FORMAT_1, 1 + index]) + _deflate(residual)
    return bytes([_FORMAT_1, _WHOLE]) + _deflate(data)


def sql_frame(
    description: str | None,
    abstract: str | None,
    talk_url: str | None,
    title: str | None,
    speaker: str | None,
    series_name: str | None,
) -> str:
    """`[frame, form]` as JSON."""
    fields = (abstract, talk_url, title, speaker, series_name)
    row = dict(zip([field for _mark, field in _TEMPLATE_1], fields, strict=True))
    return json.dumps(_frame(row | {"description": description}))


def _frame(row: Mapping[str, Any]) -> tuple[str | None, int | None]:
    description = row.get("description")
    if not description or _PLACEHOLDER.search(description):
        return description, None
    template = description
    for mark, field in _TEMPLATE_1:
        value = row.get(field)
        if value and value in template:
            template = template.replace(value, mark)
    if template == description or _unframe(template, row) != description:
        return description, None
    return template, 1


def _unframe(text: str, row: Mapping[str, Any]) -> str | None:
    for mark, field in reversed(_TEMPLATE_1):
        if _PLACEHOLDER.search(row.get(field) or ""):
            return None
        text = text.replace(mark, row.get(field) or "")
    return text


# --- shared by both ----------------------------------------------------------------------------


def _likely_rules(first_line: int) -> list[int]:
    rules = [i for i, rule in enumerate(FOLD_RULES) if rule.first >= first_line]
    return sorted(rules, key=lambda i: FOLD_RULES[i].first != first_line)


def _escape_text(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _escaped(description: str) -> bytes:
    return _escape_text(description).encode("utf-8", "surrogatepass")


def _fold_line(line: bytes, rule: FoldRule, newline: bytes) -> bytes:
    pieces = []
    start, limit = 0, rule.first
    while len(line) - start > limit:
        cut = start + limit
        while cut > start + 1 and line[cut] in _UTF8_CONTINUATION:
            cut -= 1
        if rule.keep_escapes and cut - start > 1 and line[cut - 1] in _ESCAPE_STARTS:
            cut -= 1
        pieces.append(line[start:cut])
        start, limit = cut, rule.rest
    pieces.append(line[start:])
    return (newline + b" ").join(pieces)


def _unfold(folded: bytes) -> bytes:
    for fold in (b"\r\n ", b"\r\n\t", b"\n ", b"\n\t"):
        folded = folded.replace(fold, b"")
    return folded


def _residual(data: bytes, escaped: bytes) -> tuple[bytes, int] | None:
    at = data.find(b"\nDESCRIPTION")
    if at < 0:
        return None
    start = at + 1
    line_end = _LINE_END.search(data, start)
    end = line_end.start() if line_end else len(data)
    if data[end - 1 : end] == b"\r":
        end -= 1
    folded = data[start:end]
    first_break = _LINE_BREAK.search(folded)
    first_line = first_break.start() if first_break else len(folded)
    line = _unfold(folded)
    value_at = line.find(escaped, line.find(b":") + 1)
    if value_at < 0:
        return None
    marked = line[:value_at] + _MARK + line[value_at + len(escaped) :]
    return data[:start] + marked + data[end:], first_line


def _rebuild(residual: bytes, escaped: bytes, rule: FoldRule) -> bytes:
    at = residual.index(_MARK)
    start = residual.rfind(b"\n", 0, at) + 1
    end = residual.find(b"\n", at)
    end = len(residual) if end < 0 else end
    newline = b"\r\n" if residual[end - 1 : end] == b"\r" else b"\n"
    if newline == b"\r\n":
        end -= 1
    line = residual[start:at] + escaped + residual[at + 1 : end]
    return residual[:start] + _fold_line(line, rule, newline) + residual[end:]


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEMORY, zdict=_DICTIONARY_1)
    return packer.compress(data) + packer.flush()


def _inflate(data: bytes) -> bytes:
    unpacker = zlib.decompressobj(_WBITS, zdict=_DICTIONARY_1)
    return unpacker.decompress(data) + unpacker.flush()
