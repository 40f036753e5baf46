"""The Spark job against the real broker: backfilled history on ``history``, then live ticks on ``ticks``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from events.contract import HistoryBar, encode, history_bar_id
from events.kafka import EventProducer
from stream.runner import ProgressTotals
from tests.stream.helpers import BASE_MS, make_ticks, produce_ticks, read_bars, running, wait_processed
from tests.stream.reference import bars_reference, indicators_reference
from tests.stream.test_history import pandas_reference, walk
from tests.support import read_topic

pytestmark = pytest.mark.slow

N_HISTORY = 40
N_LIVE = 20


def history_events(closes: list[float], volumes: list[float]) -> list[HistoryBar]:
    out = []
    for i, (c, v) in enumerate(zip(closes, volumes)):
        start = BASE_MS + i * 1000
        o = closes[i - 1] if i else c
        out.append(HistoryBar(id=history_bar_id("AAA", 1, start), ts=start + 1000,
                              symbol="AAA", start_ms=start, bar_seconds=1, open=o,
                              high=max(o, c) + 0.25, low=min(o, c) - 0.25, close=c, volume=v, source="test"))
    return out


def test_history_then_live_ticks_give_one_continuous_series(spark, stream_cfg) -> None:
    closes, volumes = walk(N_HISTORY, seed=21)
    backfill = history_events(closes, volumes)
    start_60 = BASE_MS - BASE_MS % 60_000
    other_size = HistoryBar(id=history_bar_id("AAA", 60, start_60), ts=start_60 + 60_000, symbol="AAA",  # a 60 s job's
                            start_ms=start_60, bar_seconds=60, open=77.0, high=77.0, low=77.0, close=77.0,
                            volume=1.0, source="test")
    good = json.loads(encode(backfill[0]))
    broken = [json.dumps({**good, "low": 500.0}).encode(), b"{not json"]  # low > high; undecodable
    live = make_ticks(["AAA"], range(N_HISTORY, N_HISTORY + N_LIVE), seed=5)
    live_ref = bars_reference(live, 1)
    live_closes = [b["close"] for b in sorted(live_ref.values(), key=lambda b: b["start_ms"])]
    live_volumes = [b["volume"] for b in sorted(live_ref.values(), key=lambda b: b["start_ms"])]
    closer = [{"symbol": "ZZZ", "ts": BASE_MS + 600_000, "price": 1.0, "size": 1.0}]

    producer = EventProducer(stream_cfg.base)
    history_topic = stream_cfg.history_topic
    for e in backfill:
        producer.produce(e, history_topic)
    for e in backfill[:5]:  # a re-sent start of the backfill changes nothing
        producer.produce(e, history_topic)
    producer.produce(other_size, history_topic)
    for raw in broken:
        producer.produce_bytes(history_topic, b"AAA", raw)
    producer.flush()  # as ingest does: the history is on the broker before the first live tick
    totals = ProgressTotals()
    with running(spark, stream_cfg) as query:
        produce_ticks(stream_cfg, live)
        produce_ticks(stream_cfg, closer)
        bars = read_bars(stream_cfg, expect=N_HISTORY + N_LIVE)
        wait_processed(query, totals, len(backfill) + 5 + 1 + len(broken) + len(live) + 1)
        dead = read_topic(stream_cfg.base, stream_cfg.history_dlq_topic, expect=3)
        totals.update(query)

    aaa = [b for b in bars if b.symbol == "AAA"]
    assert len(aaa) == len(bars) == N_HISTORY + N_LIVE, "a bar was emitted twice, or ZZZ's open bar closed"
    # one partition holds AAA: history first, then live, in start order, nothing interleaved or repeated
    assert [b.start_ms for b in aaa] == [BASE_MS + i * 1000 for i in range(N_HISTORY + N_LIVE)]
    assert [b.history for b in aaa] == [True] * N_HISTORY + [False] * N_LIVE
    assert [b.id for b in aaa[:N_HISTORY]] == [f"bar:AAA:1:{e.start_ms}" for e in backfill]
    assert [b.close for b in aaa] == closes + live_closes
    assert [b.volume for b in aaa[:N_HISTORY]] == volumes
    for b in aaa[N_HISTORY:]:  # the live bars themselves are the ticks' bars
        ref = live_ref[b.id]
        assert (b.open, b.high, b.low, b.count) == (ref["open"], ref["high"], ref["low"], ref["count"])

    all_closes, all_volumes = closes + live_closes, volumes + live_volumes
    want = pandas_reference(all_closes)
    for i, bar in enumerate(aaa):
        for name in ("sma_20", "ema_12", "rsi_14", "volatility_20"):
            w, g = want[name].iloc[i], getattr(bar, name)
            if np.isnan(w):
                assert g is None, f"bar {i} {name}: expected None (warm-up), got {g}"
            else:
                assert g == pytest.approx(w, rel=1e-9), f"bar {i} {name}"
    for i, (bar, ref) in enumerate(zip(aaa, indicators_reference(all_closes, all_volumes))):
        for name, w in ref.items():
            g = getattr(bar, name)
            assert (g is None) if w is None else g == pytest.approx(w, rel=1e-9, abs=1e-12), f"bar {i} {name}"
    first_live = aaa[N_HISTORY]
    assert None not in (first_live.sma_20, first_live.ema_12, first_live.rsi_14, first_live.volatility_20)

    headers = [{k: v.decode() for k, v in (m.headers() or [])} for m in dead]
    by_value = {m.value(): h for m, h in zip(dead, headers)}
    assert by_value[broken[1]]["dlq.error"].startswith("undecodable history_bar")
    assert "low" in by_value[broken[0]]["dlq.error"]
    assert by_value[encode(other_size)]["dlq.error"] == "bar_seconds"
    assert all(h["dlq.topic"] == history_topic for h in headers)
    assert totals.totals["history"] == N_HISTORY and totals.totals["history_dropped"] == 5
    assert totals.totals["late"] == 0 and totals.totals["invalid"] == 3
