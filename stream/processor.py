"""The Spark stateful processor: a thin adapter from transformWithStateInPandas to stream.bars.

One instance per shard key (``shard`` >= 0): its ValueState holds the shard's
:class:`~stream.bars.ShardState` (msgpack bytes). Rows of shard -1 are the
ticks that failed validation upstream; they are passed through as DLQ rows.
Event-time timers fire at bar ends; each firing closes every due bar of the
shard. Output rows are either ``bar`` (a Bar event, JSON) or ``dlq`` (a raw
tick with its reason: ``late`` or the validation failure).
"""

from __future__ import annotations

from typing import Any, Iterator

import pandas as pd
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.streaming.stateful_processor import ExpiredTimerInfo, TimerValues

from events.contract import encode
from stream.bars import add_ticks, close_bars, dump_state, load_state

__all__ = ["BarProcessor", "INVALID_SHARD", "OUTPUT_SCHEMA", "STATE_SCHEMA"]

INVALID_SHARD = -1
STATE_SCHEMA = "blob binary"
OUTPUT_SCHEMA = (
    "kind string, symbol string, key binary, value binary, reason string, "
    "src_partition int, src_offset long, watermark_ms long"
)
OUTPUT_COLUMNS = ["kind", "symbol", "key", "value", "reason", "src_partition", "src_offset", "watermark_ms"]


def _dlq_rows(rows: pd.DataFrame, reason: pd.Series | str, watermark_ms: int) -> pd.DataFrame:
    return pd.DataFrame({
        "kind": "dlq",
        "symbol": rows["symbol"],
        "key": rows["key"],
        "value": rows["value"],
        "reason": reason,
        "src_partition": rows["partition"].astype("int32"),
        "src_offset": rows["offset"].astype("int64"),
        "watermark_ms": watermark_ms,
    }, columns=OUTPUT_COLUMNS)


class BarProcessor(StatefulProcessor):
    """Bars and indicators per shard of symbols; see stream.bars for the semantics."""

    def __init__(self, bar_seconds: int) -> None:
        self.bar_seconds = bar_seconds
        self.bar_ms = bar_seconds * 1000

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.shard_state = handle.getValueState("shard", STATE_SCHEMA)

    def _load(self):  # type: ignore[no-untyped-def]
        got = self.shard_state.get()
        return load_state(None if got is None else bytes(got[0]))

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame],
                        timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        watermark_ms = timerValues.getCurrentWatermarkInMs()
        ticks = pd.concat(list(rows), ignore_index=True)
        if key[0] == INVALID_SHARD:
            yield _dlq_rows(ticks, ticks["reason"], watermark_ms)
            return
        state = self._load()
        result = add_ticks(state, ticks, watermark_ms, self.bar_ms)
        for end_ms in result.new_timers:
            self.handle.registerTimer(end_ms)
        self.shard_state.update((dump_state(state),))
        if not result.late.empty:
            yield _dlq_rows(result.late, "late", watermark_ms)

    def handleExpiredTimer(self, key: Any, timerValues: TimerValues,
                           expiredTimerInfo: ExpiredTimerInfo) -> Iterator[pd.DataFrame]:
        watermark_ms = timerValues.getCurrentWatermarkInMs()
        state = self._load()
        bars = close_bars(state, watermark_ms, self.bar_seconds)
        if not bars:
            return
        self.shard_state.update((dump_state(state),))
        yield pd.DataFrame({
            "kind": "bar",
            "symbol": [b.symbol for b in bars],
            "key": [b.key for b in bars],
            "value": [encode(b) for b in bars],
            "reason": None,
            "src_partition": -1,
            "src_offset": -1,
            "watermark_ms": watermark_ms,
        }, columns=OUTPUT_COLUMNS)

    def close(self) -> None:
        pass
