"""End to end on real services: ticks -> engine -> alerts -> dispatcher -> Redis -> Celery worker -> SMTP/HTTP."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from alerts.dispatch import Dispatcher, celery_enqueue
from alerts.engine import EngineRunner, changelog_topic
from events import contract, models
from events.db import make_engine, upgrade
from events.kafka import EventProducer, ShutdownFlag, admin_client
from events.outbox import relay_once, save_rule
from events.settings import Secret, Settings
from tests.alerts.conftest import Receiver, SmtpServer
from tests.alerts.helpers import tick
from tests.alerts.procs import Proc, process_env
from tests.support import wait_for
from tests.alerts.test_messages import SECRET


@pytest.fixture
def stack_settings(kafka_settings: Settings, postgres_url: str, smtp_server: SmtpServer,
                   tmp_path: Path) -> Iterator[Settings]:
    upgrade(postgres_url)
    yield replace(kafka_settings, database_url=postgres_url, smtp_url=Secret(smtp_server.url),
                  allow_private_webhooks=True, public_url="http://tb.test", var_dir=tmp_path)
    admin_client(kafka_settings).delete_topics([changelog_topic(kafka_settings)], operation_timeout=10)


@pytest.fixture
def queue(base_settings: Settings) -> Iterator[str]:
    """A Celery queue name of this test's own; its Redis keys are removed afterwards."""
    import redis

    name = f"q-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(base_settings.redis_url)
    keys = [k for pattern in (f"*{name}*", f"_kombu.binding*.{name}") for k in client.keys(pattern)]
    if keys:
        client.delete(*keys)
    # tasks a killed worker held stay in kombu's shared `unacked` hash: drop this queue's
    needle = f'"{name}"'.encode()
    for tag, payload in client.hgetall("unacked").items():
        if needle in payload:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()


def start_worker(settings: Settings, queue: str, log: Path, concurrency: int = 4, lease_s: str = "30") -> Proc:
    env = process_env(settings, ALERTS_QUEUE=queue, ALERTS_RETRY_SCHEDULE="0,0.3,0.3,0.3,0.3",
                      ALERTS_RETRY_JITTER="0", ALERTS_SWEEP_INTERVAL_S="0.5", ALERTS_LEASE_S=lease_s)
    return Proc(["worker", "--concurrency", str(concurrency)], env, log)


