"""What ingest tells the user about each followed symbol: the ``feed`` topic's ``FeedStatus``.

:class:`FeedWatch` is pure bookkeeping over the loop's observations (symbols followed and
dropped, ticks published, problems a source reports) and a clock; it returns the status
events that changed, which the loop publishes. A symbol is ``waiting`` until its first
tick, then ``streaming``; ``silent`` when no tick came for ``silent_after_s`` while the
market is open (a simulator's market is always open); ``unavailable`` while its source
reports a problem with it (an unknown symbol, repeated errors); ``stopped`` when dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from events.contract import FeedState, FeedStatus
from events.contract_ids import feed_status_id

__all__ = ["FeedWatch"]

WHAT = {"sim": "the simulator", "csv": "the CSV replay", "yfinance": "Yahoo Finance (1-minute polls)",
        "yfstream": "Yahoo Finance's live stream"}


@dataclass
class _Symbol:
    state: FeedState
    detail: str
    last_tick_ms: int | None = None
    since_ms: int = 0


class FeedWatch:
    def __init__(self, source: str, *, silent_after_s: float = 120.0,
                 market_open: Callable[[int], bool] = lambda _ms: True) -> None:
        self.source = source
        self.silent_after_ms = int(silent_after_s * 1000)
        self.market_open = market_open
        self.symbols: dict[str, _Symbol] = {}
        self._changed: dict[str, FeedStatus] = {}

    def _set(self, symbol: str, state: FeedState, detail: str, now_ms: int) -> None:
        st = self.symbols.get(symbol)
        if st is None:
            st = self.symbols[symbol] = _Symbol(state, detail, since_ms=now_ms)
        elif st.state == state and st.detail == detail:
            return
        st.state, st.detail, st.since_ms = state, detail, now_ms
        self._changed[symbol] = FeedStatus(id=feed_status_id(symbol, now_ms), ts=now_ms, symbol=symbol,
                                           source=self.source, state=state, detail=detail[:300],
                                           last_tick_ms=st.last_tick_ms)

    def follow(self, added: Iterable[str], removed: Iterable[str], now_ms: int) -> None:
        what = WHAT.get(self.source, self.source)
        for symbol in added:
            self._set(symbol, "waiting", f"waiting for the first tick from {what}", now_ms)
        for symbol in removed:
            self._set(symbol, "stopped", "nobody watches it", now_ms)
            del self.symbols[symbol]

    def ticks(self, symbols_ts: Iterable[tuple[str, int]], now_ms: int) -> None:
        for symbol, ts_ms in symbols_ts:
            st = self.symbols.get(symbol)
            if st is None:
                continue
            st.last_tick_ms = ts_ms if st.last_tick_ms is None else max(st.last_tick_ms, ts_ms)
            if st.state != "streaming":
                self._set(symbol, "streaming", f"live from {WHAT.get(self.source, self.source)}", now_ms)

    def problems(self, reported: dict[str, str], now_ms: int) -> None:
        """The source's current problems per symbol (symbol -> why); a symbol not listed has none."""
        for symbol, st in self.symbols.items():
            why = reported.get(symbol)
            if why:
                self._set(symbol, "unavailable", why, now_ms)
            elif st.state == "unavailable":
                self._set(symbol, "waiting" if st.last_tick_ms is None else "streaming",
                          "the source serves it again", now_ms)

    def check(self, now_ms: int) -> None:
        """Mark symbols silent that had no tick for too long while the market is open."""
        if not self.market_open(now_ms):
            return
        for symbol, st in self.symbols.items():
            if st.state not in ("streaming", "waiting"):
                continue
            since = st.last_tick_ms if st.last_tick_ms is not None else st.since_ms
            if now_ms - since >= self.silent_after_ms:
                mins = (now_ms - since) / 60_000
                self._set(symbol, "silent", f"no tick from {WHAT.get(self.source, self.source)} for "
                          f"{mins:.0f} min while the market is open", now_ms)

    def drain(self) -> list[FeedStatus]:
        """The statuses that changed since the last drain."""
        out, self._changed = list(self._changed.values()), {}
        return out
