"""Loaders: offline sample data, CSV, the bars projection (SQLite and PostgreSQL), yfinance frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from events.db import make_engine
from events.models import BarRecord
from predict.data import (
    DataError, fetch_yfinance, history_frame_to_series, load_bars_table, load_csv, load_offline,
)

FIXTURES = Path(__file__).parent / "fixtures"


def test_offline_data_is_adjusted_and_has_no_split_crashes() -> None:
    series = {s.symbol: s for s in load_offline()}
    assert set(series) == {"AAPL", "GOOG", "IBM", "MSFT"}
    aapl = series["AAPL"]
    assert len(aapl) == 3270 and aapl.bar_seconds == 86_400
    assert aapl.start_ms[0] == pd.Timestamp("2000-03-01", tz="UTC").value // 1_000_000
    from bokeh_sampledata import stocks

    assert np.allclose(aapl.close, stocks.AAPL["adj_close"])
    # AAPL split 2:1 on 2000-06-21 and 2005-02-28: unadjusted closes halve overnight, adjusted ones do not
    raw = np.asarray(stocks.AAPL["close"])
    dates = list(stocks.AAPL["date"])
    for day in ("2000-06-21", "2005-02-28"):
        i = dates.index(day)
        assert np.log(raw[i] / raw[i - 1]) < -0.5
        assert abs(np.log(aapl.close[i] / aapl.close[i - 1])) < 0.1
        assert abs(np.log(aapl.ohlcv[i, 0] / aapl.close[i - 1])) < 0.1  # open rescaled too
    assert (aapl.ohlcv[:, 1] >= aapl.ohlcv[:, 2]).all()  # high >= low after rescaling


def test_csv_with_dates_symbols_and_adjusted_close(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "Date,Symbol,Open,High,Low,Close,Volume,Adj Close\n"
        "2024-01-03,XYZ,10,11,9,10,1000,5\n"
        "2024-01-02,XYZ,20,22,18,20,500,10\n"
        "2024-01-02,ABC,1,1,1,1,1,1\n"
    )
    series = {s.symbol: s for s in load_csv(path)}
    xyz = series["XYZ"]
    assert xyz.start_ms.tolist() == [1704153600000, 1704240000000]  # sorted by time
    assert xyz.ohlcv.tolist() == [[10, 11, 9, 10, 1000], [5, 5.5, 4.5, 5, 2000]]
    one = tmp_path / "msft.csv"
    one.write_text("start_ms,open,high,low,close,volume\n1704153600000,1,2,1,2,3\n")
    [s] = load_csv(one, bar_seconds=60)
    assert s.symbol == "MSFT" and s.bar_seconds == 60
    bad = tmp_path / "bad.csv"
    bad.write_text("when,open\n1,2\n")
    with pytest.raises(DataError, match="no time column"):
        load_csv(bad)


def test_bars_projection(database_url: str) -> None:
    from sqlalchemy.orm import sessionmaker

    factory = sessionmaker(make_engine(database_url))
    with factory() as session:
        for i in range(5):
            for sym in ("AAA", "BBB"):
                session.add(BarRecord(symbol=sym, bar_seconds=60, start_ms=1_700_000_000_000 + (4 - i) * 60_000,
                                      open=10 + i, high=11 + i, low=9 + i, close=10.5 + i, volume=100 * i,
                                      count=3, vwap=10 + i))
        session.add(BarRecord(symbol="AAA", bar_seconds=300, start_ms=1_700_000_000_000, open=1, high=1, low=1,
                              close=1, volume=1, count=1, vwap=1))
        session.commit()
    series = load_bars_table(factory, bar_seconds=60)
    assert [s.symbol for s in series] == ["AAA", "BBB"]
    aaa = series[0]
    assert len(aaa) == 5 and (np.diff(aaa.start_ms) == 60_000).all()
    assert aaa.close.tolist() == [14.5, 13.5, 12.5, 11.5, 10.5]
    assert [s.symbol for s in load_bars_table(factory, bar_seconds=60, symbols=["BBB"])] == ["BBB"]
    assert load_bars_table(factory, bar_seconds=60, min_bars=6) == []


def yf_frame() -> pd.DataFrame:
    """A recorded-shape frame of yfinance ``Ticker.history(interval="1d")``."""
    frame = pd.read_csv(FIXTURES / "yf_history_msft_1d.csv", index_col="Date")
    frame.index = pd.to_datetime(frame.index, utc=True).tz_convert("America/New_York")
    return frame


def test_yfinance_history_frame_to_series() -> None:
    frame = yf_frame()
    s = history_frame_to_series(frame, "MSFT", "1d")
    assert len(s) == 60 and s.bar_seconds == 86_400
    # midnight New York is 05:00 UTC in winter
    assert s.start_ms[0] == pd.Timestamp("2012-12-04 05:00", tz="UTC").value // 1_000_000
    assert np.allclose(s.close, frame["Close"]) and np.allclose(s.ohlcv[:, 4], frame["Volume"])
    minute = frame.head(3).copy()
    minute.index = pd.DatetimeIndex(["2024-05-01 09:30", "2024-05-01 09:31", "2024-05-01 09:32"],
                                    tz="America/New_York", name="Datetime")
    m = history_frame_to_series(minute, "MSFT", "1m")
    assert m.bar_seconds == 60 and np.diff(m.start_ms).tolist() == [60_000, 60_000]
    with pytest.raises(DataError, match="no rows"):
        history_frame_to_series(frame.iloc[:0], "NOPE", "1d")


class _Ticker:
    """Stands in for ``yfinance.Ticker`` at the adapter boundary (Yahoo is unreachable here)."""

    def __init__(self, frame: pd.DataFrame | None, error: Exception | None = None) -> None:
        self.frame, self.error = frame, error
        self.calls: list[str] = []

    def __call__(self, symbol: str) -> "_Ticker":
        self.calls.append(symbol)
        return self

    def history(self, **kwargs: object) -> pd.DataFrame:
        if self.error:
            raise self.error
        assert kwargs["auto_adjust"] is True and kwargs["interval"] == "1d"
        return self.frame  # type: ignore[return-value]


def test_fetch_yfinance_through_the_adapter() -> None:
    ticker = _Ticker(yf_frame())
    [s] = fetch_yfinance(["MSFT"], ticker=ticker)
    assert s.symbol == "MSFT" and len(s) == 60 and ticker.calls == ["MSFT"]
    with pytest.raises(DataError, match="yfinance history failed: Could not resolve host"):
        fetch_yfinance(["MSFT"], ticker=_Ticker(None, OSError("Could not resolve host: query2.finance.yahoo.com")))


def test_replay_of_the_metrics_topic(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    from events.kafka import EventProducer
    from predict.data import load_metrics_topic
    from tests.predict.synthetic import random_walk_series
    from tests.predict.test_serve import bars_of

    a, b = random_walk_series("AAA", n=30, seed=1), random_walk_series("BBB", n=20, seed=2)
    producer = EventProducer(kafka_settings)
    for bar in bars_of(a) + bars_of(b):
        producer.produce(bar)
    producer.produce(bars_of(a)[3])  # a redelivery
    producer.produce_bytes(kafka_settings.topic("metrics"), b"AAA", b"garbage")
    producer.flush()
    series = {s.symbol: s for s in load_metrics_topic(kafka_settings, bar_seconds=60)}
    assert set(series) == {"AAA", "BBB"}
    np.testing.assert_array_equal(series["AAA"].start_ms, a.start_ms)
    np.testing.assert_allclose(series["BBB"].ohlcv, b.ohlcv)
    assert load_metrics_topic(kafka_settings, bar_seconds=300) == []
    assert [s.symbol for s in load_metrics_topic(kafka_settings, bar_seconds=60, symbols=["BBB"])] == ["BBB"]
