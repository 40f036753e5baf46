"""Backfilled bars (Bar.history): stored by the projector like any bar, not pushed one by one by the bridge."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import msgspec
from sqlalchemy import select

from events import models
from events.db import session_factory
from events.kafka import EventProducer
from events.settings import Settings
from tests.web.events_factory import bar, prediction
from tests.web.test_projector import _run_until
from web.bridge import Coalescer
from web.store import history

T0 = (int(time.time() * 1000) // 60_000 - 500) * 60_000


def hist(start_ms: int, close: float, **extra: float):  # type: ignore[no-untyped-def]
    return msgspec.structs.replace(bar("AMD", start_ms, close, **extra), history=True)


def test_a_backfill_is_one_update_saying_how_far_history_reaches_not_its_bars() -> None:
    c = Coalescer(interval_s=0.1)
    for i in range(300):
        c.add(hist(T0 + i * 60_000, 100.0 + i))
    (update,) = c.due(0.0)
    assert update["bars"] == [] and update["history_ms"] == T0 + 300 * 60_000
    c.add(bar("AMD", T0 + 300 * 60_000, 99.0))  # the first live bar goes out as usual
    (live,) = c.due(0.2)
    assert [b["close"] for b in live["bars"]] == [99.0] and live["history_ms"] is None
    assert live["bars"][0]["history"] is False


def test_the_projector_stores_history_bars_like_live_ones(kafka_settings: Settings, database_url: str) -> None:
    settings = replace(kafka_settings, database_url=database_url)
    sessions = session_factory(settings)
    producer = EventProducer(settings)
    events = [hist(T0 + i * 60_000, 100.0 + i, sma_5=98.0 + i) for i in range(30)]
    events.append(bar("AMD", T0 + 30 * 60_000, 131.0, sma_5=129.0))
    for e in events:
        producer.produce(e)
    producer.flush()
    assert _run_until(settings, sessions, f"projector-{uuid.uuid4().hex[:8]}", len(events)) == len(events)
    with sessions() as s:
        rows = s.scalars(select(models.BarRecord).where(models.BarRecord.symbol == "AMD")
                         .order_by(models.BarRecord.start_ms)).all()
        got = [(r.start_ms, r.close, r.sma_5, r.count, r.history) for r in rows]
        assert [history.bar_json(r)["history"] for r in rows] == [True] * 30 + [False]
    assert got == [(e.start_ms, e.close, e.sma_5, e.count, e.history) for e in events]


def test_a_projected_prediction_keeps_what_its_model_was_trained_on(kafka_settings: Settings,
                                                                    database_url: str) -> None:
    settings = replace(kafka_settings, database_url=database_url)
    sessions = session_factory(settings)
    record = {"trained_bar_seconds": 60, "data_source": "sim-history", "trained_from_ms": T0,
              "trained_to_ms": T0 + 800 * 60_000, "holdout_from_ms": T0 + 800 * 60_000,
              "holdout_to_ms": T0 + 999 * 60_000, "holdout_n": 1440, "skill_p": 0.031}
    p = msgspec.structs.replace(prediction("AMD", T0, 100.0, 100.5), **record)
    producer = EventProducer(settings)
    producer.produce(p)
    producer.produce(prediction("OLD", T0, 50.0, 50.1))  # an event from before the fields: all None
    producer.flush()
    assert _run_until(settings, sessions, f"projector-{uuid.uuid4().hex[:8]}", 2) == 2
    with sessions() as s:
        rows = {r.symbol: history.prediction_json(r) for r in s.scalars(select(models.PredictionRecord))}
    assert {k: rows["AMD"][k] for k in record} == record
    assert all(rows["OLD"][k] is None for k in record)
