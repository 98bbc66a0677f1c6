"""Rows of the archive's views, for tests (sqlite-utils' `Table.get` works on tables only)."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError


def talk_row(db: Database, uid: str) -> dict[str, Any]:
    """The `talks` row of `uid` (a view since migration 0011); NotFoundError if none."""
    rows = list(db.query("SELECT * FROM talks WHERE uid = ?", [uid]))
    if not rows:
        raise NotFoundError(uid)
    return rows[0]
