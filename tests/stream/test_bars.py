"""stream.bars without Spark: bar building across micro-batches, lateness, closing, events."""

from __future__ import annotations

import pandas as pd
import pytest

from events.contract import Bar, decode, encode
from stream.bars import ShardState, add_ticks, close_bars, dump_state, effective_watermark, load_state

BASE = 1_700_000_000_000
BAR_MS = 1000


def ticks(*rows: tuple[str, int, float, float], offset0: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        [{"symbol": s, "ts_ms": BASE + t, "price": p, "size": q, "partition": 0, "offset": offset0 + i}
         for i, (s, t, p, q) in enumerate(rows)]
    )


def test_open_close_follow_event_time_not_arrival_across_batches() -> None:
    state = ShardState()
    r1 = add_ticks(state, ticks(("AAA", 500, 11.0, 1), ("AAA", 100, 10.0, 2)), watermark_ms=0, bar_ms=BAR_MS)
    assert r1.new_timers == [BASE + 1000] and r1.late.empty
    r2 = add_ticks(state, ticks(("AAA", 50, 9.0, 1), ("AAA", 900, 12.0, 1), offset0=2), 0, BAR_MS)
    assert r2.new_timers == []  # the timer for this bar is registered already
    state = load_state(dump_state(state))  # what the state store does between batches
    (bar,) = close_bars(state, BASE + 1000, 1)
    assert (bar.open, bar.high, bar.low, bar.close, bar.count) == (9.0, 12.0, 9.0, 12.0, 4)
    assert bar.volume == 5 and bar.vwap == pytest.approx((11 + 20 + 9 + 12) / 5)
    assert bar.start_ms == BASE and bar.ts == BASE + 1000 and bar.id == f"bar:AAA:1:{BASE}"
    assert decode(encode(bar), Bar) == bar
    assert bar.change_pct is None and bar.sma_5 is None


def test_equal_event_times_break_ties_by_offset() -> None:
    state = ShardState()
    add_ticks(state, ticks(("AAA", 100, 1.0, 1), ("AAA", 100, 2.0, 1), ("AAA", 100, 3.0, 1)), 0, BAR_MS)
    (bar,) = close_bars(state, BASE + 1000, 1)
    assert (bar.open, bar.close) == (1.0, 3.0)


def test_a_bar_closes_only_when_the_watermark_reaches_its_end() -> None:
    state = ShardState()
    add_ticks(state, ticks(("AAA", 100, 1.0, 1), ("AAA", 1100, 2.0, 1)), 0, BAR_MS)
    assert close_bars(state, BASE + 999, 1) == []
    assert [b.start_ms for b in close_bars(state, BASE + 1000, 1)] == [BASE]
    assert state.timers == [BASE + 2000]


def test_late_ticks_are_returned_and_not_folded_in() -> None:
    state = ShardState()
    add_ticks(state, ticks(("AAA", 100, 1.0, 1), ("AAA", 1500, 2.0, 1)), 0, BAR_MS)
    close_bars(state, BASE + 1200, 1)
    batch = ticks(("AAA", 300, 99.0, 1),    # bar closed
                  ("AAA", 1150, 98.0, 1),   # bar open but behind the watermark
                  ("AAA", 1201, 3.0, 1),    # fine
                  ("BBB", 1200, 97.0, 1))   # exactly at the watermark: late (Spark's rule)
    result = add_ticks(state, batch, BASE + 1200, BAR_MS)
    assert sorted(result.late["price"]) == [97.0, 98.0, 99.0]
    (bar,) = close_bars(state, BASE + 2000, 1)
    assert (bar.open, bar.close, bar.count, bar.high) == (3.0, 2.0, 2, 3.0)  # 1201 comes before 1500


def test_zero_volume_bar_has_the_mean_price_as_vwap() -> None:
    state = ShardState()
    add_ticks(state, ticks(("AAA", 1, 10.0, 0), ("AAA", 2, 20.0, 0)), 0, BAR_MS)
    (bar,) = close_bars(state, BASE + 1000, 1)
    assert bar.volume == 0 and bar.vwap == 15.0


def test_several_bars_closing_at_once_fold_indicators_in_order() -> None:
    state = ShardState()
    rows = [(s, i * 1000 + 10, float(i + 1 + k), 1.0) for i in range(6) for k, s in enumerate(["AAA", "BBB"])]
    add_ticks(state, ticks(*rows), 0, BAR_MS)
    bars = close_bars(state, BASE + 6000, 1)
    assert [(b.symbol, b.start_ms - BASE) for b in bars] == [
        (s, i * 1000) for i in range(6) for s in ["AAA", "BBB"]
    ]
    aaa = [b for b in bars if b.symbol == "AAA"]
    assert aaa[4].sma_5 == pytest.approx(3.0) and aaa[5].sma_5 == pytest.approx(4.0)
    assert aaa[1].change_pct == pytest.approx(100.0)
    assert state.symbols["AAA"].last_closed_start == BASE + 5000 and state.timers == []


def test_quiet_symbol_has_no_bar_and_change_is_against_its_previous_bar() -> None:
    state = ShardState()
    add_ticks(state, ticks(("AAA", 10, 10.0, 1), ("AAA", 3010, 11.0, 1)), 0, BAR_MS)
    bars = close_bars(state, BASE + 4000, 1)
    assert [b.start_ms - BASE for b in bars] == [0, 3000]
    assert bars[1].change_pct == pytest.approx(10.0)


def test_a_shard_closes_on_its_own_max_event_time_before_sparks_watermark_moves() -> None:
    state = ShardState()
    assert effective_watermark(state, 0, 500) == 0
    add_ticks(state, ticks(("AAA", 100, 1.0, 1), ("AAA", 1600, 2.0, 1)), 0, BAR_MS)
    assert state.max_ts == BASE + 1600
    assert effective_watermark(state, 0, 500) == BASE + 1100  # later than Spark's 0
    assert effective_watermark(state, BASE + 5000, 500) == BASE + 5000  # Spark's, when later
    assert [b.start_ms for b in close_bars(state, effective_watermark(state, 0, 500), 1)] == [BASE]


def test_closed_bars_carry_the_50_and_200_bar_averages_across_state_round_trips() -> None:
    state = ShardState()
    prices = [100.0 + (i % 7) - 0.01 * i for i in range(205)]
    bars = []
    for i, p in enumerate(prices):  # one bar per batch, the state through the store each time
        add_ticks(state, ticks(("AAA", i * 1000 + 10, p, 1.0), offset0=i), 0, BAR_MS)
        bars += close_bars(state, BASE + (i + 1) * 1000, 1)
        state = load_state(dump_state(state))
    assert [b.close for b in bars] == prices
    assert bars[48].sma_50 is None and bars[49].sma_50 == pytest.approx(sum(prices[:50]) / 50)
    assert bars[49].ema_50 == bars[49].sma_50  # seeded with the SMA of the first 50
    alpha = 2 / 51
    seed = bars[49].ema_50
    assert seed is not None and bars[50].ema_50 == pytest.approx(seed + alpha * (prices[50] - seed))
    assert bars[198].sma_200 is None and bars[198].ema_200 is None
    assert bars[-1].sma_200 == pytest.approx(sum(prices[-200:]) / 200)
    assert bars[199].ema_200 == pytest.approx(sum(prices[:200]) / 200)
    assert decode(encode(bars[-1]), Bar) == bars[-1] and bars[-1].ema_200 is not None
