"""Real quotes from Yahoo Finance through yfinance: 1-minute bars polled per symbol.

Each closed 1-minute bar becomes four ticks (see ``csvsource.bar_to_ticks``).
Polling respects a per-symbol interval and a global request budget, backs off
exponentially per symbol on errors (network, HTTP, empty answers), and outside
US regular trading hours polls nothing unless ``ignore_market_hours``.

The network call is the ``fetch`` function (default: yfinance's
``Ticker.history``); everything else is plain logic over the frame it returns,
so it is tested with recorded frames in yfinance's own shape.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from events.markethours import is_market_open
from ingest.base import RawTick
from ingest.csvsource import bar_to_ticks

log = logging.getLogger(__name__)

BAR_MS = 60_000
Fetch = Callable[[str], Any]  # symbol -> pandas.DataFrame indexed by bar start


def yfinance_fetch(symbol: str, timeout_s: float = 10.0) -> Any:
    import yfinance as yf

    return yf.Ticker(symbol).history(period="1d", interval="1m", timeout=timeout_s, raise_errors=True)


def frame_to_bars(frame: Any) -> list[tuple[int, float, float, float, float, float]]:
    """(start_ms, open, high, low, close, volume) rows of a yfinance history frame, oldest first."""
    if frame is None or len(frame) == 0:
        return []
    missing = {"Open", "High", "Low", "Close", "Volume"} - set(frame.columns)
    if missing:
        raise ValueError(f"yfinance frame lacks columns {sorted(missing)}")
    frame = frame.dropna(subset=["Open", "High", "Low", "Close"])
    starts = frame.index.tz_convert("UTC") if frame.index.tz is not None else frame.index.tz_localize("UTC")
    out = []
    for start, row in zip(starts, frame.itertuples(index=False)):
        out.append((int(start.value // 1_000_000), float(row.Open), float(row.High), float(row.Low),
                    float(row.Close), float(row.Volume)))
    return sorted(out)


@dataclass
class SymbolPoll:
    next_poll_ms: int = 0
    last_bar_ms: int = 0
    failures: int = 0
    last_error: str = ""


@dataclass
class YahooStats:
    requests: int = 0
    errors: int = 0
    bars: int = 0


class YahooSource:
    """Polls each symbol's recent 1-minute bars and emits the closed ones it has not seen."""

    name = "yfinance"
    dedupe = True

    def __init__(self, symbols: list[str], fetch: Fetch = yfinance_fetch, poll_interval_s: float = 30.0,
                 max_requests_per_s: float = 2.0, max_backoff_s: float = 600.0,
                 ignore_market_hours: bool = False, clock_ms: Callable[[], int] | None = None) -> None:
        self.symbols = list(symbols)
        self.fetch = fetch
        self.poll_interval_ms = int(poll_interval_s * 1000)
        self.min_gap_ms = int(1000 / max_requests_per_s)
        self.max_backoff_ms = int(max_backoff_s * 1000)
        self.ignore_market_hours = ignore_market_hours
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.polls = {s: SymbolPoll() for s in self.symbols}
        self.stats = YahooStats()
        self._last_request_ms = 0

    def follow(self, symbols: frozenset[str]) -> None:
        """Poll exactly ``symbols`` from now on (FollowingSource); a symbol kept keeps its poll state."""
        self.symbols = sorted(symbols)
        self.polls = {s: self.polls.get(s) or SymbolPoll() for s in self.symbols}

    def problems(self) -> dict[str, str]:
        """Symbols Yahoo keeps failing for (three polls in a row), with the last error."""
        return {sym: f"Yahoo Finance failed {st.failures} polls in a row (unknown or delisted symbol?): "
                     f"{st.last_error}" for sym, st in self.polls.items() if st.failures >= 3}

    def backoff_ms(self, failures: int) -> int:
        return min(self.max_backoff_ms, int(1000 * 2 ** min(failures, 20)))

    def poll_symbol(self, symbol: str, now: int) -> list[RawTick]:
        st = self.polls[symbol]
        self.stats.requests += 1
        self._last_request_ms = now
        try:
            bars = frame_to_bars(self.fetch(symbol))
        except Exception as exc:  # any failure of the remote side: back off, never crash the feed
            st.failures += 1
            st.last_error = f"{type(exc).__name__}: {exc}"[:200]
            self.stats.errors += 1
            st.next_poll_ms = now + self.backoff_ms(st.failures)
            log.warning("yfinance %s failed (%s: %s); retry in %.0f s", symbol, type(exc).__name__, exc,
                        (st.next_poll_ms - now) / 1000)
            return []
        st.failures = 0
        st.next_poll_ms = now + self.poll_interval_ms
        ticks: list[RawTick] = []
        for start, o, h, low, c, v in bars:
            if start <= st.last_bar_ms or start + BAR_MS > now:  # seen, or still forming
                continue
            try:
                ticks.extend(bar_to_ticks(symbol, start, BAR_MS, o, h, low, c, v))
            except ValueError as exc:
                log.warning("yfinance %s: skipping inconsistent bar: %s", symbol, exc)
                continue
            st.last_bar_ms = start
            self.stats.bars += 1
        return ticks

    def next_batch(self, max_ticks: int) -> list[RawTick]:
        """Poll the symbols that are due (within the request budget); [] when none is."""
        now = self.clock_ms()
        if not self.ignore_market_hours and not is_market_open(now):
            return []
        out: list[RawTick] = []
        for symbol in self.symbols:
            if self.polls[symbol].next_poll_ms > now or now - self._last_request_ms < self.min_gap_ms:
                continue
            out.extend(self.poll_symbol(symbol, now))
            if len(out) >= max_ticks:
                break
        return out
