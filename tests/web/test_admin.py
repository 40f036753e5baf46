"""The operator CLI: users, rule export/import through the outbox, projection rebuilds, resend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from events import models
from events.db import make_engine
from events.kafka import EventProducer
from events.settings import Settings
from tests.web.events_factory import alert, bar, prediction
from web.admin import DEMO_EMAIL, create_user, export_rules, import_rules, rebuild_projections, seed_demo
from web.store.users import authenticate

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_185_000_000


def test_create_user_and_demo_seed(database_url: str, kafka_settings: Settings) -> None:
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    uid, password = create_user(sessions, "Ops@Example.com", None)
    with sessions() as s:
        assert authenticate(s, "ops@example.com", password).id == uid
        assert authenticate(s, "ops@example.com", "wrong") is None
    settings = replace(kafka_settings, database_url=database_url)
    assert "demo@tickerbell.local /" in seed_demo(settings, sessions)
    assert "exists" in seed_demo(settings, sessions)  # idempotent
    with sessions() as s:
        demo = s.scalar(select(models.User).where(models.User.email == DEMO_EMAIL))
        rules = s.scalars(select(models.Rule).where(models.Rule.user_id == demo.id)).all()
        assert len(rules) == 3 and all(r.channels for r in rules)
        assert s.scalar(select(func.count()).select_from(models.OutboxEvent)) >= 3


def test_rules_export_import_round_trip(database_url: str, kafka_settings: Settings) -> None:
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    settings = replace(kafka_settings, database_url=database_url)
    seed_demo(settings, sessions)
    exported = export_rules(sessions, None)
    other, _ = create_user(sessions, "copy@example.com", "long enough password")
    with sessions() as s:
        their_list = s.scalar(select(models.Watchlist.id).where(models.Watchlist.user_id == other))
        s.add(models.WatchlistSymbol(watchlist_id=their_list, symbol="IBM"))
        s.commit()
    for r in exported:
        r["channel_ids"] = []  # channels and watchlists belong to their owner
        if r["watchlist_id"] is not None:
            r["watchlist_id"] = their_list
    ids = import_rules(settings, sessions, exported, other)
    again = export_rules(sessions, other)
    assert [r["id"] for r in again] == ids
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("id", "user_id", "channel_ids", "watchlist_id")} for r in rs]  # noqa: E731
    assert strip(again) == strip(exported)
    with sessions() as s:  # each import announced to the engine
        assert s.scalar(select(func.count()).select_from(models.OutboxEvent)) >= 6


def table_rows(sessions: sessionmaker) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    out = {}
    with sessions() as s:
        for model in (models.BarRecord, models.PredictionRecord, models.AlertRecord):
            cols = list(model.__table__.columns)
            out[model.__tablename__] = sorted(tuple(row) for row in s.execute(select(*cols)).all())
    return out


def test_drop_and_rebuild_gives_the_same_tables(database_url: str, kafka_settings: Settings) -> None:
    import time

    producer = EventProducer(kafka_settings)

    def produce_bars(first: int, last: int) -> None:
        for i in range(first, last):
            start = T0 + i * 60_000
            producer.produce(bar("AAPL", start, 100 + i, sma_5=100.0 + i / 2))
            producer.produce(prediction("AAPL", start, 100 + i, 100.5 + i))

    produce_bars(0, 20)
    producer.produce(alert(1, 1, "AAPL", T0 + 600_000, 110.0, 109.0))
    producer.flush()
    written_after_ms = int(time.time() * 1000) + 1
    while time.time() * 1000 < written_after_ms:  # the next messages get a later Kafka timestamp
        pass
    produce_bars(20, 30)
    producer.produce(alert(1, 1, "AAPL", T0 + 1_200_000, 120.0, 109.0, trigger="t2"))
    producer.flush()
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    settings = replace(kafka_settings, database_url=database_url)
    assert rebuild_projections(settings, sessions) == 62
    first = table_rows(sessions)
    assert (len(first["bars"]), len(first["predictions"]), len(first["alert_history"])) == (30, 30, 2)
    with sessions() as s:  # damage the projection, as a bad deploy might
        s.query(models.BarRecord).filter(models.BarRecord.start_ms > T0 + 10 * 60_000).update({"close": -1.0})
        s.commit()
    rebuild_projections(settings, sessions)
    assert table_rows(sessions) == first
    rebuild_projections(settings, sessions, since_ms=written_after_ms)  # Kafka (write) time
    later = table_rows(sessions)
    assert [r[2] for r in later["bars"]] == [T0 + i * 60_000 for i in range(20, 30)]
    assert len(later["alert_history"]) == 1


def test_resend_queues_a_failed_delivery_but_never_a_delivered_one(database_url: str, kafka_settings: Settings) -> None:
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    uid, _ = create_user(sessions, "r@example.com", "long enough password")
    with sessions() as s:
        ch = models.Channel(user_id=uid, kind="webhook", name="h", target="https://example.com/h")
        s.add(ch)
        s.flush()
        dead = models.Delivery(alert_id="alert:x", channel_id=ch.id, user_id=uid, status="dead", attempts=8)
        done = models.Delivery(alert_id="alert:y", channel_id=ch.id, user_id=uid, status="delivered")
        s.add_all([dead, done])
        s.commit()
    queue = f"q-admin-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url, "ALERTS_QUEUE": queue}
    run = lambda i: subprocess.run([sys.executable, "-m", "web", "admin", "resend", str(i)], env=env, cwd=ROOT,  # noqa: E731
                                   capture_output=True, text=True, timeout=60)
    ok, refused = run(dead.id), run(done.id)
    assert ok.returncode == 0 and "queued" in ok.stdout, ok.stderr
    assert refused.returncode != 0 and "not sending it twice" in refused.stderr
    r = redis.Redis.from_url(kafka_settings.redis_url)
    try:
        assert r.llen(queue) == 1
        body = json.loads(r.lindex(queue, 0))
        assert body["headers"]["task"] == "alerts.deliver" and str(dead.id) in body["headers"]["argsrepr"]
    finally:
        r.delete(queue)
    with sessions() as s:
        assert s.get(models.Delivery, dead.id).status == "pending"
        assert s.get(models.Delivery, done.id).status == "delivered"


def test_republish_rules_queues_every_rule_again_unchanged(database_url: str, kafka_settings: Settings) -> None:
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    settings = replace(kafka_settings, database_url=database_url)
    seed_demo(settings, sessions)
    with sessions() as s:
        before = s.scalar(select(func.count()).select_from(models.OutboxEvent))
        versions = sorted(s.scalars(select(models.Rule.version)).all())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url,
           "KAFKA_TOPIC_PREFIX": kafka_settings.kafka_topic_prefix}
    done = subprocess.run([sys.executable, "-m", "web", "admin", "republish-rules"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "3 rules queued" in done.stdout, done.stderr
    with sessions() as s:
        rows = s.scalars(select(models.OutboxEvent).order_by(models.OutboxEvent.id).offset(before)).all()
        assert sorted(s.scalars(select(models.Rule.version)).all()) == versions  # versions unchanged
    assert len(rows) == 3 and {r.topic for r in rows} == {kafka_settings.topic("rules")}


def test_cli_rule_and_channel_creation_run_the_webs_checks(database_url: str, kafka_settings: Settings,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """create-rule and create-channel call the web store's own functions: what the form refuses they
    refuse with the same field and words, and nothing is written."""
    from web.admin import create_channel_for, create_rule_for, main
    from web.store.errors import Invalid

    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    settings = replace(kafka_settings, database_url=database_url)
    uid, _ = create_user(sessions, "ops@example.com", "long enough password")
    with pytest.raises(Invalid) as bad:
        create_rule_for(settings, sessions, uid, {"symbol": "AAPL", "condition": {
            "series": "price", "op": "inside_channel", "lower": 5, "upper": 5}})
    assert bad.value.fields == {"condition.upper": "must be greater than lower"}
    with pytest.raises(Invalid) as bad:
        create_channel_for(settings, sessions, uid, {"kind": "email", "target": "not-an-address", "name": "a\nb"})
    assert bad.value.fields == {"name": "must not contain control characters or line breaks",
                                "target": "enter a valid email address"}
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(models.Rule)) == 0
        assert s.scalar(select(func.count()).select_from(models.Channel)) == 0
    made = create_channel_for(settings, sessions, uid, {"kind": "email", "target": "ops@example.com", "name": "Ops"})
    with sessions() as s:
        channel = s.scalars(select(models.Channel)).one()
        assert channel.confirmed_at is not None and made.startswith(f"channel {channel.id} created (email")
    line = create_rule_for(settings, sessions, uid, {"symbol": "aapl", "channel_ids": [channel.id], "condition": {
        "series": "price", "op": "greater_than", "value": 200}})
    assert line.endswith("created: AAPL: price above 200")
    monkeypatch.setenv("DATABASE_URL", database_url)
    moving = {"symbol": "AAPL", "condition": {"series": "price", "op": "moving_up_pct", "value": 2}}
    assert main(["create-rule", "--user-id", str(uid), "--rule", json.dumps(moving)]) == 1
    assert "give the window either in bars (window_bars) or in seconds (window_s)" in capsys.readouterr().err
    assert main(["create-channel", "--user-id", str(uid), "fax", "+1 555 0100"]) == 1
    assert "kind: choose one of: email, slack, slack_bot, webhook, apprise" in capsys.readouterr().err
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(models.Rule)) == 1


def test_the_alerts_cli_creates_channels_through_the_web_s_checks(database_url: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m alerts channels create`` refuses what the form refuses, writes nothing then, and never
    prints an Apprise URL's tokens or a bot token."""
    from alerts.__main__ import main

    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    uid, _ = create_user(sessions, "cli@example.com", "long enough password")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("ALLOW_PRIVATE_WEBHOOKS", raising=False)
    base = ["channels", "create", "--user-id", str(uid)]
    assert main([*base, "--kind", "email", "--target", "not-an-address"]) == 2
    assert "enter a valid email address" in capsys.readouterr().err
    assert main([*base, "--kind", "webhook", "--target", "http://127.0.0.1:9/hook"]) == 2  # the address guard
    assert "not allowed" in capsys.readouterr().err
    assert main([*base, "--kind", "apprise", "--target", "ntfys://reader:s3cr3t-tok@ntfy.example.com/t"]) == 0
    out = capsys.readouterr().out
    assert "created (apprise -> ntfys://" in out and "s3cr3t-tok" not in out
    token = tmp_path / "token"
    token.write_text("xoxb-1234-5678-abcdefghijkl\n")
    assert main([*base, "--kind", "slack_bot", "--target", "#alerts", "--token-file", str(token)]) == 0
    assert "xoxb-1234-5678-abcdefghijkl" not in capsys.readouterr().out
    assert main(["channels", "list"]) == 0
    assert "s3cr3t-tok" not in capsys.readouterr().out
    with sessions() as s:
        kinds = {c.kind: c for c in s.scalars(select(models.Channel))}
        assert set(kinds) == {"apprise", "slack_bot"}
        assert kinds["slack_bot"].secret == "xoxb-1234-5678-abcdefghijkl"
        assert all(c.confirmed_at is not None for c in kinds.values())
