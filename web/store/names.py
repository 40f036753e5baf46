"""What a user-supplied name may contain (channels, rules, watchlists, API tokens).

Names reach mail headers, log lines, CSV exports and the CLI's tables: a CR/LF in a
channel name once made a delivery retry for ever. Control characters (C0, DEL, C1)
and Unicode line/paragraph separators are refused; everything else printable is fine.
"""

from __future__ import annotations

import unicodedata

__all__ = ["NO_CONTROL", "has_control"]

NO_CONTROL = "must not contain control characters or line breaks"


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)
