"""The pure half of the Yahoo streaming source: decoded ``PricingData`` messages to ticks.

yfinance hands over ``MessageToDict`` output, so 64-bit integers are strings and proto3 zero
values are absent. :class:`StreamDecoder` turns one such message into a :class:`RawTick` or
counts and drops it: price rounded per ``price_hint``; size is the delta of the cumulative
``day_volume``; session from ``market_hours`` (and the market calendar, for the pre-market
that is never on the wire); an exact re-send (same symbol, time, day volume, price: what a
reconnect brings) is one tick. No I/O: :mod:`ingest.yahoo_stream` feeds it.
"""

from __future__ import annotations

import math
import struct
from collections import Counter, deque
from dataclasses import dataclass
from datetime import date, datetime, timezone
from datetime import time as clock_time
from typing import Any, Mapping

from events.markethours import NEW_YORK, session_open_close
from ingest.base import RawTick, Session

#: Yahoo's ``PricingData.MarketHoursType`` (yfinance's pricing.proto carries it as a bare int32):
#: PRE_MARKET = 0, REGULAR_MARKET = 1, POST_MARKET = 2, EXTENDED_HOURS_MARKET = 3 (-> None).
SESSIONS: dict[int, Session] = {1: "regular", 2: "post"}
PRE_MARKET_FROM = clock_time(4, 0)
#: ``quote_type`` of Yahoo's keep-alive messages: proof of life, not a price
QUOTE_TYPE_HEARTBEAT = 7


def _as_int(value: Any) -> int:
    """An integer field of ``MessageToDict`` output (int64 arrive as strings; absent means 0)."""
    if value is None or value == "":
        return 0
    return int(value)


def round_price(price: float, price_hint: int | None) -> float:
    """``price`` (a float32 widened to float) to ``price_hint`` decimals.

    Without a hint, the shortest decimal that is still the same float32: 187.32000732421875 -> 187.32.
    """
    if price_hint is not None and 0 < price_hint <= 10:
        return round(price, price_hint)
    packed = struct.pack("<f", price)
    for digits in range(0, 10):
        candidate = round(price, digits)
        if struct.pack("<f", candidate) == packed:
            return candidate
    return price


def _new_york(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone(NEW_YORK)


def session_of(market_hours: int, ts_ms: int) -> Session | None:
    """The tick's session from ``market_hours``.

    PRE_MARKET is 0, the proto3 default, so it is never on the wire and an absent field cannot be
    told from "not sent": it counts as "pre" only when the calendar agrees (a US trading day,
    from 04:00 New York time to the session's open); otherwise the session is unknown (None).
    """
    if market_hours in SESSIONS:
        return SESSIONS[market_hours]
    if market_hours != 0:
        return None  # EXTENDED_HOURS_MARKET (overnight) or a value this code does not know
    local = _new_york(ts_ms)
    hours = session_open_close(local.date())  # the one calendar: None on a weekend or holiday
    if hours is None or local.time() < PRE_MARKET_FROM:
        return None
    return "pre" if ts_ms < hours[0] else None


@dataclass
class _Volume:
    day: date
    ts_ms: int
    day_volume: int


class StreamDecoder:
    """Turns decoded ``PricingData`` dicts into ticks; keeps the per-symbol volume and re-send state.

    Not thread-safe: the source calls it from its event-loop thread only.
    """

    def __init__(self, remember: int = 256) -> None:
        self.remember = remember
        self.dropped: Counter[str] = Counter()
        self.duplicates = 0
        self.heartbeats = 0
        self._volume: dict[str, _Volume] = {}
        self._seen: dict[str, tuple[deque[tuple[int, int, float]], set[tuple[int, int, float]]]] = {}

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def forget(self, symbol: str) -> None:
        """``symbol`` was unsubscribed: its next message has size 0 (what traded meanwhile was not followed).

        Its recent keys stay: the quote Yahoo may re-send on a later subscribe is still a duplicate.
        """
        self._volume.pop(symbol, None)

    def decode(self, msg: Mapping[str, Any], wanted: frozenset[str] | set[str]) -> RawTick | None:
        """The tick in ``msg``, or None (dropped and counted by reason, or a duplicate, or a heartbeat)."""
        if "error" in msg:  # yfinance's _decode_message could not parse it
            self.drop("undecodable")
            return None
        symbol = msg.get("id")
        if not isinstance(symbol, str) or not symbol:
            self.drop("no symbol")
            return None
        try:
            quote_type = _as_int(msg.get("quote_type"))
            price = float(msg.get("price", 0.0))
            ts_ms = _as_int(msg.get("time"))
            day_volume = max(0, _as_int(msg.get("day_volume")))
            hint = _as_int(msg.get("price_hint")) if "price_hint" in msg else None
            market_hours = _as_int(msg.get("market_hours"))
        except (TypeError, ValueError):
            self.drop("bad field")
            return None
        if quote_type == QUOTE_TYPE_HEARTBEAT:
            self.heartbeats += 1
            return None
        if symbol not in wanted:
            self.drop("not wanted")
            return None
        if not math.isfinite(price) or price <= 0:
            self.drop("no price")
            return None
        if ts_ms <= 0:
            self.drop("no time")
            return None
        price = round_price(price, hint)
        key = (ts_ms, day_volume, price)
        recent, recent_set = self._seen.setdefault(symbol, (deque(), set()))
        if key in recent_set:
            self.duplicates += 1
            return None
        recent.append(key)
        recent_set.add(key)
        if len(recent) > self.remember:
            recent_set.discard(recent.popleft())
        return RawTick(symbol, ts_ms, price, float(self._size(symbol, ts_ms, day_volume)),
                       session_of(market_hours, ts_ms))

    def _size(self, symbol: str, ts_ms: int, day_volume: int) -> int:
        """What traded since the symbol's previous message: the rise of the day's cumulative volume."""
        day = _new_york(ts_ms).date()
        prev = self._volume.get(symbol)
        if prev is not None and ts_ms < prev.ts_ms:
            return 0  # a late message: its volume is already counted; keep the newer baseline
        self._volume[symbol] = _Volume(day, ts_ms, day_volume)
        if prev is None or prev.day != day or day_volume < prev.day_volume:
            return 0  # first message of the day, or Yahoo reset the counter
        return day_volume - prev.day_volume
