"""Every secret the harvester was given, and the one function that masks them: `redact`.

Secrets are remembered as they are learned (the config's feed URLs, later notification
URLs). `redact` masks each remembered secret wherever it appears in a text, plus any
personal-feed token in `/user/ics/<token>` form, remembered or not. Every output goes
through it: CLI messages, the log renderer's final string, and text stored in the archive.
"""

from __future__ import annotations

import re
import threading

# A personal token also appears in error messages from httpx, so it is masked inside any text.
_PERSONAL_IN_TEXT = re.compile(r"(/user/ics/)([^/?#\s'\"]{4})[^/?#\s'\"]*")

_lock = threading.Lock()
_known: set[str] = set()


def remember(secret: str) -> None:
    """Mask `secret` from now on, wherever it appears (too short a string is ignored)."""
    if len(secret) >= 4:
        with _lock:
            _known.add(secret)


def redact(text: str) -> str:
    """`text` with every known secret and every personal-feed token masked."""
    text = _PERSONAL_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}…", text)
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, f"{secret[:4]}…" if len(secret) >= 16 else "…")
    return text
