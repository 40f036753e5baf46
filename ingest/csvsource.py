"""Replay a CSV file of ticks or of OHLCV bars.

Ticks: columns ``symbol, ts`` (epoch ms or ISO time), ``price``, ``size`` (or
``volume``). Bars: ``date`` (or ``ts``), ``open, high, low, close, volume``,
optional ``symbol`` (else given) and ``adj_close``. A bar becomes four ticks
inside its range (open, the nearer extreme first, the other, close) spread
over the bar and sharing its volume; with ``adjusted=True`` (the default when
``adj_close`` exists) all four prices are scaled by adj_close/close, so splits
do not show up as crashes.

``bokeh`` names the offline real-data set: daily AAPL, GOOG, IBM and MSFT
2000-2013 from the ``bokeh-sampledata`` package (public domain).
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from ingest.base import RawTick

DAY_MS = 86_400_000
BOKEH_SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")


def parse_time_ms(value: str) -> int:
    """Epoch ms (digits) or an ISO date/time (UTC when no zone is given)."""
    value = value.strip()
    if value.isdigit():
        n = int(value)
        return n * 1000 if n < 10_000_000_000 else n  # seconds or milliseconds
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def bar_to_ticks(symbol: str, start_ms: int, length_ms: int, o: float, h: float, low: float,
                 c: float, volume: float) -> list[RawTick]:
    """Four ticks that reproduce the bar's OHLCV exactly, in a plausible order."""
    if not (low <= min(o, c) and max(o, c) <= h):
        raise ValueError(f"{symbol} bar at {start_ms}: open/close outside low..high")
    first, second = (low, h) if abs(o - low) < abs(h - o) else (h, low)
    step = length_ms // 4
    sizes = [volume // 4] * 3
    sizes.append(volume - sum(sizes))
    return [
        RawTick(symbol, start_ms + i * step, round(p, 6), float(s))
        for i, (p, s) in enumerate(zip((o, first, second, c), sizes))
    ]


def read_rows(path: Path | str) -> Iterator[dict[str, str]]:
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            yield {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}


def rows_to_ticks(rows: Iterable[dict[str, str]], symbol: str | None = None, bar_ms: int = DAY_MS,
                  adjusted: bool | None = None) -> Iterator[RawTick]:
    """Ticks from CSV rows of either shape (decided by the columns of each row)."""
    for line, row in enumerate(rows, start=2):
        sym = (row.get("symbol") or row.get("ticker") or symbol or "").upper()
        if not sym:
            raise ValueError(f"line {line}: no symbol column and no --symbol given")
        try:
            if "open" in row:
                o, h, low, c = (float(row[k]) for k in ("open", "high", "low", "close"))
                factor = 1.0
                if row.get("adj_close") and (adjusted is None or adjusted):
                    factor = float(row["adj_close"]) / c
                ts = parse_time_ms(row.get("date") or row.get("ts") or "")
                yield from bar_to_ticks(sym, ts, bar_ms, o * factor, h * factor, low * factor, c * factor,
                                        float(row.get("volume") or 0))
            else:
                yield RawTick(sym, parse_time_ms(row["ts"]), float(row["price"]), float(row.get("size") or row.get("volume") or 0))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"line {line}: {exc}") from None


def bokeh_rows(symbols: Iterable[str] = BOKEH_SYMBOLS) -> Iterator[dict[str, str]]:
    """Rows of the bokeh-sampledata daily stocks, interleaved by date across symbols."""
    from bokeh_sampledata import stocks

    frame = stocks.data
    frame = frame[frame["ticker"].isin(list(symbols))].sort_values(["date", "ticker"])
    for rec in frame.itertuples(index=False):
        yield {
            "symbol": rec.ticker, "date": rec.date.strftime("%Y-%m-%d"), "open": str(rec.open),
            "high": str(rec.high), "low": str(rec.low), "close": str(rec.close),
            "volume": str(rec.volume), "adj_close": str(rec.adj_close),
        }


class CsvSource:
    """Replays ticks from a CSV file (or the ``bokeh`` data set) in file order."""

    name = "csv"
    dedupe = True

    def __init__(self, path: str, symbol: str | None = None, bar_ms: int = DAY_MS,
                 adjusted: bool | None = None) -> None:
        rows = bokeh_rows() if path == "bokeh" else read_rows(path)
        self._ticks = rows_to_ticks(rows, symbol, bar_ms, adjusted)

    def next_batch(self, max_ticks: int) -> list[RawTick] | None:
        out: list[RawTick] = []
        for tick in self._ticks:
            out.append(tick)
            if len(out) >= max_ticks:
                break
        return out or None

