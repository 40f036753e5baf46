"""Helpers for the Spark integration tests: produce ticks, run the query, wait on conditions."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from typing import Any, Iterator

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from events.contract import Bar, Tick, decode, encode, tick_id
from events.kafka import EventProducer
from stream.config import StreamSettings
from stream.job import start_query
from stream.runner import ProgressTotals, stop_gracefully, wait_s
from tests.support import read_topic

BASE_MS = 1_700_000_000_000  # a multiple of every bar length used


def make_ticks(symbols: list[str], bars: range, *, seed: int = 7, bar_ms: int = 1000,
               skip: set[tuple[str, int]] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """1-4 ticks per symbol and bar, event times NOT in arrival order inside a bar."""
    rng = random.Random(seed * 1000 + bars.start)
    out: list[dict[str, Any]] = []
    for i in bars:
        for s_no, symbol in enumerate(symbols):
            if (symbol, i) in skip:
                continue
            offsets = rng.sample(range(0, bar_ms, 10), rng.randint(1, 4))  # random order
            for off in offsets:
                price = round(100 + 10 * s_no + rng.uniform(-5, 5), 2)
                size = float(rng.choice([0, 1, 5, 10, 100, 250]))
                out.append({"symbol": symbol, "ts": BASE_MS + i * bar_ms + off, "price": price, "size": size})
    return out


def produce_ticks(cfg: StreamSettings, ticks: list[dict[str, Any]], *, partition: int | None = 0) -> None:
    """Produce ticks (all to one partition by default, so arrival order is the list order)."""
    producer = EventProducer(cfg.base)
    topic = cfg.ticks_topic
    for seq, t in enumerate(ticks):
        event = Tick(id=tick_id("test", t["symbol"], seq), ts=t["ts"], symbol=t["symbol"], price=t["price"],
                     size=t["size"], source="test", seq=seq)
        if partition is None:
            producer.produce(event, topic)
        else:
            producer.raw.produce(topic, value=encode(event), key=event.key, partition=partition)
    producer.flush()


def produce_raw(cfg: StreamSettings, values: list[bytes | None], *, partition: int = 0) -> None:
    producer = EventProducer(cfg.base)
    for v in values:
        producer.raw.produce(cfg.ticks_topic, value=v, key=b"X", partition=partition)
    producer.flush()


@contextmanager
def running(spark: SparkSession, cfg: StreamSettings) -> Iterator[StreamingQuery]:
    query = start_query(spark, cfg)
    try:
        yield query
    finally:
        stop_gracefully(query)


def wait_until(query: StreamingQuery, condition, timeout_s: float = 60.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if query.exception() is not None:
            raise AssertionError(f"query failed: {query.exception()}")
        assert time.monotonic() < deadline, (
            f"timed out after {timeout_s}s waiting for {what}; status {query.status}, "
            f"batches {[(p.batchId, p.numInputRows) for p in query.recentProgress]}")
        wait_s(query, 0.1)


def wait_processed(query: StreamingQuery, totals: ProgressTotals, n: int, timeout_s: float = 60.0) -> None:
    """Wait until the query has consumed ``n`` input records in total (counted by ``totals``)."""
    def done() -> bool:
        totals.update(query)
        return totals.totals["ticks"] >= n
    wait_until(query, done, timeout_s, f"{n} input records")


def read_bars(cfg: StreamSettings, expect: int, timeout_s: float = 60.0) -> list[Bar]:
    return [decode(m.value(), Bar) for m in read_topic(cfg.base, cfg.metrics_topic, expect=expect, timeout_s=timeout_s)]


def read_dlq(cfg: StreamSettings, expect: int, timeout_s: float = 60.0) -> list[tuple[bytes | None, dict[str, str]]]:
    msgs = read_topic(cfg.base, cfg.dlq_topic, expect=expect, timeout_s=timeout_s)
    return [(m.value(), {k: v.decode() for k, v in (m.headers() or [])}) for m in msgs]
