"""The Spark job against the real broker: known ticks in, exact bars out; late, malformed, restart."""

from __future__ import annotations

import json
from typing import Any

import pytest

from events.contract import Bar
from stream.runner import ProgressTotals, stop_gracefully
from stream.job import start_query
from tests.stream.helpers import (
    BASE_MS, make_ticks, produce_raw, produce_ticks, read_bars, read_dlq, running, wait_processed,
)
from tests.stream.reference import bars_reference
from tests.events.test_kafka import java_partition
from tests.support import read_topic

pytestmark = pytest.mark.slow

FLOAT_FIELDS = ("open", "high", "low", "close", "volume", "vwap", "change_pct", "sma_5", "sma_10", "sma_20",
                "ema_12", "ema_26", "macd", "volatility_20", "zscore_20", "rsi_14", "volume_avg_20",
                "volume_ratio")


def closer(ts_ms: int) -> list[dict[str, Any]]:
    """One tick far ahead in event time: moves the watermark past every earlier bar."""
    return [{"symbol": "ZZZ", "ts": ts_ms, "price": 1.0, "size": 1.0}]


def assert_bars_match(bars: list[Bar], expected: dict[str, dict[str, Any]]) -> None:
    got = {b.id: b for b in bars}
    assert len(got) == len(bars), "a bar id was emitted twice"
    assert sorted(got) == sorted(expected)
    for bar_id, exp in expected.items():
        bar = got[bar_id]
        assert (bar.symbol, bar.start_ms, bar.ts, bar.bar_seconds, bar.count) == (
            exp["symbol"], exp["start_ms"], exp["ts"], exp["bar_seconds"], exp["count"]), bar_id
        for name in FLOAT_FIELDS:
            want, have = exp[name], getattr(bar, name)
            if want is None:
                assert have is None, f"{bar_id}.{name}: expected None (warm-up), got {have}"
            else:
                assert have == pytest.approx(want, rel=1e-9, abs=1e-9), f"{bar_id}.{name}"


def test_known_ticks_give_exact_bars_and_indicators(spark, stream_cfg) -> None:
    symbols = ["AAA", "BBB", "CCC"]
    waves = [make_ticks(symbols, range(w * 10, w * 10 + 10), skip={("BBB", 7), ("CCC", 15)}) for w in range(3)]
    data = [t for wave in waves for t in wave]
    expected = bars_reference(data, 1)
    assert len(expected) == 88  # 3 symbols x 30 bars - 2 gaps
    totals = ProgressTotals()
    with running(spark, stream_cfg) as query:
        sent = 0
        for wave in waves:  # each wave is processed before the next is sent: nothing is late
            produce_ticks(stream_cfg, wave)
            sent += len(wave)
            wait_processed(query, totals, sent)
        produce_ticks(stream_cfg, closer(BASE_MS + 60_000))
        bars = read_bars(stream_cfg, expect=len(expected))
        totals.update(query)
    assert_bars_match(bars, expected)
    # Spark's sink puts each symbol's bars where the Python producers put its ticks (murmur2)
    where = {(m.key() or b"").decode(): m.partition()
             for m in read_topic(stream_cfg.base, stream_cfg.metrics_topic, expect=len(expected))}
    assert where == {s: java_partition(s.encode(), stream_cfg.base.kafka_partitions) for s in symbols}
    full = [b for b in bars if b.symbol == "AAA"]
    assert sum(b.rsi_14 is not None for b in full) == 30 - 14  # warm-up: first RSI on bar 15
    assert totals.totals["late"] == 0 and totals.totals["invalid"] == 0


