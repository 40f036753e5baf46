"""The dispatcher on the real broker and database: rows, enqueue, then offsets; DLQ; replay is harmless."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from alerts.dispatch import Dispatcher
from events import contract, models
from events.db import make_engine
from events.kafka import EventProducer
from events.settings import Settings
from tests.support import read_topic


def alert(i: int, user_id: int, channel_ids: list[int], state: str = "firing") -> contract.Alert:
    return contract.Alert(id=f"alert:d{i}:{state}", ts=1_795_000_000_000 + i, rule_id=1, rule_version=1,
                          user_id=user_id, state=state, symbol="AAPL", trigger_event_id=f"t{i}",  # type: ignore[arg-type]
                          series="price", op="greater_than", value=151.0, threshold=150.0, channel_ids=channel_ids)


def test_dispatcher_records_enqueues_and_commits(kafka_settings: Settings, database_url: str) -> None:
    settings = kafka_settings
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    with sessions() as s:
        user = models.User(email="d@x.y", password_hash="x")
        s.add(user)
        s.flush()
        a, b = (models.Channel(user_id=user.id, kind="email", name=n, target="d@x.y") for n in "ab")
        s.add_all([a, b])
        s.commit()
        uid, ca, cb = user.id, a.id, b.id
    producer = EventProducer(settings)
    producer.produce(alert(1, uid, [ca, cb]))
    producer.produce(alert(1, uid, [], state="resolved"))   # resolutions notify nobody
    producer.produce(alert(2, uid, [ca]))
    producer.produce(alert(1, uid, [ca, cb]))                # a duplicate of the first: a no-op
    producer.produce_bytes(settings.topic("alerts"), b"1", b"not json")
    producer.flush()
    enqueued: list[int] = []
    group = f"d-{uuid.uuid4().hex}"
    dispatcher = Dispatcher(settings, sessions, enqueued.extend, group_id=group)
    dispatcher.run(idle_stop_s=3)
    with sessions() as s:
        rows = s.scalars(select(models.Delivery).order_by(models.Delivery.id)).all()
    assert sorted((r.alert_id, r.channel_id) for r in rows) == sorted(
        [("alert:d1:firing", ca), ("alert:d1:firing", cb), ("alert:d2:firing", ca)])
    assert set(enqueued) == {r.id for r in rows}
    dlq = read_topic(settings, settings.topic("alerts") + ".dlq", expect=1)
    assert dlq[0].value() == b"not json"
    # offsets were committed: a second dispatcher in the same group finds nothing to do
    again: list[int] = []
    Dispatcher(settings, sessions, again.extend, group_id=group).run(idle_stop_s=2)
    assert again == []


def test_dispatcher_rides_out_a_redis_outage(kafka_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Redis (the Celery broker) away: the batch is retried, not lost, and the process keeps running."""
    import shutil
    import socket
    import subprocess
    import time

    import redis as redis_lib

    from alerts.dispatch import celery_enqueue
    from events.db import upgrade

    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade(url)
    sessions = sessionmaker(make_engine(url), expire_on_commit=False)
    with sessions() as s:
        user = models.User(email="r@x.y", password_hash="x")
        s.add(user)
        s.flush()
        ch = models.Channel(user_id=user.id, kind="email", name="a", target="r@x.y")
        s.add(ch)
        s.commit()
        uid, cid = user.id, ch.id
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from dataclasses import replace

    settings = replace(kafka_settings, redis_url=f"redis://127.0.0.1:{port}/0")  # nothing listens there yet
    producer = EventProducer(settings)
    producer.produce(alert(7, uid, [cid]))
    producer.flush()
    queue = f"q-{uuid.uuid4().hex[:8]}"
    dispatcher = Dispatcher(settings, sessions, celery_enqueue(settings, queue), group_id=f"d-{uuid.uuid4().hex}")
    deadline = time.monotonic() + 30
    while dispatcher._backoff.next_s == dispatcher._backoff.first_s and time.monotonic() < deadline:
        dispatcher.run_once()  # consumes the alert, fails to enqueue, rewinds
    assert dispatcher._backoff.next_s > dispatcher._backoff.first_s, "the outage was never noticed"
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                               "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        client = redis_lib.Redis(port=port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dispatcher.run_once()
            try:
                if client.llen(queue) == 1:
                    break
            except redis_lib.ConnectionError:
                pass  # still starting
        assert client.llen(queue) == 1, "the retried batch was never enqueued"
        with sessions() as s:
            assert [d.alert_id for d in s.scalars(select(models.Delivery))] == ["alert:d7:firing"]
    finally:
        dispatcher.consumer.close()
        server.terminate()
        server.wait(10)
