"""Tick sources and the sequencer: pure logic, plus yfinance's real failure path."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from events.markethours import is_market_open
from ingest.base import RawTick, Sequencer
from ingest.csvsource import CsvSource, bar_to_ticks, rows_to_ticks
from ingest.sim import SimSource, synthetic_symbols
from ingest.yahoo import YahooSource, frame_to_bars

FIXTURES = Path(__file__).parent / "fixtures"
# Friday 2026-11-20 15:00 UTC = 10:00 New York, market open
OPEN_MS = 1_795_186_800_000


def fake_clock(start_ms: int, step_ms: int = 1000):  # a deterministic clock, not a stand-in service
    t = [start_ms]

    def now() -> int:
        t[0] += step_ms
        return t[0]

    return now


def test_sim_is_seeded_and_covers_every_symbol() -> None:
    a = SimSource(["AAA", "BBB", "CCC"], seed=11, clock_ms=fake_clock(OPEN_MS))
    b = SimSource(["AAA", "BBB", "CCC"], seed=11, clock_ms=fake_clock(OPEN_MS))
    ta, tb = a.next_batch(300), b.next_batch(300)
    assert ta == tb
    assert {t.symbol for t in ta} == {"AAA", "BBB", "CCC"}
    assert all(t.price > 0 and t.size >= 1 for t in ta)
    c = SimSource(["AAA", "BBB", "CCC"], seed=12, clock_ms=fake_clock(OPEN_MS))
    assert c.next_batch(300) != ta


def test_sim_log_returns_match_the_configured_volatility() -> None:
    src = SimSource(["AAA"], seed=5, time_scale=1.0, jumps_per_day=0.0, clock_ms=fake_clock(OPEN_MS, 60_000))
    prices = np.array([src.next_batch(1)[0].price for _ in range(3000)])
    r = np.diff(np.log(prices))
    dt = 60_000 / (252 * 6.5 * 3600 * 1000)
    realised = r.std(ddof=1) / math.sqrt(dt)
    assert realised == pytest.approx(src.state[0].vol, rel=0.1)


def test_synthetic_symbols() -> None:
    syms = synthetic_symbols(25)
    assert len(set(syms)) == 25 and syms[0] == "AAPL" and syms[-1] == "S0005"


def test_sequencer_numbers_drops_duplicates_and_passes_late_ticks() -> None:
    seq = Sequencer("csv")
    a1 = RawTick("A", 1_000, 10.0, 5)
    events = [seq.to_event(t) for t in [a1, a1, RawTick("B", 1_000, 3.0, 1), RawTick("A", 2_000, 10.5, 1),
                                         RawTick("A", 1_500, 10.2, 1)]]
    kept = [e for e in events if e is not None]
    assert [(e.symbol, e.seq) for e in kept] == [("A", 1), ("B", 1), ("A", 2), ("A", 3)]
    assert kept[-1].ts == 1_500  # passed with its own event time
    assert seq.stats.duplicates == 1 and seq.stats.out_of_order == 1 and seq.stats.emitted == 4
    assert kept[0].id == "csv:A:1"


def test_bar_to_ticks_reproduces_the_bar() -> None:
    ticks = bar_to_ticks("X", 0, 60_000, 10.0, 12.0, 9.0, 11.0, 1001)
    prices = [t.price for t in ticks]
    assert prices[0] == 10.0 and prices[-1] == 11.0 and max(prices) == 12.0 and min(prices) == 9.0
    assert sum(t.size for t in ticks) == 1001
    assert [t.ts_ms for t in ticks] == sorted(t.ts_ms for t in ticks) and ticks[-1].ts_ms < 60_000
    with pytest.raises(ValueError, match="outside"):
        bar_to_ticks("X", 0, 60_000, 13.0, 12.0, 9.0, 11.0, 1)


def test_csv_ticks_bars_and_adjustment(tmp_path: Path) -> None:
    f = tmp_path / "bars.csv"
    f.write_text("date,open,high,low,close,volume,adj_close\n2010-01-04,100,110,90,105,400,52.5\n")
    ticks = CsvSource(str(f), symbol="abc").next_batch(10)
    assert ticks is not None and {t.symbol for t in ticks} == {"ABC"}
    assert [t.price for t in ticks][-1] == pytest.approx(52.5)  # split-adjusted
    assert max(t.price for t in ticks) == pytest.approx(55.0)
    rows = [{"symbol": "x", "ts": "1795186800000", "price": "1.5", "size": "3"}]
    assert list(rows_to_ticks(rows)) == [RawTick("X", 1_795_186_800_000, 1.5, 3.0)]
    with pytest.raises(ValueError, match="line 2"):
        list(rows_to_ticks([{"symbol": "x", "ts": "yesterday", "price": "1"}]))


def test_bokeh_offline_data_replays_real_prices() -> None:
    src = CsvSource("bokeh")
    first = src.next_batch(400)
    assert first is not None
    assert {t.symbol for t in first} <= {"AAPL", "GOOG", "IBM", "MSFT"} and len({t.symbol for t in first}) >= 3
    assert pd.Timestamp(first[0].ts_ms, unit="ms").year == 2000


def recorded_frame() -> pd.DataFrame:
    frame = pd.read_csv(FIXTURES / "yfinance_AAPL_1m.csv", index_col="Datetime")
    frame.index = pd.to_datetime(frame.index, utc=True).tz_convert("America/New_York")
    return frame


def test_yfinance_frame_becomes_bars() -> None:
    bars = frame_to_bars(recorded_frame())
    assert len(bars) == 11  # the NaN row is dropped
    assert bars[0][0] == 1_795_185_000_000  # 2026-11-20 09:30 New York
    with pytest.raises(ValueError, match="Close"):
        frame_to_bars(recorded_frame().drop(columns=["Close"]))


def test_yfinance_source_emits_closed_bars_once() -> None:
    frame = recorded_frame()
    last_start = 1_795_185_000_000 + 11 * 60_000
    clock = [last_start + 30_000]  # the 09:41 bar is still forming
    src = YahooSource(["AAPL"], fetch=lambda s: frame, poll_interval_s=30, max_requests_per_s=100,
                      clock_ms=lambda: clock[0])
    ticks = src.next_batch(1000)
    assert len(ticks) == 10 * 4 and src.stats.bars == 10
    assert ticks[-1].ts_ms < last_start
    clock[0] += 10_000
    assert src.next_batch(1000) == []  # not due again yet
    clock[0] += 30_000
    again = src.next_batch(1000)
    assert len(again) == 4 and again[0].ts_ms == last_start  # only the newly closed bar


def test_yfinance_does_not_poll_a_closed_market() -> None:
    calls: list[str] = []
    saturday = 1_795_273_200_000  # 2026-11-21
    assert not is_market_open(saturday) and is_market_open(OPEN_MS)
    src = YahooSource(["AAPL"], fetch=lambda s: calls.append(s), clock_ms=lambda: saturday)
    assert src.next_batch(10) == [] and calls == []


def test_yfinance_network_failure_backs_off_without_hanging() -> None:
    # the real yfinance call: Yahoo is unreachable here, so this is the real error path
    clock = [OPEN_MS]
    src = YahooSource(["AAPL", "MSFT"], poll_interval_s=30, max_requests_per_s=100, clock_ms=lambda: clock[0])
    started = time.monotonic()
    assert src.next_batch(100) == []
    assert time.monotonic() - started < 30
    assert src.stats.errors == 1 and src.polls["AAPL"].failures == 1
    first_retry = src.polls["AAPL"].next_poll_ms - clock[0]
    clock[0] = src.polls["AAPL"].next_poll_ms
    src.polls["MSFT"].next_poll_ms = clock[0] + 10**9  # look at AAPL's schedule alone
    src.next_batch(100)
    assert src.polls["AAPL"].next_poll_ms - clock[0] == 2 * first_retry  # exponential
