"""Serving: bars in, predictions out; with the real broker, the promoted model and hot reload."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from events.contract import Bar, InvalidEvent, Prediction, bar_id, decode, encode, prediction_id
from events.kafka import EventProducer, ShutdownFlag
from events.settings import Settings
from predict.data import BarSeries
from predict.dataset import build_samples
from predict.features import min_history
from predict.registry import Registry
from predict.serve import PredictionStage, serve
from tests.predict.conftest import Trained, register
from tests.support import read_events, read_topic


def bars_of(series: BarSeries, start: int = 0, stop: int | None = None) -> list[Bar]:
    out = []
    for i in range(start, len(series) if stop is None else stop):
        o, h, l, c, v = (float(x) for x in series.ohlcv[i])
        ms = int(series.start_ms[i])
        out.append(Bar(id=bar_id(series.symbol, series.bar_seconds, ms), ts=ms + series.bar_seconds * 1000,
                       symbol=series.symbol, start_ms=ms, bar_seconds=series.bar_seconds, open=o, high=h, low=l,
                       close=c, volume=v, count=10, vwap=c))
    return out


def stage_for(trained: Trained, version: str = "v0001", skill: float = 0.3) -> PredictionStage:
    meta = {"version": version, "skill": skill, "interval_level": 0.8}
    return PredictionStage(trained.forecaster, meta)


def test_serving_equals_training_windows_and_skips_short_history(trained: Trained) -> None:
    series = trained.series[0]
    need = min_history(trained.config.window)
    stage = stage_for(trained)
    preds = stage.predict_bars(bars_of(series, 0, need + 30))
    assert len(preds) == 31  # bars need-1 .. need+29: the first need-1 bars get none
    assert stage.skipped_short == need - 1
    # the same numbers as the offline windows of those bars
    s = build_samples([series], trained.config.window)
    q = trained.forecaster.predict_returns(s.x[:31], s.sigma[:31])
    got = np.array([[np.log(p.lower / p.base_close), p.predicted_return, np.log(p.upper / p.base_close)] for p in preds])
    np.testing.assert_allclose(got, q, rtol=1e-4, atol=1e-7)
    assert [p.base_start_ms for p in preds] == s.base_start_ms[:31].tolist()
    p = preds[0]
    assert p.id == prediction_id(series.symbol, p.base_start_ms, 1, "v0001")
    assert p.ts == p.base_start_ms + series.bar_seconds * 1000
    assert p.lower <= p.predicted_close <= p.upper and p.model_version == "v0001" and p.skill == 0.3
    assert p.predicted_close == p.base_close * np.exp(p.predicted_return)


def test_long_histories_in_one_batch_through_a_small_buffer(trained: Trained) -> None:
    series = trained.series[1]
    stage = PredictionStage(trained.forecaster, {"version": "v1", "skill": 0.1}, max_history=0)  # capacity = need
    preds = stage.predict_bars(bars_of(series, 0, 400))  # the buffer wraps several times within the batch
    s = build_samples([series], trained.config.window)
    n = len(preds)
    assert n == 400 - min_history(trained.config.window) + 1
    q = trained.forecaster.predict_returns(s.x[:n], s.sigma[:n])
    np.testing.assert_allclose([p.predicted_return for p in preds], q[:, 1], rtol=1e-4, atol=1e-7)


def test_a_flat_series_gets_no_prediction(trained: Trained) -> None:
    series = trained.series[0]
    flat = BarSeries("FLAT", 60, series.start_ms, np.tile([10.0, 10.0, 10.0, 10.0, 5.0], (len(series), 1)))
    stage = stage_for(trained)
    assert stage.predict_bars(bars_of(flat, 0, 80)) == []


def test_replayed_bars_give_the_same_ids_and_duplicates_none(trained: Trained) -> None:
    bars = bars_of(trained.series[1], 0, 60)
    first = stage_for(trained).predict_bars(bars)
    again = stage_for(trained).predict_bars(bars)
    assert [p.id for p in first] == [p.id for p in again] and first == again
    stage = stage_for(trained)
    stage.predict_bars(bars)
    assert stage.predict_bars(bars[-5:]) == [] and stage.skipped_replay == 5


def test_one_batch_predicts_many_symbols(trained: Trained) -> None:
    a, b = trained.series
    need = min_history(trained.config.window)
    stage = stage_for(trained)
    mixed = bars_of(a, 0, need) + bars_of(b, 0, need - 1)
    preds = stage.predict_bars(sorted(mixed, key=lambda x: x.start_ms))
    assert [p.symbol for p in preds] == [a.symbol]  # b is one bar short


def _wait_for(cond, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_serve_with_the_real_broker_and_hot_reload(trained: Trained, kafka_settings: Settings, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    register(trained, registry.root, skill=0.31)
    a, b = trained.series
    need = min_history(trained.config.window)
    producer = EventProducer(kafka_settings)
    for bar in bars_of(a, 0, need + 5) + bars_of(b, 0, need - 10):
        producer.produce(bar)
    producer.produce_bytes(kafka_settings.topic("metrics"), b"AAA", b'{"type":"bar","broken":')
    producer.flush()

    flag = ShutdownFlag()
    result: dict[str, Any] = {}
    served: list[str] = []
    thread = threading.Thread(target=lambda: result.update(
        stats=serve(kafka_settings, registry, group_id="predict-test", reload_every_s=0.2, shutdown=flag,
                    on_model=served.append)))
    thread.start()
    try:
        preds = read_events(kafka_settings, "predictions", Prediction, expect=6, timeout_s=60)
        assert {p.symbol for p in preds} == {"AAA"} and {p.model_version for p in preds} == {"v0001"}
        assert sorted(p.base_start_ms for p in preds) == [int(x) for x in a.start_ms[need - 1:need + 5]]
        for p in preds:
            assert p.id == prediction_id("AAA", p.base_start_ms, 1, "v0001") and p.skill == 0.31
            assert p.ts == p.base_start_ms + a.bar_seconds * 1000
        assert len(read_topic(kafka_settings, kafka_settings.topic("metrics.dlq"), expect=1)) == 1

        # promote a new version: the running process serves it without a restart
        register(trained, registry.root, skill=0.32)
        assert registry.promoted_version() == "v0002"
        _wait_for(lambda: served == ["v0001", "v0002"])
        for bar in bars_of(a, need + 5, need + 8):
            producer.produce(bar)
        producer.flush()
        preds = read_events(kafka_settings, "predictions", Prediction, expect=9, timeout_s=60)
        newer = [p for p in preds if p.base_start_ms >= int(a.start_ms[need + 5])]
        assert len(newer) == 3 and {p.model_version for p in newer} == {"v0002"}
        assert {p.skill for p in newer} == {0.32}
        assert len(preds) == 9  # nothing for BBB, nothing twice
    finally:
        flag.set()
        thread.join(30)
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.dlq == 1 and stats.produced == 9


def test_serve_without_a_model_says_so_and_waits_or_returns(trained: Trained, kafka_settings: Settings,
                                                            tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(tmp_path / "models")
    with caplog.at_level("WARNING"):
        assert serve(kafka_settings, registry, wait_for_model=False, shutdown=ShutdownFlag()) is None
    assert "no promoted model" in caplog.text and "ensure-model" in caplog.text
    # by default it waits, and serves the first model promoted meanwhile
    flag = ShutdownFlag()
    served: list[str] = []
    thread = threading.Thread(target=serve, args=(kafka_settings, registry),
                              kwargs={"shutdown": flag, "on_model": served.append})
    caplog.clear()
    with caplog.at_level("WARNING"):
        thread.start()
        try:
            _wait_for(lambda: "no promoted model" in caplog.text)
            assert thread.is_alive() and served == []
            register(trained, registry.root)
            _wait_for(lambda: served == ["v0001"])
        finally:
            flag.set()
            thread.join(30)
    assert not thread.is_alive()



def test_a_restart_warms_windows_from_the_bars_projection(trained: Trained, database_url: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from dataclasses import replace

    from sqlalchemy.orm import sessionmaker

    from events.db import make_engine
    from events.models import BarRecord
    from predict.serve import stored_history

    series = trained.series[0]
    need = min_history(trained.config.window)
    sessions = sessionmaker(make_engine(database_url))
    with sessions() as session:  # what the projector stored before the restart: bars 0 .. need+4
        for b in bars_of(series, 0, need + 5):
            session.add(BarRecord(symbol=b.symbol, bar_seconds=b.bar_seconds, start_ms=b.start_ms, open=b.open,
                                  high=b.high, low=b.low, close=b.close, volume=b.volume, count=b.count, vwap=b.vwap))
        session.commit()
    source = stored_history(replace(Settings(), database_url=database_url))
    stage = PredictionStage(trained.forecaster, {"version": "v1", "skill": 0.1}, history_source=source)
    # the restarted process resumes at bar need+2 (committed offset): a prediction from the first bar on
    preds = stage.predict_bars(bars_of(series, need + 2, need + 4))
    assert [p.base_start_ms for p in preds] == [int(series.start_ms[need + 2]), int(series.start_ms[need + 3])]
    assert stage.warmed == need - 1 and stage.skipped_short == 0
    s = build_samples([series], trained.config.window)
    q = trained.forecaster.predict_returns(s.x[3:5], s.sigma[3:5])
    np.testing.assert_allclose([p.predicted_return for p in preds], q[:, 1], rtol=1e-4, atol=1e-7)
    # no table (an unmigrated database): serving goes on from live bars only, and says why
    unmigrated = (database_url.replace("test.db", "unmigrated.db") if database_url.startswith("sqlite")
                  else re.sub(r"///[^?]+", "///tb_no_such_database", database_url))
    empty = stored_history(replace(Settings(), database_url=unmigrated))
    stage = PredictionStage(trained.forecaster, {"version": "v1", "skill": 0.1}, history_source=empty)
    with caplog.at_level("WARNING"):
        assert stage.predict_bars(bars_of(series, need + 2, need + 4)) == []
    assert "no stored bars for AAA" in caplog.text


# --- backfilled history, bar sizes, provenance -----------------------------------------

ON_60S = {"bar_seconds": 60, "data_source": "sim-history", "trained_from_ms": 1_700_000_000_000,
          "trained_to_ms": 1_700_050_000_000, "holdout_from_ms": 1_700_050_060_000,
          "holdout_to_ms": 1_700_060_000_000, "holdout_n": 2400, "skill": -0.004, "skill_p": 0.61}


def as_history(bars: list[Bar]) -> list[Bar]:
    return [msgspec.structs.replace(b, history=True) for b in bars]


def test_history_fills_the_window_and_the_first_live_bar_is_forecast(trained: Trained) -> None:
    series = trained.series[0]
    need = min_history(trained.config.window)
    n = need + 40
    history, live = as_history(bars_of(series, 0, n)), bars_of(series, n, n + 1)
    # the wall clock is long past the history (a backfill of old bars): none of it is forecast
    stage = PredictionStage(trained.forecaster, {"version": "v0007", "skill": -0.004, "trained_on": ON_60S},
                            clock_ms=lambda: int(series.start_ms[-1]) + 3_600_000)
    assert stage.predict_bars(history[:30]) == [] and stage.predict_bars(history[30:]) == []
    assert stage.skipped_history == n - need + 1 and stage.skipped_short == need - 1
    preds = stage.predict_bars(live)
    assert [p.base_start_ms for p in preds] == [live[0].start_ms]  # exactly once, on the live bar
    # the same numbers as the offline window of that bar: history and live bars are one series
    s = build_samples([series], trained.config.window)
    i = int(np.nonzero(s.base_start_ms == live[0].start_ms)[0][0])
    q = trained.forecaster.predict_returns(s.x[i:i + 1], s.sigma[i:i + 1])
    np.testing.assert_allclose(preds[0].predicted_return, q[0, 1], rtol=1e-4, atol=1e-7)
    p = preds[0]
    assert (p.trained_bar_seconds, p.data_source, p.holdout_n, p.skill_p) == (60, "sim-history", 2400, 0.61)
    assert (p.trained_from_ms, p.trained_to_ms) == (ON_60S["trained_from_ms"], ON_60S["trained_to_ms"])
    assert (p.holdout_from_ms, p.holdout_to_ms) == (ON_60S["holdout_from_ms"], ON_60S["holdout_to_ms"])
    assert decode(encode(p), Prediction) == p


def test_the_newest_history_bar_is_forecast_while_its_next_bar_is_open(trained: Trained) -> None:
    series = trained.series[1]
    n = min_history(trained.config.window) + 10
    history = as_history(bars_of(series, 0, n))
    now = history[-1].ts + 30_000  # a fresh backfill: the bar after the newest history bar is forming
    stage = PredictionStage(trained.forecaster, {"version": "v1", "skill": 0.1, "trained_on": ON_60S},
                            clock_ms=lambda: now)
    preds = stage.predict_bars(history)
    assert [p.base_start_ms for p in preds] == [history[-1].start_ms] and stage.skipped_history == 10


def test_a_model_of_another_bar_size_predicts_nothing(trained: Trained, caplog: pytest.LogCaptureFixture) -> None:
    series = trained.series[0]
    bars = bars_of(series, 0, min_history(trained.config.window) + 20)
    daily = {**ON_60S, "bar_seconds": 86_400, "data_source": "offline"}
    stage = PredictionStage(trained.forecaster, {"version": "v0001", "skill": 0.0, "trained_on": daily})
    with caplog.at_level("WARNING", logger="predict.serve"):
        assert stage.predict_bars(bars[:10]) == [] and stage.predict_bars(bars[10:]) == []
    assert stage.skipped_bar_size == len(bars)
    warnings = [r for r in caplog.records if "trained on 86400 s bars" in r.getMessage()]
    assert len(warnings) == 1 and "does not forecast 60 s bars" in warnings[0].getMessage()  # logged once
    # a record from before `trained_on` says it through its data's bar size
    old = {"version": "v0000", "skill": 0.0, "data": {"AAPL": {"bars": 3270, "bar_seconds": 86_400}}}
    assert PredictionStage(trained.forecaster, old).predict_bars(bars) == []
    # a newly promoted model of the right size serves the same (already filled) windows at once
    stage.set_model(trained.forecaster, {"version": "v0002", "skill": 0.0, "trained_on": ON_60S})
    assert len(stage.predict_bars(bars_of(series, len(bars), len(bars) + 1))) == 1


def test_a_prediction_with_provenance_round_trips_and_an_old_one_decodes() -> None:
    base = {"type": "prediction", "v": 1, "id": "p1", "ts": 1_700_000_060_000, "symbol": "AAPL",
            "base_start_ms": 1_700_000_000_000, "bar_seconds": 60, "horizon_bars": 1, "base_close": 100.0,
            "predicted_close": 100.1, "predicted_return": 0.000999, "lower": 99.5, "upper": 100.6,
            "interval_level": 0.8, "model_version": "v0001", "skill": -0.01}
    old = decode(json.dumps(base).encode(), Prediction)
    assert old.trained_bar_seconds is None and old.data_source is None and old.skill_p is None
    assert old.trained_from_ms is None and old.holdout_to_ms is None and old.holdout_n is None
    fields = {k: v for k, v in ON_60S.items() if k not in ("bar_seconds", "skill")}
    new = msgspec.structs.replace(old, trained_bar_seconds=60, **fields)
    back = decode(encode(new), Prediction)
    assert back == new and back.trained_bar_seconds == 60 and back.skill_p == 0.61
    assert json.loads(encode(new))["data_source"] == "sim-history"
    with pytest.raises(InvalidEvent, match="skill_p"):
        decode(json.dumps({**base, "skill_p": 1.5}).encode(), Prediction)
    with pytest.raises(InvalidEvent, match="trained_bar_seconds"):
        decode(json.dumps({**base, "trained_bar_seconds": 0}).encode(), Prediction)


def test_serve_history_then_live_through_the_broker(trained: Trained, kafka_settings: Settings,
                                                    tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    register(trained, registry.root, skill=0.05, bar_seconds=60)
    a, b = trained.series
    need = min_history(trained.config.window)
    producer = EventProducer(kafka_settings)
    for bar in as_history(bars_of(a, 0, need + 20)) + bars_of(a, need + 20, need + 21) + as_history(bars_of(b, 0, 80)):
        producer.produce(bar)
    producer.flush()
    flag = ShutdownFlag()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(
        stats=serve(kafka_settings, registry, group_id="predict-history", reload_every_s=0.2, shutdown=flag)))
    thread.start()
    try:
        preds = read_events(kafka_settings, "predictions", Prediction, expect=1, timeout_s=60)
        assert [(p.symbol, p.base_start_ms) for p in preds] == [("AAA", int(a.start_ms[need + 20]))]
        assert preds[0].trained_bar_seconds == 60 and preds[0].data_source == "synthetic"
        # BBB's history alone (old bars, no live one yet) is forecast nowhere: nothing else comes
        producer.produce(bars_of(a, need + 21, need + 22)[0])
        producer.flush()
        preds = read_events(kafka_settings, "predictions", Prediction, expect=2, timeout_s=60)
        assert [p.symbol for p in preds] == ["AAA", "AAA"]
        _wait_for(lambda: _caught_up(kafka_settings, kafka_settings.topic("predict-history"),
                                     kafka_settings.topic("metrics")))  # every bar was read: BBB's too
    finally:
        flag.set()
        thread.join(30)
    assert not thread.is_alive() and result["stats"].produced == 2


def _caught_up(settings: Settings, group: str, topic: str) -> bool:
    """Whether ``group`` has committed every message of ``topic`` (the stage has seen them all)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
        committed = c.committed(tps, timeout=10)
        return all(c.get_watermark_offsets(tp, timeout=10)[1] <= max(0, done.offset) for tp, done in zip(tps, committed))
    finally:
        c.close()
