"""stream.bars.add_history without Spark: history then live is one continuous series; covered bars dropped."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from events.contract import Bar, decode, encode
from stream.bars import ShardState, add_history, add_ticks, close_bars, dump_state, effective_watermark, load_state
from stream.indicators import FIELDS
from tests.stream.reference import indicators_reference

BASE = 1_700_000_000_000
BAR_MS = 1000


def history(symbol: str, closes: list[float], volumes: list[float], first_bar: int = 0,
            bar_seconds: int = 1, offset0: int = 0) -> pd.DataFrame:
    """History rows as the job hands them over: one per closed bar, OHLC around the close."""
    rows = []
    for i, (c, v) in enumerate(zip(closes, volumes)):
        o = closes[i - 1] if i else c
        rows.append({"symbol": symbol, "start_ms": BASE + (first_bar + i) * bar_seconds * 1000,
                     "bar_seconds": bar_seconds, "open": o, "high": max(o, c) + 0.5, "low": min(o, c) - 0.5,
                     "close": c, "volume": v, "partition": 1, "offset": offset0 + i})
    return pd.DataFrame(rows)


def ticks(*rows: tuple[str, int, float, float], offset0: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        [{"symbol": s, "ts_ms": BASE + t, "price": p, "size": q, "partition": 0, "offset": offset0 + i}
         for i, (s, t, p, q) in enumerate(rows)]
    )


def walk(n: int, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    closes, volumes, price = [], [], 50.0
    for _ in range(n):
        price *= math.exp(rng.gauss(0, 0.015))
        closes.append(round(price, 2))
        volumes.append(float(rng.randint(1, 4000)))
    return closes, volumes


def pandas_reference(closes: list[float]) -> pd.DataFrame:
    """sma_20, ema_12, rsi_14, volatility_20 from pandas over the whole series (written here, not shared)."""
    c = pd.Series(closes, dtype="float64")
    out = pd.DataFrame({"sma_20": c.rolling(20).mean()})
    seeded = pd.concat([pd.Series([c.iloc[:12].mean()]), c.iloc[12:]], ignore_index=True)
    out["ema_12"] = [np.nan] * 11 + seeded.ewm(span=12, adjust=False).mean().tolist()
    delta = c.diff()
    gain, loss = delta.clip(lower=0), (-delta).clip(lower=0)
    rsi = [np.nan] * len(c)
    g, l = gain.iloc[1:15].mean(), loss.iloc[1:15].mean()
    rsi[14] = 100 * g / (g + l)
    for i in range(15, len(c)):
        g, l = (g * 13 + gain.iloc[i]) / 14, (l * 13 + loss.iloc[i]) / 14
        rsi[i] = 100 * g / (g + l)
    out["rsi_14"] = rsi
    out["volatility_20"] = np.log(c / c.shift(1)).rolling(20).std(ddof=1)
    return out


def live_ticks(symbol: str, closes: list[float], volumes: list[float], first_bar: int) -> pd.DataFrame:
    """Two ticks per live bar: an opening one, then the close carrying the bar's volume."""
    rows = []
    for i, (c, v) in enumerate(zip(closes, volumes)):
        t = (first_bar + i) * BAR_MS
        rows += [(symbol, t + 100, c * 1.001, 0.0), (symbol, t + 900, c, v)]
    return ticks(*rows)


def test_history_then_live_gives_the_indicators_of_one_continuous_series() -> None:
    closes, volumes = walk(60, seed=4)
    n_hist = 40
    state = ShardState()
    result = add_history(state, history("AAA", closes[:n_hist], volumes[:n_hist]), 1)
    assert result.dropped.empty and result.wrong_size.empty
    assert state.max_ts == 0 and state.timers == []  # history moves no watermark and needs no timer
    state = load_state(dump_state(state))  # the state store between batches
    live = live_ticks("AAA", closes[n_hist:], volumes[n_hist:], n_hist)
    assert add_ticks(state, live, effective_watermark(state, 0, 500), BAR_MS).late.empty
    live_bars = close_bars(state, BASE + 61 * BAR_MS, 1)
    bars = result.bars + live_bars
    assert [b.start_ms for b in bars] == [BASE + i * BAR_MS for i in range(60)]
    assert [b.history for b in bars] == [True] * n_hist + [False] * 20
    assert [b.close for b in bars] == closes
    want = pandas_reference(closes)
    for i, bar in enumerate(bars):
        for name in ("sma_20", "ema_12", "rsi_14", "volatility_20"):
            w, g = want[name].iloc[i], getattr(bar, name)
            if np.isnan(w):
                assert g is None, f"bar {i} {name}: expected None (warm-up), got {g}"
            else:
                assert g == pytest.approx(w, rel=1e-9), f"bar {i} {name}"
    # every other indicator too, against the textbook loops over the concatenated series
    for i, (bar, ref) in enumerate(zip(bars, indicators_reference(closes, volumes))):
        for name in FIELDS:
            if ref[name] is None:
                assert getattr(bar, name) is None, f"bar {i} {name}"
            else:
                assert getattr(bar, name) == pytest.approx(ref[name], rel=1e-9, abs=1e-12), f"bar {i} {name}"
    assert live_bars[0].rsi_14 is not None and live_bars[0].volatility_20 is not None  # warm at once