def test_late_tick_is_dead_lettered_and_not_folded_into_a_bar(spark, stream_cfg) -> None:
    data = make_ticks(["AAA"], range(0, 10), seed=3)
    max_ts = max(t["ts"] for t in data)
    watermark = max_ts - stream_cfg.lateness_ms
    late = [
        {"symbol": "AAA", "ts": BASE_MS + 2_500, "price": 999.0, "size": 1000.0},   # bar 2, closed already
        {"symbol": "AAA", "ts": watermark - 1, "price": 998.0, "size": 1000.0},     # behind the watermark
    ]
    expected = bars_reference(data, 1)
    closed_before = sum(1 for b in expected.values() if b["ts"] <= watermark)
    totals = ProgressTotals()
    with running(spark, stream_cfg) as query:
        produce_ticks(stream_cfg, data)
        wait_processed(query, totals, len(data))
        read_bars(stream_cfg, expect=closed_before)  # the watermark has passed those bars
        produce_ticks(stream_cfg, late)
        dead = read_dlq(stream_cfg, expect=2)
        produce_ticks(stream_cfg, closer(BASE_MS + 60_000))
        bars = read_bars(stream_cfg, expect=len(expected))
        totals.update(query)
    assert_bars_match(bars, expected)  # neither 999 nor 998 is anywhere
    assert [h["dlq.error"] for _, h in dead] == ["late", "late"]
    assert sorted(json.loads(v)["price"] for v, _ in dead) == [998.0, 999.0]
    assert all(h["dlq.topic"] == stream_cfg.ticks_topic and int(h["dlq.watermark_ms"]) >= watermark for _, h in dead)
    assert totals.totals["late"] == 2


def test_malformed_ticks_go_to_the_dlq_and_the_query_goes_on(spark, stream_cfg) -> None:
    good = make_ticks(["AAA"], range(0, 4), seed=5)
    tick = {"type": "tick", "v": 1, "id": "x:AAA:1", "ts": BASE_MS + 100, "symbol": "AAA", "price": 10.0,
            "size": 1.0, "source": "x", "seq": 1}
    bad: list[bytes | None] = [
        b"not json at all",
        None,
        b"[1, 2, 3]",
        json.dumps({**tick, "type": "bar"}).encode(),
        json.dumps({**tick, "price": -1.0}).encode(),
        json.dumps({**tick, "price": "ten"}).encode(),
        json.dumps({**tick, "symbol": "lower"}).encode(),
        json.dumps({**tick, "ts": 1_700_000_000}).encode(),  # seconds, not ms
        json.dumps({k: v for k, v in tick.items() if k != "size"}).encode(),
    ]
    expected = bars_reference(good, 1)
    totals = ProgressTotals()
    with running(spark, stream_cfg) as query:
        produce_raw(stream_cfg, bad[:4])
        produce_ticks(stream_cfg, good)
        produce_raw(stream_cfg, bad[4:])
        wait_processed(query, totals, len(good) + len(bad))
        produce_ticks(stream_cfg, closer(BASE_MS + 60_000))
        bars = read_bars(stream_cfg, expect=len(expected))
        dead = read_dlq(stream_cfg, expect=len(bad))
        assert query.isActive
        totals.update(query)
    assert_bars_match(bars, expected)
    assert [v for v, _ in dead] == bad
    reasons = [h["dlq.error"] for _, h in dead]
    assert all(r and r != "late" for r in reasons), reasons
    assert reasons[0].startswith("undecodable") and reasons[1] == "empty message"
    assert "price" in reasons[4] and "price" in reasons[5] and "symbol" in reasons[6] and "ts" in reasons[7]
    assert totals.totals["invalid"] == len(bad)


def test_restart_from_checkpoint_gives_the_same_bars(spark, stream_cfg) -> None:
    symbols = ["AAA", "BBB"]
    waves = [make_ticks(symbols, range(w * 10, w * 10 + 10), seed=11) for w in range(3)]
    expected = bars_reference([t for w in waves for t in w], 1)
    first = ProgressTotals()
    query = start_query(spark, stream_cfg)
    try:
        produce_ticks(stream_cfg, waves[0])
        wait_processed(query, first, len(waves[0]))
        produce_ticks(stream_cfg, waves[1])
        wait_processed(query, first, len(waves[0]) + len(waves[1]))
        read_bars(stream_cfg, expect=19 * 2)  # bars 0..18 closed (watermark in bar 19)
    finally:
        stop_gracefully(query)
    assert not query.isActive
    second = ProgressTotals()
    query = start_query(spark, stream_cfg)  # same checkpoint
    try:
        produce_ticks(stream_cfg, waves[2])
        wait_processed(query, second, len(waves[2]))
        produce_ticks(stream_cfg, closer(BASE_MS + 60_000))
        bars = read_bars(stream_cfg, expect=len(expected))
    finally:
        stop_gracefully(query)
    by_id: dict[str, Bar] = {}
    for b in bars:
        assert by_id.setdefault(b.id, b) == b, f"{b.id} emitted twice with different values"
    assert_bars_match(list(by_id.values()), expected)
