"""The dispatcher process: ``alerts`` -> delivery rows -> one Celery task per delivery.

For each batch: insert a ``deliveries`` row per (firing alert, channel of
the rule's owner) - a pair already present is left alone (unique alert_id +
channel_id) - commit, enqueue the ids still ``pending``, and only then
commit the Kafka offsets. A crash anywhere replays the batch, which inserts
nothing new and re-enqueues ids the workers' claim guard makes harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import msgspec
from confluent_kafka import Consumer, Message
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from events import models
from events.contract import Alert, InvalidEvent, decode
from events.kafka import (Backoff, EventProducer, ShutdownFlag, commit_offsets, consumer_config, dlq_headers,
                          has_data, rewind, run_until_shutdown)
from events.settings import Settings

log = logging.getLogger(__name__)


def _recoverable() -> tuple[type[BaseException], ...]:
    import kombu.exceptions
    import redis.exceptions
    from sqlalchemy.exc import DBAPIError

    return (DBAPIError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
            kombu.exceptions.OperationalError, ConnectionError, TimeoutError)


RECOVERABLE = _recoverable()

__all__ = ["Dispatcher", "record_deliveries"]

# enqueue(ids) or enqueue(ids, countdown_s=...): hand delivery ids to the workers
Enqueue = Callable[..., None]


def _insert(session: Session) -> Any:
    """The dialect's INSERT that knows ON CONFLICT DO NOTHING (PostgreSQL and SQLite both do)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def record_deliveries(session: Session, alerts: Iterable[Alert], digest_window_s: float = 0.0) -> list[int]:
    """Insert the delivery rows of firing alerts (idempotent) and return the ids still pending.

    A channel id that does not exist or belongs to another user than the
    alert's is ignored (a rule can only notify its owner's channels). With a
    digest window, a row is due with the channel's open window (the earliest
    first-attempt row still waiting), or ``digest_window_s`` from now.
    """
    firing = [a for a in alerts if a.state == "firing" and a.channel_ids and a.user_id]
    if not firing:
        return []
    wanted = {c for a in firing for c in a.channel_ids}
    owners = dict(session.execute(
        select(models.Channel.id, models.Channel.user_id).where(models.Channel.id.in_(wanted))).all())
    now = datetime.now(timezone.utc)
    due: dict[int, datetime] = {}
    if digest_window_s > 0:
        opened = session.execute(
            select(models.Delivery.channel_id, func.min(models.Delivery.next_attempt_at))
            .where(models.Delivery.channel_id.in_(wanted), models.Delivery.status == "pending",
                   models.Delivery.attempts == 0, models.Delivery.next_attempt_at > now)
            .group_by(models.Delivery.channel_id)).all()
        due = {c: (t if t.tzinfo else t.replace(tzinfo=timezone.utc)) for c, t in opened if t is not None}
        window_end = now + timedelta(seconds=digest_window_s)
        for c in wanted:
            due.setdefault(c, window_end)
    rows: list[dict[str, Any]] = []
    for a in firing:
        payload = msgspec.to_builtins(a)
        for channel_id in dict.fromkeys(a.channel_ids):
            if owners.get(channel_id) != a.user_id:
                continue
            rows.append({"alert_id": a.id, "channel_id": channel_id, "user_id": a.user_id, "status": "pending",
                         "attempts": 0, "next_attempt_at": due.get(channel_id, now), "payload": payload,
                         "created_at": now})
    if not rows:
        return []
    insert = _insert(session)
    session.execute(insert(models.Delivery).values(rows).on_conflict_do_nothing(
        index_elements=["alert_id", "channel_id"]))
    ids = session.scalars(select(models.Delivery.id).where(
        models.Delivery.alert_id.in_({a.id for a in firing}), models.Delivery.status == "pending")).all()
    session.commit()
    return list(ids)


class Dispatcher:
    """poll ``alerts`` -> record deliveries -> enqueue -> commit offsets, until the flag is set."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], enqueue: Enqueue, *,
                 shutdown: ShutdownFlag | None = None, group_id: str = "alerts-dispatch",
                 batch_size: int = 500, poll_timeout_s: float = 0.005, digest_window_s: float = 0.0) -> None:
        self.settings = settings
        self.sessions = sessions
        self.enqueue = enqueue
        self.shutdown = shutdown or ShutdownFlag()
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.digest_window_s = digest_window_s
        self.topic = settings.topic("alerts")
        self.consumer = Consumer(consumer_config(settings, group_id, **{"fetch.wait.max.ms": 5}))
        self.consumer.subscribe([self.topic])
        self._dlq: EventProducer | None = None
        self._backoff = Backoff()
        self.consumed = 0
        self.enqueued = 0

    def run_once(self) -> int:
        msgs = self.consumer.consume(self.batch_size, self.poll_timeout_s)
        if not msgs:
            return 0
        alerts: list[Alert] = []
        for msg in msgs:
            if not has_data(msg):
                continue
            try:
                alerts.append(decode(msg.value(), Alert))
            except InvalidEvent as exc:
                self._dead_letter(msg, str(exc))
        try:
            with self.sessions() as session:
                ids = record_deliveries(session, alerts, self.digest_window_s)
            for a in alerts:
                if a.channel_ids:
                    log.info("alert %s: %s %s for rule %s -> channels %s", a.state, a.symbol, a.op, a.rule_id,
                             a.channel_ids, extra={"event_id": a.id})
            if ids:
                if self.digest_window_s:
                    self.enqueue(ids, countdown_s=self.digest_window_s)
                else:
                    self.enqueue(ids)
        except RECOVERABLE as exc:
            # database or Redis away: read the same batch again later; nothing was committed,
            # and recording is idempotent (one delivery row per alert and channel)
            rewind(self.consumer, msgs)
            delay = self._backoff.failed()
            log.warning("dispatch: %s: %s; retrying the batch in %.1f s", type(exc).__name__, exc, delay)
            self.shutdown.wait(delay)
            return 0
        self._backoff.succeeded()
        if self._dlq is not None:
            self._dlq.flush()
        commit_offsets(self.consumer, msgs, self.shutdown)  # after the delivery rows and the Celery tasks exist
        self.consumed += len(msgs)
        self.enqueued += len(ids)
        return len(msgs)

    def _dead_letter(self, msg: Message, reason: str) -> None:
        if self._dlq is None:
            self._dlq = EventProducer(self.settings)
        log.warning("dead-lettered %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), reason)
        self._dlq.produce_bytes((msg.topic() or "") + ".dlq", msg.key(), msg.value(), dlq_headers(msg, reason))

    def run(self, *, idle_stop_s: float | None = None) -> None:
        try:
            run_until_shutdown(self.shutdown, self.run_once, idle_stop_s, self.consumer)
        finally:
            self.consumer.close()


def celery_enqueue(settings: Settings, queue: str) -> Enqueue:
    """An enqueue function sending ``alerts.deliver`` tasks by name to ``queue`` on Redis."""
    from celery import Celery

    app = Celery("tickerbell-dispatch", broker=settings.redis_url)
    app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)

    def enqueue(ids: list[int], countdown_s: float | None = None) -> None:
        with app.producer_or_acquire() as producer:
            for delivery_id in ids:
                app.send_task("alerts.deliver", args=[delivery_id], queue=queue, producer=producer,
                              countdown=countdown_s)

    return enqueue
