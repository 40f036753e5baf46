"""Transactional outbox: a rule change and the event announcing it commit together.

Writers call :func:`save_rule` / :func:`delete_rule` inside their own
transaction; :func:`relay_once` (the ``relay`` process, ``python -m events relay``)
publishes unpublished rows in id order to Kafka, waits for the broker's
acknowledgement, then marks them published. A crash between the two
republishes the same events, which is harmless: ``rules`` is compacted by
rule id and each event carries the rule's version.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from confluent_kafka import KafkaException
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from events import contract, models
from events.contract_ids import rule_event_id
from events.kafka import Backoff, DeliveryError, EventProducer, ShutdownFlag
from events.settings import Settings

log = logging.getLogger(__name__)


def _ms(dt: datetime | None) -> int | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite hands back naive datetimes; they were written as UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def rule_symbols(session: Session, rule: models.Rule) -> list[str]:
    """The symbols a rule watches: its own symbol, or every symbol of its watchlist."""
    if rule.watchlist_id is not None:
        rows = session.scalars(
            select(models.WatchlistSymbol.symbol).where(models.WatchlistSymbol.watchlist_id == rule.watchlist_id)
        ).all()
        return sorted(set(rows))
    return [rule.symbol] if rule.symbol else []


def rule_event(session: Session, rule: models.Rule) -> contract.Rule:
    """The ``rules`` topic event for a rule row (raises msgspec.ValidationError if invalid)."""
    import msgspec

    payload = {
        "type": "rule",
        "id": rule_event_id(rule.id, rule.version),
        "ts": _ms(rule.updated_at) or _ms(datetime.now(timezone.utc)),
        "rule_id": rule.id,
        "version": rule.version,
        "user_id": rule.user_id,
        "name": rule.name or "",
        "symbols": rule_symbols(session, rule),
        "condition": rule.condition,
        "frequency": rule.frequency,
        "cooldown_s": rule.cooldown_s,
        "pending_s": rule.pending_s,
        "recovery": rule.recovery,
        "expires_ms": _ms(rule.expires_at),
        "enabled": rule.enabled,
        "snoozed_until_ms": _ms(rule.snoozed_until),
        "active_from_min": rule.active_from_min,
        "active_to_min": rule.active_to_min,
        "timezone": rule.timezone,
        "channel_ids": sorted(c.id for c in rule.channels),
        "message": rule.message or "",
        "notify_on_resolve": bool(rule.notify_on_resolve),
        "repeat_interval_s": rule.repeat_interval_s,
    }
    return msgspec.convert(payload, contract.Rule)


def save_rule(session: Session, rule: models.Rule, settings: Settings, *, changed: bool | None = None) -> contract.Rule:
    """Add or update ``rule`` and queue its event in the same transaction (caller commits).

    An existing rule's version is bumped when it changed (by default: when the
    session sees it modified), so alert ids of the new version differ.
    """
    if changed is None:
        changed = rule.id is not None and rule in session and session.is_modified(rule)
    if changed and rule.id is not None:
        rule.version = (rule.version or 1) + 1
    rule.updated_at = datetime.now(timezone.utc)
    session.add(rule)
    session.flush()
    event = rule_event(session, rule)
    session.add(models.OutboxEvent(topic=settings.topic("rules"), key=event.key, value=contract.encode(event)))
    return event


def delete_rule(session: Session, rule: models.Rule, settings: Settings) -> None:
    """Delete ``rule`` and queue its tombstone in the same transaction (caller commits)."""
    key = str(rule.id).encode()
    session.delete(rule)
    session.add(models.OutboxEvent(topic=settings.topic("rules"), key=key, value=None))


def republish_watchlist_rules(session: Session, watchlist_id: int, settings: Settings) -> int:
    """After a watchlist's symbols change, re-announce every rule that watches it."""
    rules = session.scalars(select(models.Rule).where(models.Rule.watchlist_id == watchlist_id)).all()
    for rule in rules:
        save_rule(session, rule, settings, changed=True)
    return len(rules)