def test_history_bars_are_bar_events_with_the_live_id_and_their_ohlcv() -> None:
    state = ShardState()
    rows = history("BRK.B", [10.0, 11.0], [5.0, 0.0])
    bars = add_history(state, rows, 1).bars
    first = bars[0]
    assert first.id == f"bar:BRK.B:1:{BASE}" and first.ts == BASE + 1000 and first.start_ms == BASE
    assert (first.open, first.high, first.low, first.close, first.volume) == (10.0, 10.5, 9.5, 10.0, 5.0)
    assert first.history and first.count == 1 and first.vwap == pytest.approx(10.0)
    assert bars[1].change_pct == pytest.approx(10.0) and bars[1].volume == 0.0
    assert decode(encode(first), Bar) == first
    assert state.symbols["BRK.B"].last_closed_start == BASE + 1000


def test_a_resent_backfill_changes_nothing() -> None:
    closes, volumes = walk(30, seed=8)
    state = ShardState()
    first = add_history(state, history("AAA", closes, volumes), 1)
    before = dump_state(state)
    again = add_history(state, history("AAA", closes, volumes, offset0=100), 1)
    assert again.bars == [] and len(again.dropped) == 30
    assert dump_state(state) == before
    # an overlapping, longer backfill folds only the bars after the newest one
    more_c, more_v = walk(35, seed=9)
    longer = add_history(state, history("AAA", more_c, more_v), 1)
    assert [b.start_ms - BASE for b in longer.bars] == [30_000, 31_000, 32_000, 33_000, 34_000]
    assert len(longer.dropped) == 30 and len(first.bars) == 30


def test_duplicates_inside_one_batch_fold_once_in_start_order() -> None:
    closes, volumes = walk(25, seed=2)
    rows = history("AAA", closes, volumes)
    shuffled = pd.concat([rows, rows.iloc[[3, 7]]]).sample(frac=1.0, random_state=1)
    state = ShardState()
    result = add_history(state, shuffled, 1)
    assert [b.close for b in result.bars] == closes and len(result.dropped) == 2
    reference = add_history(ShardState(), rows, 1).bars
    assert result.bars == reference


def test_history_never_replaces_a_live_bar() -> None:
    state = ShardState()
    add_ticks(state, ticks(("AAA", 5_100, 50.0, 1), ("AAA", 6_700, 51.0, 1)), 0, BAR_MS)
    (closed,) = close_bars(state, effective_watermark(state, 0, 500), 1)  # bar 5 closed, bar 6 open
    assert closed.start_ms == BASE + 5000
    # history over bars 0..9: all at or before the closed bar 5, or at or after the open bar 6
    result = add_history(state, history("AAA", [40.0 + i for i in range(10)], [1.0] * 10), 1)
    assert result.bars == [] and len(result.dropped) == 10
    (live,) = close_bars(state, BASE + 7000, 1)
    assert (live.start_ms, live.close, live.history, live.change_pct) == (
        BASE + 6000, 51.0, False, pytest.approx(2.0))


def test_history_before_an_open_live_bar_is_folded_first() -> None:
    """Live ticks reached the shard first (same or earlier batch): older history still goes before them."""
    closes = [10.0, 11.0, 12.0]
    state = ShardState()
    add_ticks(state, ticks(("AAA", 3_500, 13.0, 1)), 0, BAR_MS)  # bar 3 open
    result = add_history(state, history("AAA", closes + [99.0], [1.0] * 4), 1)  # bar 3 in history: dropped
    assert [b.close for b in result.bars] == closes and len(result.dropped) == 1
    (live,) = close_bars(state, BASE + 4000, 1)
    assert live.close == 13.0 and not live.history and live.change_pct == pytest.approx(100 / 12)
    assert live.sma_5 is None and state.symbols["AAA"].indicators.n == 4


def test_live_ticks_after_history_are_not_late() -> None:
    state = ShardState()
    add_history(state, history("AAA", [10.0] * 30, [1.0] * 30), 1)
    watermark = effective_watermark(state, 0, 500)
    assert watermark == 0  # history set no max event time
    result = add_ticks(state, ticks(("AAA", 30_010, 10.5, 1), ("AAA", 29_990, 9.0, 1)), watermark, BAR_MS)
    # the tick inside the last history bar is late (that bar is closed); the next bar's is not
    assert list(result.late["price"]) == [9.0]


def test_a_history_bar_of_another_length_is_set_aside_for_the_dlq() -> None:
    state = ShardState()
    rows = pd.concat([history("AAA", [10.0, 11.0], [1.0, 1.0]),
                      history("AAA", [12.0], [1.0], first_bar=60, bar_seconds=60)], ignore_index=True)
    result = add_history(state, rows, 1)
    assert [b.close for b in result.bars] == [10.0, 11.0]
    assert list(result.wrong_size["bar_seconds"]) == [60] and result.dropped.empty


def test_several_symbols_fold_independently_in_one_batch() -> None:
    a_c, a_v = walk(30, seed=1)
    b_c, b_v = walk(22, seed=2)
    rows = pd.concat([history("BBB", b_c, b_v), history("AAA", a_c, a_v)], ignore_index=True)
    bars = add_history(ShardState(), rows, 1).bars
    for symbol, closes in (("AAA", a_c), ("BBB", b_c)):
        mine = [b for b in bars if b.symbol == symbol]
        assert [b.close for b in mine] == closes
        assert mine == add_history(ShardState(), history(symbol, *(walk(30, 1) if symbol == "AAA" else walk(22, 2))),
                                   1).bars


def test_empty_history_changes_nothing() -> None:
    state = ShardState()
    result = add_history(state, pd.DataFrame(columns=["symbol", "start_ms", "bar_seconds", "open", "high", "low",
                                                      "close", "volume", "partition", "offset"]), 1)
    assert result.bars == [] and state.symbols == {}
