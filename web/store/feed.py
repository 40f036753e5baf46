"""Read side of the ``feed`` projection: what ingest says about each symbol's data, in words."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from events import models

__all__ = ["feed_statuses", "feed_note"]

#: states a person must be told about even while older data is on screen
TROUBLE = ("silent", "unavailable")


def feed_statuses(session: Session, symbols: list[str]) -> dict[str, dict[str, Any]]:
    """symbol -> {state, detail, source, last_tick_ms, ts_ms} for the symbols ingest has spoken of."""
    if not symbols:
        return {}
    rows = session.scalars(select(models.FeedStatusRecord).where(models.FeedStatusRecord.symbol.in_(symbols)))
    return {r.symbol: {"state": r.state, "detail": r.detail, "source": r.source, "last_tick_ms": r.last_tick_ms,
                       "ts_ms": r.ts_ms} for r in rows}


def feed_note(session: Session, symbol: str) -> dict[str, Any]:
    """The status line of a symbol page: the feed's word, or why there is none."""
    status = feed_statuses(session, [symbol]).get(symbol)
    if status is not None and status["state"] != "stopped":
        return {**status, "trouble": status["state"] in TROUBLE}
    watched = session.get(models.WatchedSymbol, symbol) is not None
    if watched:
        detail = "watched: waiting for the data feed to pick it up"
    else:
        detail = "nobody watches it: add it to a watchlist (or a rule) and its data starts within seconds"
    return {"state": "waiting" if watched else "unwatched", "detail": detail, "source": None, "last_tick_ms": None,
            "ts_ms": None, "trouble": False}
