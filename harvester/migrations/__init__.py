"""The archive's migrations: `NNNN_name.sql` files, applied in name order (harvester._schema).

A migration that needs more than SQL calls functions defined here, in frozen modules of
their own (`kinds_1`, `textstore_1`): copies of the code that was live when the migration
shipped, never imported by live code and never changed, so an old archive migrates the
same way whatever today's code does. The migration runner registers `FUNCTIONS` on the connection
that migrates, and on no other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from harvester.migrations import kinds_1, textstore_1

# name → (number of arguments, function): what shipped migrations call.
FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    # 0007_history: the kinds and the automatic flag of the versions archived before it.
    "harvester_change_kinds": (2, kinds_1.sql_change_kinds),
    "harvester_automatic_reason": (5, kinds_1.sql_automatic_reason),
    # 0012_textstore: pack each version's text (and read it back, as its `raw` did).
    "harvester_raw_z": (2, textstore_1.pack_raw),
    "harvester_frame": (6, textstore_1.sql_frame),
    "harvester_raw": (2, textstore_1.unpack_raw),
    # 0018_plain_raw: the text 0012's `raw` computed, as a standard zlib stream.
    "harvester_raw_zlib": (2, textstore_1.raw_zlib),
}


def register(conn: sqlite3.Connection) -> None:
    for name, (arguments, function) in FUNCTIONS.items():
        conn.create_function(name, arguments, function, deterministic=True)
