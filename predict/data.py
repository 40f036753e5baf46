"""Training data: bar series from CSV, the bars projection, the offline sample data, yfinance.

A :class:`BarSeries` is one symbol's bars in time order: bar starts in epoch
ms and an ``(T, 5)`` OHLCV array. Loaders only read; they never train.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

OHLCV = ("open", "high", "low", "close", "volume")
DAY_S = 86_400
OFFLINE_SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")


class DataError(ValueError):
    """Input data is missing, empty or malformed."""


@dataclass(frozen=True)
class BarSeries:
    symbol: str
    bar_seconds: int
    start_ms: np.ndarray   # int64, strictly increasing
    ohlcv: np.ndarray      # float64 (T, 5)

    def __post_init__(self) -> None:
        if self.ohlcv.ndim != 2 or self.ohlcv.shape[1] != 5 or len(self.start_ms) != len(self.ohlcv):
            raise DataError(f"{self.symbol}: OHLCV must be (T, 5) with one start per row")
        if len(self.start_ms) > 1 and not (np.diff(self.start_ms) > 0).all():
            raise DataError(f"{self.symbol}: bar starts must be strictly increasing")
        if not np.isfinite(self.ohlcv).all() or (self.ohlcv[:, :4] <= 0).any():
            raise DataError(f"{self.symbol}: prices must be finite and positive")

    def __len__(self) -> int:
        return len(self.start_ms)

    @property
    def close(self) -> np.ndarray:
        return self.ohlcv[:, 3]

    def before(self, end_ms: int) -> "BarSeries":
        """The bars that start before ``end_ms``."""
        n = int(np.searchsorted(self.start_ms, end_ms, side="left"))
        return BarSeries(self.symbol, self.bar_seconds, self.start_ms[:n], self.ohlcv[:n])


def frame_to_series(frame: pd.DataFrame, symbol: str, bar_seconds: int) -> BarSeries:
    """Columns ``start_ms`` + open/high/low/close/volume -> a sorted, de-duplicated series."""
    missing = [c for c in ("start_ms", *OHLCV) if c not in frame.columns]
    if missing:
        raise DataError(f"{symbol}: missing columns {missing}")
    f = frame.dropna(subset=list(OHLCV)).sort_values("start_ms").drop_duplicates("start_ms", keep="last")
    if f.empty:
        raise DataError(f"{symbol}: no bars")
    return BarSeries(symbol, int(bar_seconds), f["start_ms"].to_numpy(np.int64),
                     f[list(OHLCV)].to_numpy(np.float64))


def _to_ms(values: pd.Series) -> pd.Series:
    ts = pd.to_datetime(values, utc=True)
    return (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)


def adjust_ohlcv(frame: pd.DataFrame) -> pd.DataFrame:
    """Scale open/high/low by ``adj_close / close`` and volume by its inverse.

    Sources that give an adjusted close beside unadjusted prices (the sample
    data, Quandl's WIKI) would otherwise show every split as a crash.
    """
    f = frame.copy()
    factor = f["adj_close"] / f["close"]
    for col in ("open", "high", "low"):
        f[col] = f[col] * factor
    f["close"] = f["adj_close"]
    f["volume"] = f["volume"] / factor
    return f


def load_csv(path: str | Path, *, symbol: str | None = None, bar_seconds: int = DAY_S) -> list[BarSeries]:
    """Bars from a CSV with a time column (``start_ms``, ``date``, ``datetime`` or ``timestamp``),
    open/high/low/close/volume, optionally ``symbol`` (else ``symbol`` argument or the file
    stem) and ``adj_close`` (then prices are adjusted with it)."""
    frame = pd.read_csv(path)
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    if "start_ms" not in frame.columns:
        for col in ("date", "datetime", "timestamp", "time"):
            if col in frame.columns:
                frame["start_ms"] = _to_ms(frame[col])
                break
        else:
            raise DataError(f"{path}: no time column (start_ms, date, datetime, timestamp)")
    if "adj_close" in frame.columns:
        frame = adjust_ohlcv(frame)
    if "symbol" not in frame.columns:
        frame["symbol"] = symbol or Path(path).stem.upper()
    return [frame_to_series(g, str(sym), bar_seconds) for sym, g in frame.groupby("symbol", sort=True)]


def load_offline(symbols: Sequence[str] = OFFLINE_SYMBOLS) -> list[BarSeries]:
    """Daily bars 2000-2013 (public domain, shipped by ``bokeh-sampledata``), adjusted close.

    Open, high, low and volume in the source are not split-adjusted; they are
    rescaled with the adjusted close (see :func:`adjust_ohlcv`).
    """
    from bokeh_sampledata import stocks

    out = []
    for symbol in symbols:
        raw: dict[str, Any] = getattr(stocks, symbol)
        frame = pd.DataFrame(raw)
        frame["start_ms"] = _to_ms(frame["date"])
        out.append(frame_to_series(adjust_ohlcv(frame), symbol, DAY_S))
    return out


#: bars per symbol of ``--source sim-history``: 1000 (17 h of 60 s bars) leave a holdout of about 150
#: samples per symbol, enough for the Diebold-Mariano test pooled over symbols
SIM_HISTORY_BARS = 1000


def load_sim_history(symbols: Sequence[str], *, bar_seconds: int, n_bars: int = SIM_HISTORY_BARS,
                     end_ms: int | None = None, seed: int = 7, time_scale: float = 60.0) -> list[BarSeries]:
    """The simulated history the ingest backfill publishes (:func:`ingest.history.simulated_history`),
    ``n_bars`` closed bars per symbol before ``end_ms`` (default now) at ``bar_seconds``.

    The defaults are the simulator's (``python -m ingest`` ``--seed 7 --time-scale 60``), so a
    model trained on these series is trained on the kind of bars ``make run`` serves.
    """
    from ingest.history import simulated_history

    if n_bars < 2:
        raise DataError(f"sim-history needs at least 2 bars per symbol, got {n_bars}")
    end = int(time.time() * 1000) if end_ms is None else int(end_ms)
    out = []
    for symbol in symbols:
        bars = simulated_history(symbol, bar_seconds=bar_seconds, end_ms=end, n_bars=n_bars, seed=seed,
                                 time_scale=time_scale)
        out.append(BarSeries(symbol, int(bar_seconds), np.array([b.start_ms for b in bars], np.int64),
                             np.array([(b.open, b.high, b.low, b.close, b.volume) for b in bars], np.float64)))
    return out


def load_bars_table(session_factory: Callable[[], Any], *, bar_seconds: int,
                    symbols: Iterable[str] | None = None, min_bars: int = 1) -> list[BarSeries]:
    """Series from the ``bars`` projection (:class:`events.models.BarRecord`)."""
    from sqlalchemy import select

    from events.models import BarRecord

    stmt = select(BarRecord.symbol, BarRecord.start_ms, BarRecord.open, BarRecord.high, BarRecord.low,
                  BarRecord.close, BarRecord.volume).where(BarRecord.bar_seconds == bar_seconds)
    if symbols is not None:
        stmt = stmt.where(BarRecord.symbol.in_(list(symbols)))
    stmt = stmt.order_by(BarRecord.symbol, BarRecord.start_ms)
    with session_factory() as session:
        rows = session.execute(stmt).all()
    frame = pd.DataFrame(rows, columns=["symbol", "start_ms", *OHLCV])
    return [frame_to_series(g, str(sym), bar_seconds) for sym, g in frame.groupby("symbol", sort=True)
            if len(g) >= min_bars]


def recent_bars(session_factory: Callable[[], Any], symbol: str, bar_seconds: int, before_ms: int,
                limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``limit`` bars of a symbol that start before ``before_ms``: (starts, OHLCV), oldest first."""
    from sqlalchemy import select

    from events.models import BarRecord

    stmt = (select(BarRecord.start_ms, BarRecord.open, BarRecord.high, BarRecord.low, BarRecord.close,
                   BarRecord.volume)
            .where(BarRecord.symbol == symbol, BarRecord.bar_seconds == bar_seconds, BarRecord.start_ms < before_ms)
            .order_by(BarRecord.start_ms.desc()).limit(limit))
    with session_factory() as session:
        rows = session.execute(stmt).all()[::-1]
    if not rows:
        return np.empty(0, np.int64), np.empty((0, 5))
    arr = np.asarray(rows, dtype=np.float64)
    return np.asarray([r[0] for r in rows], np.int64), arr[:, 1:]


def load_metrics_topic(settings: Any, *, bar_seconds: int, symbols: Iterable[str] | None = None,
                       timeout_s: float = 60.0) -> list[BarSeries]:
    """Replay the ``metrics`` topic from the beginning up to its current end (no group, no commits)."""
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from events.contract import Bar, InvalidEvent, decode

    topic = settings.topic("metrics")
    wanted = None if symbols is None else set(symbols)
    consumer = Consumer({**settings.kafka_common(), "group.id": f"predict-replay-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    rows: list[tuple[str, int, float, float, float, float, float]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise DataError(f"cannot read {topic}: {meta.error}")
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise DataError(f"replaying {topic} took longer than {timeout_s}s")
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                try:
                    b = decode(msg.value(), Bar)
                except InvalidEvent:
                    continue  # the DLQ has it already
                if b.bar_seconds == bar_seconds and (wanted is None or b.symbol in wanted):
                    rows.append((b.symbol, b.start_ms, b.open, b.high, b.low, b.close, b.volume))
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:  # past transaction markers too
                    ends.pop(tp.partition, None)
    finally:
        consumer.close()
    frame = pd.DataFrame(rows, columns=["symbol", "start_ms", *OHLCV])
    return [frame_to_series(g, str(sym), bar_seconds) for sym, g in frame.groupby("symbol", sort=True)]


# --- yfinance ----------------------------------------------------------------------

YF_INTERVAL_SECONDS = {"1m": 60, "2m": 120, "5m": 300, "15m": 900, "30m": 1800, "60m": 3600,
                       "1h": 3600, "1d": DAY_S}


def history_frame_to_series(frame: pd.DataFrame, symbol: str, interval: str = "1d") -> BarSeries:
    """A ``yfinance.Ticker.history()`` frame (DatetimeIndex, Open/High/Low/Close/Volume,
    prices already adjusted by ``auto_adjust``) -> a series."""
    if frame is None or frame.empty:
        raise DataError(f"{symbol}: yfinance returned no rows (unknown symbol or no data for the period)")
    if interval not in YF_INTERVAL_SECONDS:
        raise DataError(f"unsupported yfinance interval {interval!r}")
    f = frame.rename(columns=str.lower)
    f = f.reset_index()
    time_col = f.columns[0]
    f["start_ms"] = _to_ms(f[time_col])
    if "adj close" in f.columns:  # auto_adjust=False
        f = adjust_ohlcv(f.rename(columns={"adj close": "adj_close"}))
    return frame_to_series(f, symbol, YF_INTERVAL_SECONDS[interval])


def fetch_yfinance(symbols: Sequence[str], *, period: str = "5y", interval: str = "1d",
                   ticker: Callable[[str], Any] | None = None) -> list[BarSeries]:
    """History from Yahoo via yfinance (needs the network); raises :class:`DataError` when unreachable."""
    if ticker is None:
        import yfinance as yf

        ticker = yf.Ticker
    out = []
    for symbol in symbols:
        try:
            frame = ticker(symbol).history(period=period, interval=interval, auto_adjust=True, raise_errors=True)
        except Exception as exc:  # yfinance raises many kinds (DNS, HTTP, rate limit, no data)
            raise DataError(f"{symbol}: yfinance history failed: {exc}") from exc
        out.append(history_frame_to_series(frame, symbol, interval))
    return out
