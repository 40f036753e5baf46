"""The projector against the real broker and database: idempotent upserts, offsets after the DB commit, DLQ."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from events import models
from events.contract import Event
from events.db import session_factory
from events.kafka import Backoff, EventProducer, ShutdownFlag
from events.settings import Settings
from tests.support import read_topic, wait_for
from tests.web.conftest import Api, make_app
from tests.web.events_factory import alert, bar, prediction
from web.projector import rows_by_table, run_projector

T0 = (int(time.time() * 1000) // 60_000 - 100) * 60_000


def _run_until(settings: Settings, sessions, group: str, expected: int, timeout_s: float = 60.0,  # type: ignore[no-untyped-def]
               redis_prefix: str | None = None) -> int:
    shutdown = ShutdownFlag()
    seen = [0]

    def on_batch(n: int) -> None:
        seen[0] += n
        if seen[0] >= expected:
            shutdown.set()

    guard = threading.Timer(timeout_s, shutdown.set)
    guard.start()
    try:
        return run_projector(settings, sessions, shutdown, group_id=group, on_batch=on_batch,
                             redis_prefix=redis_prefix or f"tbtest:{uuid.uuid4().hex[:8]}:")
    finally:
        guard.cancel()


def _snapshot(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as s:
        return {
            "bars": [(b.symbol, b.start_ms, b.close, b.sma_5) for b in s.scalars(select(models.BarRecord).order_by(models.BarRecord.start_ms))],
            "predictions": [(p.id, p.predicted_close) for p in s.scalars(select(models.PredictionRecord))],
            "alerts": sorted((a.id, a.state, a.user_id) for a in s.scalars(select(models.AlertRecord))),
        }


def test_rows_by_table_keeps_the_last_version_of_a_key() -> None:
    tables = rows_by_table([bar("AAPL", T0, 100.0), bar("AAPL", T0, 101.0), bar("AAPL", T0 + 60_000, 102.0)])
    assert [r["close"] for r in tables[models.BarRecord]] == [101.0, 102.0]


def test_projector_is_idempotent_and_commits_after_the_database(kafka_settings: Settings, database_url: str) -> None:
    settings = replace(kafka_settings, database_url=database_url)
    sessions = session_factory(settings)
    producer = EventProducer(settings)
    events: list[Event] = [bar("AAPL", T0 + i * 60_000, 100.0 + i, sma_5=99.0 + i) for i in range(5)]
    events.append(bar("AAPL", T0, 150.0))  # a corrected bar: same key, last one wins
    events.append(prediction("AAPL", T0 + 4 * 60_000, 104.0, 105.0))
    events += [alert(1, 7, "AAPL", T0 + 120_000, 102.0, 101.5), alert(1, 7, "AAPL", T0 + 240_000, 100.0, 101.5, state="resolved")]
    for e in events:
        producer.produce(e)
    producer.produce_bytes(settings.topic("metrics"), b"AAPL", b'{"type":"bar","not":"valid"}')
    producer.flush()
    total = len(events) + 1

    group = f"projector-{uuid.uuid4().hex[:8]}"
    app = make_app(settings)
    assert _run_until(settings, sessions, group, total, redis_prefix=app.config["REDIS_PREFIX"]) == total
    first = _snapshot(sessions)
    assert [b[2] for b in first["bars"]] == [150.0, 101.0, 102.0, 103.0, 104.0]
    assert first["bars"][1][3] == 100.0
    assert first["predictions"] == [(events[6].id, 105.0)]
    assert [a[1] for a in first["alerts"]] == sorted(["firing", "resolved"])
    dlq = read_topic(settings, settings.topic("metrics.dlq"), expect=1)
    assert b"not" in dlq[0].value() and dict(dlq[0].headers())["dlq.error"]

    # offsets were committed (after the database commit): the group has nothing left to read
    consumer = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:
        for name in ("metrics", "predictions", "alerts"):
            topic = settings.topic(name)
            parts = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
            committed = consumer.committed(parts, timeout=10)
            ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
            assert [max(c.offset, 0) for c in committed] == ends, name
    finally:
        consumer.close()

    # the status page sees the group, its lag, the topics, the dead letter and the projector's heartbeat
    api = Api(app.test_client())
    ops = api.register("ops@example.com")
    with sessions() as s:  # the status numbers are for administrators
        user = s.get(models.User, ops["id"])
        assert user is not None
        user.is_admin = True
        s.commit()
    status = api.get("/api/status").get_json()
    mine = {g["group"]: g for g in status["groups"]}[group]
    assert mine["lag"] == 0 and settings.topic("metrics") in mine["topics"]
    topics = {t["topic"]: t for t in status["topics"]}
    assert topics[settings.topic("metrics")]["messages"] == 7 and topics[settings.topic("metrics")]["last_event_ms"] > 0
    assert status["dlq"][settings.topic("metrics")] == 1
    beat = {p["process"]: p for p in status["processes"]}["projector"]
    assert beat["consumed"] == total and beat["dlq"] == 1

    # replaying everything from the start (a new group) writes the same rows, no duplicates
    assert _run_until(settings, sessions, f"projector-{uuid.uuid4().hex[:8]}", total) == total
    assert _snapshot(sessions) == first
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(models.BarRecord)) == 5
        assert s.scalar(select(func.count()).select_from(models.AlertRecord)) == 2


def test_a_database_outage_is_ridden_out_without_committing(kafka_settings: Settings, postgres_url: str,
                                                             tmp_path: Path) -> None:
    """The database away (connection refused): the projector holds the batch, commits no offset and
    does not crash; once the database is back the same batch is written, once."""
    from events.db import upgrade
    from web.projector import make_runner

    upgrade(postgres_url)
    settings = replace(kafka_settings, database_url=postgres_url)
    real = session_factory(settings)
    # a socket directory with no server behind it: every connection attempt fails at once
    away = create_engine(f"postgresql+psycopg:///nothing?host={tmp_path}&connect_timeout=1")
    sessions: sessionmaker[Session] = sessionmaker(bind=away, expire_on_commit=False)
    producer = EventProducer(settings)
    for i in range(3):
        producer.produce(bar("MSFT", T0 + i * 60_000, 300.0 + i))
    producer.flush()
    group = f"projector-{uuid.uuid4().hex[:8]}"
    runner = make_runner(settings, sessions, ShutdownFlag(), group_id=group)
    runner.backoff = Backoff(first_s=0.01, max_s=0.05)
    consumer = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    topic = settings.topic("metrics")
    parts = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
    try:
        wait_for(lambda: runner.run_once() >= 0 and runner.backoff.next_s > runner.backoff.first_s,
                 what="a failed attempt against the absent database")
        for _ in range(3):
            assert runner.run_once() == 0  # retried with back-off, never raised
        assert all(c.offset < 0 for c in consumer.committed(parts, timeout=10)), "committed during the outage"
        sessions.configure(bind=real.kw["bind"])  # the database is back
        wait_for(lambda: runner.run_once() >= 0 and runner.stats.consumed >= 3, what="the held batch written")
        with real() as s:
            assert s.scalars(select(models.BarRecord.close).order_by(models.BarRecord.start_ms)).all() == \
                [300.0, 301.0, 302.0]
        assert sum(max(c.offset, 0) for c in consumer.committed(parts, timeout=10)) == 3
    finally:
        consumer.close()
        runner.close()
