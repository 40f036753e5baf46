"""ingest.history: the backfill's bars, simulated and from Yahoo frames (pure, no network)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ingest.history import (frame_to_history, history_window, simulated_history, symbol_params, yahoo_history,
                            yahoo_request)

from tests.ingest.test_sources import recorded_frame as yahoo_frame  # recorded 1-minute AAPL bars, yfinance's shape

END_MS = 1_795_188_000_000 + 17_000  # 17 s into a minute


def test_simulated_history_is_seeded_per_symbol_and_ends_at_the_live_paths_start() -> None:
    a = simulated_history("AMD", bar_seconds=60, end_ms=END_MS, n_bars=300)
    assert a == simulated_history("AMD", bar_seconds=60, end_ms=END_MS, n_bars=300)
    assert a != simulated_history("AMD", bar_seconds=60, end_ms=END_MS, n_bars=300, seed=8)
    assert [b.close for b in a] != [b.close for b in simulated_history("NVDA", bar_seconds=60, end_ms=END_MS,
                                                                       n_bars=300)]
    first, last = history_window(END_MS, 60, 300)
    assert [b.start_ms for b in a] == list(range(first, last + 1, 60_000))
    assert a[-1].ts == END_MS // 60_000 * 60_000 <= END_MS  # closed bars only, the forming one excluded
    assert a[-1].close == pytest.approx(symbol_params("AMD").price, abs=1e-4)  # where the live path starts
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in a)
    assert all(b.open == pytest.approx(prev.close, abs=1e-4) for prev, b in zip(a, a[1:]))  # one path
    # per-bar volatility as the simulator's: vol x sqrt(bar length in market years)
    r = np.diff(np.log([b.close for b in simulated_history("AMD", bar_seconds=60, end_ms=END_MS, n_bars=5000)]))
    expected = symbol_params("AMD").vol * np.sqrt(60_000 * 60 / (252 * 6.5 * 3600 * 1000))
    assert r.std(ddof=1) == pytest.approx(expected, rel=0.1)


def test_simulated_volume_follows_the_trades_a_bar_will_have() -> None:
    few = simulated_history("AMD", bar_seconds=60, end_ms=END_MS, n_bars=200, trades_per_bar=10)
    many = simulated_history("AMD", bar_seconds=60, end_ms=END_MS, n_bars=200, trades_per_bar=150)
    ratio = np.mean([b.volume for b in many]) / np.mean([b.volume for b in few])
    assert ratio == pytest.approx(15, rel=0.2)


def test_a_yahoo_frame_resampled_to_five_minute_bars() -> None:
    frame = yahoo_frame()
    rows = frame.reset_index()
    bars = frame_to_history(frame, "AAPL", bar_seconds=300, source="yfinance-history")
    starts = pd.to_datetime(rows["Datetime"], utc=True).astype("int64") // 1_000_000
    assert [b.start_ms for b in bars] == sorted({int(s) // 300_000 * 300_000 for s in starts})
    first = rows[starts // 300_000 * 300_000 == bars[0].start_ms]
    assert (bars[0].open, bars[0].close) == (first["Open"].iloc[0], first["Close"].iloc[-1])
    assert (bars[0].high, bars[0].low) == (first["High"].max(), first["Low"].min())
    assert bars[0].volume == first["Volume"].sum()
    assert {b.source for b in bars} == {"yfinance-history"} and {b.bar_seconds for b in bars} == {300}
    # the forming bar is left out; a missing price or a non-positive one is skipped
    cut = frame_to_history(frame, "AAPL", bar_seconds=300, source="y", before_ms=bars[-1].start_ms + 1)
    assert [b.start_ms for b in cut] == [b.start_ms for b in bars[:-1]]
    broken = frame.copy()
    broken.iloc[0, broken.columns.get_loc("Close")] = np.nan
    broken.iloc[1, broken.columns.get_loc("Low")] = 0.0
    assert frame_to_history(broken, "AAPL", bar_seconds=60, source="y")[0].start_ms == int(starts.iloc[2])
    assert frame_to_history(None, "AAPL", bar_seconds=60, source="y") == []
    with pytest.raises(ValueError, match="lacks columns"):
        frame_to_history(frame.drop(columns=["Volume"]), "AAPL", bar_seconds=60, source="y")


def test_yahoo_history_asks_for_what_it_can_resample_and_keeps_the_last_bars() -> None:
    assert yahoo_request(60) == ("5d", "1m") and yahoo_request(300) == ("5d", "1m")
    assert yahoo_request(86_400) == ("5y", "1d")
    with pytest.raises(ValueError, match="BAR_SECONDS=2"):
        yahoo_request(2)
    asked: list[tuple[str, str, str]] = []

    def fetch(symbol: str, period: str, interval: str) -> pd.DataFrame:
        asked.append((symbol, period, interval))
        return yahoo_frame()

    bars = yahoo_history("AAPL", bar_seconds=60, end_ms=4_000_000_000_000, n_bars=5, fetch=fetch)
    assert asked == [("AAPL", "5d", "1m")] and len(bars) == 5
    assert [b.close for b in bars] == list(yahoo_frame()["Close"].iloc[-5:])
