"""Symbol filter and date range, shared by every history view and export."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Mapping

from web.errors import ValidationFailed

DAY_MS = 86_400_000
MAX_MS = 253_402_300_799_999


@dataclass(frozen=True)
class Range:
    from_ms: int
    to_ms: int
    symbols: tuple[str, ...]
    limit: int


def _parse_time(raw: str, name: str, end_of_day: bool) -> int:
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():  # epoch ms, bounded: a 25-digit number overflows the database's integer
        if len(raw) > 15 or int(raw) > MAX_MS:
            raise ValidationFailed({name: f"epoch ms must be at most {MAX_MS} (9999-12-31), got {raw[:30]}"})
        return int(raw)
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            ms = int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)
            return ms + DAY_MS if end_of_day else ms
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp() * 1000)
    except ValueError:
        raise ValidationFailed({name: f"use a date (2026-01-31), an ISO time or epoch ms, got {raw!r}"}) from None


def parse_range(args: Mapping[str, str], *, default_days: int = 7, default_limit: int = 5000,
                max_limit: int = 100_000) -> Range:
    """``from``/``to`` (date, ISO time or epoch ms; ``to`` date is inclusive), ``symbol`` (comma list), ``limit``."""
    now_ms = int(time.time() * 1000)
    to_ms = _parse_time(args["to"], "to", True) if args.get("to") else now_ms + DAY_MS
    from_ms = _parse_time(args["from"], "from", False) if args.get("from") else to_ms - (default_days + 1) * DAY_MS
    if from_ms >= to_ms:
        raise ValidationFailed({"from": "must be before `to`"})
    symbols = tuple(s.strip().upper() for s in (args.get("symbol") or "").split(",") if s.strip())
    try:
        limit = int(args.get("limit") or default_limit)
    except ValueError:
        raise ValidationFailed({"limit": "must be a whole number"}) from None
    if not 1 <= limit <= max_limit:
        raise ValidationFailed({"limit": f"must be between 1 and {max_limit}"})
    return Range(from_ms, to_ms, symbols, limit)
