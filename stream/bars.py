"""Ticks -> bars -> Bar events, for one shard of symbols, with no Spark in sight.

The Spark job hashes every symbol to one of a few shards and keeps one
:class:`ShardState` per shard in its state store; per micro-batch it calls
:func:`add_ticks` with the shard's new ticks, and when the event-time
watermark passes a bar's end it calls :func:`close_bars`. Both are pure:
state in, state and outputs out.

Conventions:

* A bar of ``bar_ms`` covers event times ``[start, start + bar_ms)``, with
  ``start`` a multiple of ``bar_ms`` since the epoch (UTC-aligned).
* open/close are the prices of the first/last tick in event-time order;
  ties on event time are broken by Kafka partition and offset (arrival order).
* vwap = sum(price * size) / sum(size); a bar whose ticks all have size 0
  (quotes) takes the plain mean price instead.
* A tick whose event time is at or behind the watermark (``ts_ms <=
  watermark_ms``, Spark's own rule), or that falls in a bar already closed,
  is late: it is returned to the caller (for the DLQ) and never folded in.
* A bar is closed, and emitted once, when the watermark reaches its end. The
  watermark is the largest event time seen minus the lateness (see
  :func:`effective_watermark`).
* Backfilled history (closed ``HistoryBar`` rows) is folded by :func:`add_history`
  with the same indicator step as a live bar closing, strictly between the
  symbol's newest closed bar and its oldest open bar: a repeated backfill
  changes nothing and history never replaces a live bar. History moves no
  watermark (it is older than the live ticks that follow it) and needs no timer.
* Every closed bar, live or history, is also folded into the symbol's session
  references (:mod:`stream.sessions`: session_open, prev_close, gap_pct,
  high_20d, low_20d on the one market calendar), which the Bar carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np
import pandas as pd

from events.contract import Bar, bar_id
from stream.indicators import IndicatorState, step, to_optional
from stream.sessions import SessionState, session_step

__all__ = [
    "HISTORY_COLUMNS", "HistoryBatchResult", "OpenBar", "ShardState", "SymbolState", "add_history", "add_ticks",
    "close_bars", "dump_state", "effective_watermark", "load_state",
]


class OpenBar(msgspec.Struct, array_like=True):
    open: float
    high: float
    low: float
    close: float
    volume: float
    pv: float            # sum of price * size
    price_sum: float     # for the vwap of a zero-volume bar
    count: int
    first: tuple[int, int, int]   # (ts_ms, partition, offset) of the open tick
    last: tuple[int, int, int]    # ... of the close tick


class SymbolState(msgspec.Struct, array_like=True):
    indicators: IndicatorState = msgspec.field(default_factory=IndicatorState)
    last_closed_start: int = -1
    open_bars: dict[int, OpenBar] = {}
    sessions: SessionState = msgspec.field(default_factory=SessionState)  # last: older checkpoints decode


class ShardState(msgspec.Struct, array_like=True):
    symbols: dict[str, SymbolState] = {}
    timers: list[int] = []   # bar ends (ms) with a registered event-time timer
    max_ts: int = 0          # the largest event time this shard has accepted


def effective_watermark(state: ShardState, spark_watermark_ms: int, lateness_ms: int) -> int:
    """The watermark a shard acts on: Spark's global one, or its own max event time - lateness if later.

    Both are "largest event time seen - lateness" (the shard's own max is a
    lower bound of the global max), so closing on the later of the two is
    the same rule, applied one micro-batch earlier: Spark only advances its
    watermark between micro-batches.
    """
    return max(spark_watermark_ms, state.max_ts - lateness_ms)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ShardState)


def dump_state(state: ShardState) -> bytes:
    return _encoder.encode(state)


def load_state(raw: bytes | None) -> ShardState:
    return ShardState() if raw is None else _decoder.decode(raw)


@dataclass(frozen=True)
class TickBatchResult:
    late: pd.DataFrame       # the input rows that were late, unchanged
    new_timers: list[int]    # bar ends that need an event-time timer


TICK_COLUMNS = ("symbol", "ts_ms", "price", "size", "partition", "offset")


def add_ticks(state: ShardState, ticks: pd.DataFrame, watermark_ms: int, bar_ms: int) -> TickBatchResult:
    """Fold a micro-batch of one shard's valid ticks into its open bars (mutates ``state``).

    ``ticks`` has at least the columns :data:`TICK_COLUMNS`, in any order.
    """
    if ticks.empty:
        return TickBatchResult(ticks, [])
    ts = ticks["ts_ms"].to_numpy(dtype=np.int64)
    start = ts - ts % bar_ms
    last_closed = {s: ss.last_closed_start for s, ss in state.symbols.items()}
    closed = ticks["symbol"].map(last_closed).fillna(-1).to_numpy(dtype=np.int64)
    late_mask = (ts <= watermark_ms) | (start <= closed)
    late = ticks[late_mask]
    fresh = ticks[~late_mask].assign(start=start[~late_mask])
    if fresh.empty:
        return TickBatchResult(late, [])
    fresh = fresh.assign(pv=fresh["price"] * fresh["size"])
    fresh = fresh.sort_values(["symbol", "start", "ts_ms", "partition", "offset"], kind="stable")
    grouped = fresh.groupby(["symbol", "start"], sort=False)
    agg = grouped.agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
        volume=("size", "sum"), pv=("pv", "sum"), price_sum=("price", "sum"), count=("price", "size"),
        first_ts=("ts_ms", "first"), first_p=("partition", "first"), first_o=("offset", "first"),
        last_ts=("ts_ms", "last"), last_p=("partition", "last"), last_o=("offset", "last"),
    ).reset_index()
    state.max_ts = max(state.max_ts, int(fresh["ts_ms"].max()))
    known = set(state.timers)
    new_timers: list[int] = []
    for row in agg.itertuples(index=False):
        sym_state = state.symbols.get(row.symbol)
        if sym_state is None:
            sym_state = state.symbols[row.symbol] = SymbolState()
        part = OpenBar(
            open=float(row.open), high=float(row.high), low=float(row.low), close=float(row.close),
            volume=float(row.volume), pv=float(row.pv), price_sum=float(row.price_sum), count=int(row.count),
            first=(int(row.first_ts), int(row.first_p), int(row.first_o)),
            last=(int(row.last_ts), int(row.last_p), int(row.last_o)),
        )
        start_ms = int(row.start)
        bar = sym_state.open_bars.get(start_ms)
        sym_state.open_bars[start_ms] = part if bar is None else _merge(bar, part)
        end_ms = start_ms + bar_ms
        if end_ms not in known:
            known.add(end_ms)
            new_timers.append(end_ms)
    state.timers = sorted(known)
    return TickBatchResult(late, new_timers)


def _merge(a: OpenBar, b: OpenBar) -> OpenBar:
    first, last = (a, b) if a.first <= b.first else (b, a)
    return OpenBar(
        open=first.open, high=max(a.high, b.high), low=min(a.low, b.low),
        close=(b if b.last >= a.last else a).close,
        volume=a.volume + b.volume, pv=a.pv + b.pv, price_sum=a.price_sum + b.price_sum,
        count=a.count + b.count, first=first.first, last=max(a.last, b.last),
    )


def close_bars(state: ShardState, watermark_ms: int, bar_seconds: int) -> list[Bar]:
    """Close every open bar whose end is at or behind the watermark (mutates ``state``).

    Returns the Bar events in (round, symbol) order: each symbol's bars in
    start order, the indicators folded bar by bar.
    """
    bar_ms = bar_seconds * 1000
    due: dict[str, list[int]] = {}
    for symbol, sym_state in state.symbols.items():
        starts = sorted(s for s in sym_state.open_bars if s + bar_ms <= watermark_ms)
        if starts:
            due[symbol] = starts
    state.timers = [t for t in state.timers if t > watermark_ms]
    out: list[Bar] = []
    round_no = 0
    while True:
        symbols = sorted(s for s, starts in due.items() if len(starts) > round_no)
        if not symbols:
            break
        sym_states = [state.symbols[s] for s in symbols]
        bars = [ss.open_bars.pop(due[s][round_no]) for s, ss in zip(symbols, sym_states)]
        starts = [due[s][round_no] for s in symbols]
        new_ind, values = step([ss.indicators for ss in sym_states],
                               [b.close for b in bars], [b.volume for b in bars])
        for i, (symbol, ss, bar, start_ms) in enumerate(zip(symbols, sym_states, bars, starts)):
            ss.indicators = new_ind[i]
            ss.last_closed_start = start_ms
            refs = session_step(ss.sessions, start_ms, bar.open, bar.high, bar.low, bar.close)
            out.append(_bar_event(symbol, start_ms, bar_seconds, bar, to_optional(values, i) | refs))
        round_no += 1
    return out


HISTORY_COLUMNS = ("symbol", "start_ms", "bar_seconds", "open", "high", "low", "close", "volume",
                   "partition", "offset")


@dataclass(frozen=True)
class HistoryBatchResult:
    bars: list[Bar]            # Bar(history=True) events, each symbol's in start order
    dropped: pd.DataFrame      # input rows not folded: already covered, or at/after a live bar
    wrong_size: pd.DataFrame   # input rows of another bar length (for the DLQ, reason ``bar_seconds``)


def add_history(state: ShardState, rows: pd.DataFrame, bar_seconds: int) -> HistoryBatchResult:
    """Fold a micro-batch of one shard's valid history bars into its symbols' state (mutates ``state``).

    ``rows`` has at least the columns :data:`HISTORY_COLUMNS`, in any order. Each symbol's
    bars are folded oldest first through :func:`stream.indicators.step`, exactly as
    :func:`close_bars` folds a live bar, so history + live gives the indicators of one
    continuous series. A bar is folded only if its start lies after the symbol's newest
    closed bar and before its oldest open bar; the rest (a re-sent backfill, history
    overlapping live data, a duplicate in the batch) is returned in ``dropped``.
    Neither ``max_ts`` nor the timers move: history says nothing about how far live
    event time has got.
    """
    if rows.empty:
        return HistoryBatchResult([], rows, rows)
    size_ok = rows["bar_seconds"].to_numpy(dtype=np.int64) == bar_seconds
    wrong_size = rows[~size_ok]
    rows = rows[size_ok].sort_values(["symbol", "start_ms", "partition", "offset"], kind="stable")
    first = ~rows.duplicated(["symbol", "start_ms"], keep="first")
    floor = {s: ss.last_closed_start for s, ss in state.symbols.items()}
    ceiling = {s: min(ss.open_bars) for s, ss in state.symbols.items() if ss.open_bars}
    start = rows["start_ms"].to_numpy(dtype=np.int64)
    lo = rows["symbol"].map(floor).fillna(-1).to_numpy(dtype=np.int64)
    hi = rows["symbol"].map(ceiling).fillna(float(1 << 62)).to_numpy(dtype=np.int64)  # no open bar: no ceiling
    keep = first.to_numpy() & (start > lo) & (start < hi)
    dropped, kept = rows[~keep], rows[keep]
    due: dict[str, list[tuple[int, float, float, float, float, float]]] = {}
    for r in kept.itertuples(index=False):
        due.setdefault(r.symbol, []).append(
            (int(r.start_ms), float(r.open), float(r.high), float(r.low), float(r.close), float(r.volume)))
    out: list[Bar] = []
    round_no = 0
    while True:  # round r folds every symbol's r-th bar at once (step is vectorised across symbols)
        symbols = sorted(s for s, bars in due.items() if len(bars) > round_no)
        if not symbols:
            break
        sym_states = [state.symbols.get(s) or state.symbols.setdefault(s, SymbolState()) for s in symbols]
        bars = [due[s][round_no] for s in symbols]
        new_ind, values = step([ss.indicators for ss in sym_states], [b[4] for b in bars], [b[5] for b in bars])
        for i, (symbol, ss, (start_ms, o, h, low, c, v)) in enumerate(zip(symbols, sym_states, bars)):
            ss.indicators = new_ind[i]
            ss.last_closed_start = start_ms
            refs = session_step(ss.sessions, start_ms, o, h, low, c)
            out.append(_history_event(symbol, start_ms, bar_seconds, o, h, low, c, v, to_optional(values, i) | refs))
        round_no += 1
    return HistoryBatchResult(out, dropped, wrong_size)


def _history_event(symbol: str, start_ms: int, bar_seconds: int, o: float, h: float, low: float, c: float,
                   v: float, indicators: dict[str, float | None]) -> Bar:
    # A history bar has no ticks: its vwap is the typical price (high + low + close) / 3, the
    # usual stand-in from OHLC, and its count is 1 (one observation; the contract wants > 0).
    vwap = min(max((h + low + c) / 3.0, low), h)
    return Bar(
        id=bar_id(symbol, bar_seconds, start_ms), ts=start_ms + bar_seconds * 1000,
        symbol=symbol, start_ms=start_ms, bar_seconds=bar_seconds, open=o, high=h, low=low, close=c,
        volume=v, count=1, vwap=vwap, history=True, **indicators,  # type: ignore[arg-type]
    )


def _bar_event(symbol: str, start_ms: int, bar_seconds: int, bar: OpenBar,
               indicators: dict[str, float | None]) -> Bar:
    vwap = bar.pv / bar.volume if bar.volume > 0 else bar.price_sum / bar.count
    # VWAP is a weighted mean, so it lies in [low, high]; clamp the last-bit rounding.
    vwap = min(max(vwap, bar.low), bar.high)
    return Bar(
        id=bar_id(symbol, bar_seconds, start_ms), ts=start_ms + bar_seconds * 1000,
        symbol=symbol, start_ms=start_ms, bar_seconds=bar_seconds,
        open=bar.open, high=bar.high, low=bar.low, close=bar.close,
        volume=bar.volume, count=bar.count, vwap=vwap, **indicators,  # type: ignore[arg-type]
    )