def in_thread(target, flag: ShutdownFlag) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def statuses(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as s:
        return dict(s.execute(select(models.Delivery.status, func.count()).group_by(models.Delivery.status)).all())


def test_ticks_in_exactly_the_expected_notifications_out(stack_settings: Settings, receiver: Receiver,
                                                         smtp_server: SmtpServer, tmp_path: Path, queue: str) -> None:
    settings = stack_settings
    sessions = sessionmaker(make_engine(settings.database_url), expire_on_commit=False)
    with sessions() as s:
        user = models.User(email="owner@example.com", password_hash="x")
        s.add(user)
        s.flush()
        mail = models.Channel(user_id=user.id, kind="email", name="mail", target="trader@example.com",
                              confirmed_at=models.utcnow())
        hook = models.Channel(user_id=user.id, kind="webhook", name="hook", target=receiver.url("/hook"), secret=SECRET,
                              body_template='{"text": "{{ticker}} {{value}}", "id": "{{alert_id}}"}')
        flaky = models.Channel(user_id=user.id, kind="webhook", name="flaky", target=receiver.url("/flaky"),
                               secret=SECRET)
        s.add_all([mail, hook, flaky])
        s.flush()
        save_rule(s, models.Rule(user_id=user.id, symbol="AAPL", condition={"series": "price", "op": "crossing_up",
                                 "value": 150}, frequency="every_time", channels=[mail, hook], version=1,
                                 message="{{ticker}} crossed {{threshold}} at {{close}}"), settings)
        save_rule(s, models.Rule(user_id=user.id, symbol="MSFT", condition={"series": "price", "op": "greater_than",
                                 "value": 300}, channels=[flaky], version=1), settings)
        s.commit()
    assert relay_once(sessions, EventProducer(settings)) == 2  # the outbox path to the `rules` topic
    receiver.script["/flaky"] = [(503, {}), (503, {})]
    worker = start_worker(settings, queue, tmp_path / "worker.log")
    flag = ShutdownFlag()
    engine = EngineRunner(settings, shutdown=flag, group_id=f"e-{queue}", transactional_id=f"tx-{queue}")
    dispatcher = Dispatcher(settings, sessions, celery_enqueue(settings, queue), shutdown=flag, group_id=f"d-{queue}")
    threads = [in_thread(engine.run, flag), in_thread(dispatcher.run, flag)]
    try:
        producer = EventProducer(settings)
        for i, (sym, price) in enumerate([("AAPL", 149), ("AAPL", 151), ("AAPL", 152), ("AAPL", 149),
                                          ("AAPL", 153), ("MSFT", 301), ("MSFT", 302), ("TSLA", 999)]):
            producer.produce(tick(price, i, sym))
        producer.flush()
        wait_for(lambda: statuses(sessions) == {"delivered": 5}, timeout_s=60,
                 what=f"5 deliveries (worker log: {worker.output()})")
    finally:
        flag.set()
        for t in threads:
            t.join(20)
        worker.stop()
    hooks = receiver.got("/hook")
    assert len(hooks) == 2 and len({h.headers["webhook-id"] for h in hooks}) == 2
    for h in hooks:
        body = Webhook(SECRET).verify(h.body, h.headers)
        assert body["text"].startswith("AAPL 15") and body["id"] == h.headers["webhook-id"].rsplit(".c", 1)[0]
    flaky_calls = receiver.got("/flaky")
    assert len(flaky_calls) == 3 and len({c.headers["webhook-id"] for c in flaky_calls}) == 1
    mails = smtp_server.messages
    assert sorted(m["Subject"] for m in mails) == ["[Tickerbell] AAPL crossed above 150.00 (rule: price crossing up 150)"] * 2
    for m in mails:
        plain = m.get_body(("plain",))
        assert plain is not None
        text = plain.get_content()
        assert text.startswith("AAPL crossed 150.0 at 15") and "http://tb.test/symbols/AAPL" in text
    with sessions() as s:
        attempts = s.scalars(select(models.DeliveryAttempt.status_code).order_by(models.DeliveryAttempt.id)).all()
    assert sorted(attempts, key=str) == sorted([250, 250, 200, 200, 503, 503, 200], key=str)


def test_worker_killed_mid_stream_loses_nothing(stack_settings: Settings, receiver: Receiver, tmp_path: Path,
                                                queue: str) -> None:
    settings = stack_settings
    sessions = sessionmaker(make_engine(settings.database_url), expire_on_commit=False)
    with sessions() as s:
        user = models.User(email="owner@example.com", password_hash="x")
        s.add(user)
        s.flush()
        hook = models.Channel(user_id=user.id, kind="webhook", name="hook", target=receiver.url(), secret=SECRET)
        s.add(hook)
        s.commit()
        user_id, channel_id = user.id, hook.id
    receiver.delay_s = 0.05  # a slow receiver, so that the kill lands with work in flight
    n = 40
    producer = EventProducer(settings)
    for i in range(n):
        producer.produce(contract.Alert(
            id=f"alert:k{i:03d}", ts=1_795_000_000_000 + i, rule_id=1, rule_version=1, user_id=user_id,
            state="firing", symbol="AAPL", trigger_event_id=f"t{i}", series="price", op="greater_than",
            value=151.0, threshold=150.0, channel_ids=[channel_id]))
    producer.flush()
    log = tmp_path / "worker.log"
    worker = start_worker(settings, queue, log, concurrency=2, lease_s="2")
    flag = ShutdownFlag()
    dispatcher = Dispatcher(settings, sessions, celery_enqueue(settings, queue), shutdown=flag, group_id=f"d-{queue}")
    thread = in_thread(dispatcher.run, flag)
    try:
        wait_for(lambda: len(receiver.got()) >= 8, timeout_s=60, what=f"first webhooks ({worker.output()})")
        worker.kill()
        at_kill = len({r.headers["webhook-id"] for r in receiver.got()})
        worker = start_worker(settings, queue, log, concurrency=2, lease_s="2")
        wait_for(lambda: statuses(sessions) == {"delivered": n}, timeout_s=90,
                 what=f"every delivery after the restart ({statuses(sessions)})")
    finally:
        flag.set()
        thread.join(20)
        worker.stop()
    ids = [r.headers["webhook-id"] for r in receiver.got()]
    print(f"webhooks received before the kill: {at_kill} of {n}; duplicates sent: {len(ids) - len(set(ids))}")
    assert at_kill < n, "the kill came after every delivery: nothing was tested"
    assert set(ids) == {f"alert:k{i:03d}.c{channel_id}" for i in range(n)}  # none lost
    # at most the requests in flight at the kill went out twice, with the same webhook-id
    assert len(ids) - len(set(ids)) <= 2