def announce_all_rules(session: Session, settings: Settings) -> int:
    """Queue every rule's current event again, versions unchanged (caller commits).

    The database is the source of truth for rules; this re-fills a ``rules`` topic that lost
    them (a new Kafka cluster, a wiped broker). The engine ignores a rule it already holds
    at the same version, so announcing twice is harmless.
    """
    rules = session.scalars(select(models.Rule).order_by(models.Rule.id)).all()
    for rule in rules:
        event = rule_event(session, rule)
        session.add(models.OutboxEvent(topic=settings.topic("rules"), key=event.key, value=contract.encode(event)))
    return len(rules)


def topic_is_empty(settings: Settings, topic: str) -> bool:
    """Whether ``topic`` exists and has never held a record (compaction never moves the start,
    so a compacted topic that ever held one has a non-zero end). A missing topic is not empty:
    ``python -m events topics`` (the release phase) creates it, and there is nothing to refill."""
    from confluent_kafka import Consumer

    from events.kafka import consumer_config
    from events.pipeline_read import end_offsets

    probe = Consumer(consumer_config(settings, "tickerbell-relay-probe"))
    try:
        meta = probe.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return False
        return sum(end_offsets(probe, topic, len(meta.partitions))) == 0
    finally:
        probe.close()


def heal_rules_topic(settings: Settings, sessions: sessionmaker[Session]) -> int:
    """When the ``rules`` topic holds no record at all while the database has rules (nothing is
    pending in the outbox either), announce them all again; return how many were queued."""
    topic = settings.topic("rules")
    with sessions() as session:
        if session.scalar(select(models.Rule.id).limit(1)) is None:
            return 0
        pending = session.scalar(select(models.OutboxEvent.id).where(
            models.OutboxEvent.topic == topic, models.OutboxEvent.published_at.is_(None)).limit(1))
        if pending is not None:
            return 0
    if not topic_is_empty(settings, topic):
        return 0
    with sessions() as session:
        queued = announce_all_rules(session, settings)
        session.commit()
    log.warning("outbox: topic %s was empty while the database has %d rules; announcing them again", topic, queued)
    return queued


def relay_once(sessions: sessionmaker[Session], producer: EventProducer, batch_size: int = 500) -> int:
    """Publish one batch of unpublished outbox rows; return how many were published."""
    with sessions() as session:
        query = (
            select(models.OutboxEvent)
            .where(models.OutboxEvent.published_at.is_(None))
            .order_by(models.OutboxEvent.id)
            .limit(batch_size)
        )
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = session.scalars(query).all()
        if not rows:
            return 0
        for row in rows:
            producer.produce_bytes(row.topic, row.key, row.value)
        producer.flush()  # raises if the broker did not acknowledge: rows stay unpublished
        now = datetime.now(timezone.utc)
        for row in rows:
            row.published_at = now
        session.commit()
        log.info("outbox: published %d events", len(rows))
        return len(rows)


def run_relay(settings: Settings, sessions: sessionmaker[Session], shutdown: ShutdownFlag,
              interval_s: float = 0.2) -> None:
    """Relay until shutdown; sleeps ``interval_s`` between empty polls (the outbox is a table)."""
    from sqlalchemy.exc import DBAPIError

    producer = EventProducer(settings)
    backoff = Backoff()
    from events.demand import heal_watched_topic

    for heal in (heal_rules_topic, heal_watched_topic):
        try:
            heal(settings, sessions)
        except (DBAPIError, KafkaException) as exc:  # the loop below waits for them; healing is best effort
            log.warning("outbox relay: %s could not check its topic: %s", heal.__name__, exc)
    while not shutdown.is_set():
        try:
            published = relay_once(sessions, producer)
        except (DBAPIError, DeliveryError) as exc:  # database or broker away: retry, nothing is lost
            delay = backoff.failed()
            log.warning("outbox relay: %s; retrying in %.1f s", type(exc).__name__, delay)
            shutdown.wait(delay)
            continue
        backoff.succeeded()
        if published == 0:
            shutdown.wait(interval_s)
    producer.flush()
