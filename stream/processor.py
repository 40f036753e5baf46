"""The Spark stateful processor: a thin adapter from transformWithStateInPandas to stream.bars.

One instance per shard key (``shard`` >= 0): its ValueState holds the shard's
:class:`~stream.bars.ShardState` (msgpack bytes). Rows arrive packed, one per shard
and input task (:mod:`stream.packing`), and are unpacked first. Input rows are ticks
(``kind`` ``tick``) or backfilled history bars (``kind`` ``history``); rows of
shard -1 failed validation upstream and are passed through as DLQ rows.
A batch folds its ticks into open bars, then its history bars into the closed
state (each strictly before the symbol's oldest open bar, so a symbol's history
is always folded before its live bars, whatever the order inside the batch),
then closes the bars its own ticks close (shard max event time - lateness);
event-time timers at bar ends close the rest when Spark's global watermark
passes them (e.g. a shard that received nothing). Output rows are ``bar`` (a
Bar event, JSON), ``dlq`` (a raw input with its reason: ``late``,
``bar_seconds`` or the validation failure; ``input`` says which topic it came
from) or ``dropped`` (a history bar already covered, counted then filtered out).
"""

from __future__ import annotations

from typing import Any, Iterator

import pandas as pd
from pyspark.sql.streaming.stateful_processor import (
    ExpiredTimerInfo, StatefulProcessor, StatefulProcessorHandle, TimerValues,
)

from events.contract import Bar, encode
from stream.bars import (
    ShardState, add_history, add_ticks, close_bars, dump_state, effective_watermark, load_state,
)
from stream.packing import unpack

__all__ = ["BarProcessor", "INVALID_SHARD", "OUTPUT_SCHEMA", "STATE_SCHEMA"]

INVALID_SHARD = -1
STATE_SCHEMA = "blob binary"
OUTPUT_SCHEMA = (
    "kind string, input string, symbol string, key binary, value binary, reason string, "
    "src_partition int, src_offset long, watermark_ms long"
)
OUTPUT_COLUMNS = ["kind", "input", "symbol", "key", "value", "reason", "src_partition", "src_offset",
                  "watermark_ms"]


def _bar_rows(bars: list[Bar], watermark_ms: int) -> pd.DataFrame:
    return pd.DataFrame({
        "kind": "bar",
        "input": ["history" if b.history else "tick" for b in bars],
        "symbol": [b.symbol for b in bars],
        "key": [b.key for b in bars],
        "value": [encode(b) for b in bars],
        "reason": None,
        "src_partition": -1,
        "src_offset": -1,
        "watermark_ms": watermark_ms,
    }, columns=OUTPUT_COLUMNS)


def _dlq_rows(rows: pd.DataFrame, reason: pd.Series | str, watermark_ms: int, kind: str = "dlq") -> pd.DataFrame:
    return pd.DataFrame({
        "kind": kind,
        "input": rows["kind"],
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

    def __init__(self, bar_seconds: int, lateness_ms: int) -> None:
        self.bar_seconds = bar_seconds
        self.bar_ms = bar_seconds * 1000
        self.lateness_ms = lateness_ms

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.shard_state = handle.getValueState("shard", STATE_SCHEMA)

    def _load(self) -> ShardState:
        got = self.shard_state.get()
        return load_state(None if got is None else bytes(got[0]))

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame],
                        timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        spark_watermark_ms = timerValues.getCurrentWatermarkInMs()
        batch = unpack(pd.concat(list(rows), ignore_index=True))
        if key[0] == INVALID_SHARD:
            yield _dlq_rows(batch, batch["reason"], spark_watermark_ms)
            return
        is_history = (batch["kind"] == "history").to_numpy()
        ticks, history = batch[~is_history], batch[is_history]
        state = self._load()
        watermark_ms = effective_watermark(state, spark_watermark_ms, self.lateness_ms)
        result = add_ticks(state, ticks, watermark_ms, self.bar_ms)
        # after the ticks: a history bar at or after a live bar of this very batch is dropped too
        backfill = add_history(state, history, self.bar_seconds)
        # close what this batch's own ticks already close (one micro-batch before Spark's
        # watermark catches up); the timers close the rest when the global watermark moves
        closing_ms = effective_watermark(state, spark_watermark_ms, self.lateness_ms)
        bars = close_bars(state, closing_ms, self.bar_seconds)
        for end_ms in result.new_timers:
            if end_ms > closing_ms:
                self.handle.registerTimer(end_ms)
        self.shard_state.update((dump_state(state),))
        if not result.late.empty:
            yield _dlq_rows(result.late, "late", watermark_ms)
        if not backfill.wrong_size.empty:
            yield _dlq_rows(backfill.wrong_size, "bar_seconds", watermark_ms)
        if not backfill.dropped.empty:
            yield _dlq_rows(backfill.dropped, "covered", watermark_ms, kind="dropped")
        if backfill.bars:  # before the live bars they precede, in the same output
            yield _bar_rows(backfill.bars, watermark_ms)
        if bars:
            yield _bar_rows(bars, closing_ms)

    def handleExpiredTimer(self, key: Any, timerValues: TimerValues,
                           expiredTimerInfo: ExpiredTimerInfo) -> Iterator[pd.DataFrame]:
        state = self._load()
        watermark_ms = effective_watermark(state, timerValues.getCurrentWatermarkInMs(), self.lateness_ms)
        bars = close_bars(state, watermark_ms, self.bar_seconds)
        if not bars:
            return
        self.shard_state.update((dump_state(state),))
        yield _bar_rows(bars, watermark_ms)

    def close(self) -> None:
        pass
