"""The migrations build exactly the models' schema on SQLite and PostgreSQL, and the outbox works."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from events import contract, models
from events.contract import Rule, decode
from events.db import downgrade, make_engine, upgrade
from events.kafka import EventProducer
from events.outbox import delete_rule, relay_once, save_rule
from events.settings import Settings
from tests.support import read_topic


def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), models.Base.metadata)
    assert diff == [], diff
    downgrade(database_url, "base")
    assert set(inspect(make_engine(database_url)).get_table_names()) <= {"alembic_version"}
    upgrade(database_url)  # and back up again
    assert "rules" in inspect(make_engine(database_url)).get_table_names()


def _user(session: Session) -> models.User:
    user = models.User(email="a@example.com", password_hash="x")
    session.add(user)
    session.flush()
    return user


def test_delivery_is_unique_per_alert_and_channel(database_url: str) -> None:
    sessions = sessionmaker(make_engine(database_url))
    with sessions() as s:
        user = _user(s)
        ch = models.Channel(user_id=user.id, kind="webhook", name="hook", target="https://example.com/h")
        s.add(ch)
        s.flush()
        s.add(models.Delivery(alert_id="alert:1", channel_id=ch.id, user_id=user.id))
        s.commit()
        s.add(models.Delivery(alert_id="alert:1", channel_id=ch.id, user_id=user.id))
        with pytest.raises(IntegrityError):
            s.commit()


def test_rule_change_and_outbox_commit_together(database_url: str, kafka_settings: Settings) -> None:
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    cond = {"series": "price", "op": "crossing", "value": 150.0}
    with sessions() as s:
        user = _user(s)
        rule = models.Rule(user_id=user.id, name="AAPL 150", symbol="AAPL", condition=cond)
        save_rule(s, rule, kafka_settings)
        s.rollback()  # an aborted change leaves neither the rule nor its event
        assert s.scalars(select(models.OutboxEvent)).all() == []
        user = _user(s)
        rule = models.Rule(user_id=user.id, name="AAPL 150", symbol="AAPL", condition=cond)
        event = save_rule(s, rule, kafka_settings)
        s.commit()
        assert event.version == 1 and event.symbols == ["AAPL"]
        rule.condition = {**cond, "value": 155.0}
        event2 = save_rule(s, rule, kafka_settings)
        s.commit()
        assert event2.version == 2 and event2.condition.value == 155.0
        rule_id = rule.id
        delete_rule(s, rule, kafka_settings)
        s.commit()

    producer = EventProducer(kafka_settings)
    assert relay_once(sessions, producer) == 3
    assert relay_once(sessions, producer) == 0  # all marked published
    msgs = read_topic(kafka_settings, kafka_settings.topic("rules"), expect=3)
    assert [m.key() for m in msgs] == [str(rule_id).encode()] * 3
    assert [decode(m.value(), Rule).version for m in msgs[:2]] == [1, 2]
    assert msgs[2].value() is None  # tombstone


def test_invalid_rule_is_refused_before_anything_is_written(database_url: str, kafka_settings: Settings) -> None:
    import msgspec

    sessions = sessionmaker(make_engine(database_url))
    with sessions() as s:
        user = _user(s)
        rule = models.Rule(user_id=user.id, symbol="AAPL", condition={"series": "price", "op": "explodes"})
        with pytest.raises(msgspec.ValidationError, match="op"):
            save_rule(s, rule, kafka_settings)
        s.rollback()
        assert s.scalars(select(models.OutboxEvent)).all() == []


def test_watchlist_change_reannounces_its_rules_once(database_url: str, kafka_settings: Settings) -> None:
    from events.outbox import republish_watchlist_rules

    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    with sessions() as s:
        user = _user(s)
        wl = models.Watchlist(user_id=user.id, name="tech")
        s.add(wl)
        s.flush()
        s.add(models.WatchlistSymbol(watchlist_id=wl.id, symbol="AAPL"))
        rule = models.Rule(user_id=user.id, watchlist_id=wl.id, condition={"series": "rsi_14", "op": "less_than", "value": 30})
        assert save_rule(s, rule, kafka_settings).symbols == ["AAPL"]
        s.commit()
        s.add(models.WatchlistSymbol(watchlist_id=wl.id, symbol="MSFT"))
        s.flush()
        assert republish_watchlist_rules(s, wl.id, kafka_settings) == 1
        s.commit()
        events = [decode(row.value, Rule) for row in s.scalars(select(models.OutboxEvent).order_by(models.OutboxEvent.id))]
    assert [(e.version, e.symbols) for e in events] == [(1, ["AAPL"]), (2, ["AAPL", "MSFT"])]


def test_an_emptied_rules_topic_is_refilled_from_the_database(database_url: str, kafka_settings: Settings) -> None:
    """The database is the source of truth: a `rules` topic that lost everything (a new cluster,
    a wiped broker) gets every rule again, versions unchanged, when the relay starts."""
    import uuid
    from dataclasses import replace

    from events.kafka import ensure_topics
    from events.outbox import heal_rules_topic

    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    with sessions() as s:
        user = _user(s)
        for level in (100.0, 200.0):
            save_rule(s, models.Rule(user_id=user.id, symbol="AAPL",
                                     condition={"series": "price", "op": "greater_than", "value": level}),
                      kafka_settings)
        s.commit()
    producer = EventProducer(kafka_settings)
    assert relay_once(sessions, producer) == 2
    assert heal_rules_topic(kafka_settings, sessions) == 0  # the topic holds them: nothing to do
    # a new, empty cluster (here: a fresh set of topics) behind the same database
    fresh = replace(kafka_settings, kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(fresh)
    assert heal_rules_topic(fresh, sessions) == 2
    assert heal_rules_topic(fresh, sessions) == 0  # queued in the outbox: not twice
    assert relay_once(sessions, EventProducer(fresh)) == 2
    events = [decode(m.value(), Rule) for m in read_topic(fresh, fresh.topic("rules"), expect=2)]
    assert sorted((e.rule_id, e.version, e.condition.value) for e in events) == [(1, 1, 100.0), (2, 1, 200.0)]
    assert heal_rules_topic(fresh, sessions) == 0


def test_relay_survives_an_unreachable_database(kafka_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    import threading
    import time

    from events.kafka import ShutdownFlag
    from events.outbox import run_relay

    sessions = sessionmaker(make_engine("postgresql+psycopg://tb@127.0.0.1:1/none?connect_timeout=2"))
    shutdown = ShutdownFlag()
    errors: list[BaseException] = []

    def relay() -> None:
        try:
            run_relay(kafka_settings, sessions, shutdown)
        except BaseException as exc:  # the point of the test: nothing may escape
            errors.append(exc)

    thread = threading.Thread(target=relay)
    with caplog.at_level("WARNING", logger="events.outbox"):
        thread.start()
        deadline = time.monotonic() + 30
        while sum("retrying" in r.getMessage() for r in caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the log, bounded by the deadline
        shutdown.set()
        thread.join(30)
    assert not thread.is_alive() and errors == []
    assert sum("retrying" in r.getMessage() for r in caplog.records) >= 2
