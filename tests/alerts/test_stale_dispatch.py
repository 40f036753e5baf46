"""The stale-feed alert (rule 0) and its resolve reach every user who watches the symbol, through
their channels: one delivery row per (alert, user channel), harmless to deliver again."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.dispatch import Dispatcher, record_deliveries, watcher_channels
from alerts.engine_state import Evaluator
from events import contract, models
from events.db import make_engine
from events.kafka import EventProducer
from events.settings import Settings
from tests.alerts.helpers import rule, tick
from tests.alerts.test_lifecycle import ny

ABOVE = {"series": "price", "op": "greater_than", "value": 150}


def stale_alerts() -> list[contract.Alert]:
    """The engine's own stale-feed alert and resolve for AAPL (no hand-made copy)."""
    ev = Evaluator(bar_seconds=60, stale_after_s=120)
    ev.upsert_rule(rule(ABOVE))
    ev.on_tick(tick(100, 0, ts_ms=ny(2026, 11, 18, 10, 0)))
    fired = ev.check_stale(ny(2026, 11, 18, 10, 5))
    back = ev.on_tick(tick(100, 1, ts_ms=ny(2026, 11, 18, 10, 6)))
    assert [a.state for a in fired + back] == ["firing", "resolved"]
    return fired + back


def people(s: Session) -> dict[str, int]:
    """Who watches AAPL how, with which channels; ids by name."""
    ids: dict[str, int] = {}

    def user(name: str, active: bool = True) -> models.User:
        u = models.User(email=f"{name}@example.com", password_hash="x", is_active=active)
        s.add(u)
        s.flush()
        ids[name] = u.id
        return u

    def channel(u: models.User, name: str, kind: str = "webhook", **kw: object) -> models.Channel:
        c = models.Channel(user_id=u.id, kind=kind, name=name, target=f"http://127.0.0.1:9/{name}", **kw)
        s.add(c)
        s.flush()
        ids[name] = c.id
        return c

    def watchlist(u: models.User, *symbols: str) -> models.Watchlist:
        w = models.Watchlist(user_id=u.id, name="mine",
                             symbols=[models.WatchlistSymbol(symbol=x, position=i) for i, x in enumerate(symbols)])
        s.add(w)
        s.flush()
        return w

    def a_rule(u: models.User, channels: list[models.Channel], symbol: str | None = "AAPL",
               watchlist_id: int | None = None, enabled: bool = True) -> None:
        s.add(models.Rule(user_id=u.id, symbol=symbol, watchlist_id=watchlist_id, condition=ABOVE, enabled=enabled,
                          channels=channels, version=1))

    ann = user("ann")  # AAPL on a watchlist only: all her usable channels
    channel(ann, "ann_mail", kind="email", confirmed_at=models.utcnow())
    channel(ann, "ann_hook")
    channel(ann, "ann_off", enabled=False)
    channel(ann, "ann_unconfirmed", kind="email")
    watchlist(ann, "MSFT", "AAPL")
    bob = user("bob")  # a rule on AAPL: the rule's channels, not his others
    a_rule(bob, [channel(bob, "bob_rule")])
    channel(bob, "bob_other")
    cat = user("cat")  # a rule on a watchlist holding AAPL
    w = watchlist(cat, "AAPL")
    a_rule(cat, [channel(cat, "cat_rule")], symbol=None, watchlist_id=w.id)
    channel(cat, "cat_other")
    dan = user("dan")  # watches MSFT only
    watchlist(dan, "MSFT")
    channel(dan, "dan_hook")
    eve = user("eve")  # a disabled rule on AAPL watches nothing
    a_rule(eve, [channel(eve, "eve_rule")], enabled=False)
    gus = user("gus", active=False)  # a deactivated account hears nothing
    watchlist(gus, "AAPL")
    channel(gus, "gus_hook")
    s.commit()
    return ids


def test_the_stale_feed_alert_goes_to_every_watcher_once_per_channel(database_url: str) -> None:
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    with sessions() as s:
        ids = people(s)
        assert watcher_channels(s, {"AAPL", "TSLA"}) == {"AAPL": {
            ids["ann"]: sorted([ids["ann_mail"], ids["ann_hook"]]), ids["bob"]: [ids["bob_rule"]],
            ids["cat"]: [ids["cat_rule"]]}}
    alerts = stale_alerts()
    with sessions() as s:
        pending = record_deliveries(s, alerts)
    with sessions() as s:
        rows = s.scalars(select(models.Delivery)).all()
        got = sorted((r.alert_id, r.channel_id, r.user_id) for r in rows)
        payload_users = {(r.alert_id, r.channel_id): r.payload["user_id"] for r in rows if r.payload}
    by_channel = {"ann_mail": "ann", "ann_hook": "ann", "bob_rule": "bob", "cat_rule": "cat"}
    assert got == sorted((a.id, ids[c], ids[u]) for a in alerts for c, u in by_channel.items())
    assert set(pending) == {r.id for r in rows}
    assert all(payload_users[(a.id, ids[c])] == ids[u] for a in alerts for c, u in by_channel.items())
    # delivered again (a dispatcher replay): no new row; a row already sent is not pending again
    with sessions() as s:
        first = s.scalars(select(models.Delivery).where(models.Delivery.channel_id == ids["bob_rule"])).all()
        for d in first:
            d.status = "delivered"
        s.commit()
    with sessions() as s:
        again = record_deliveries(s, alerts)
        assert len(s.scalars(select(models.Delivery.id)).all()) == len(rows)
    assert set(again) == {r.id for r in rows} - {d.id for d in first}


def test_through_the_dispatcher_two_watchers_get_the_alert_and_its_resolve(kafka_settings: Settings,
                                                                         database_url: str) -> None:
    sessions = sessionmaker(make_engine(database_url), expire_on_commit=False)
    with sessions() as s:
        ids = people(s)
    alerts = stale_alerts()
    producer = EventProducer(kafka_settings)
    for a in alerts + alerts:  # each twice: a redelivered topic
        producer.produce(a)
    producer.flush()
    enqueued: list[int] = []
    Dispatcher(kafka_settings, sessions, enqueued.extend, group_id=f"d-{uuid.uuid4().hex}").run(idle_stop_s=3)
    with sessions() as s:
        rows = s.scalars(select(models.Delivery)).all()
    assert len(rows) == 2 * 4 and {r.user_id for r in rows} == {ids["ann"], ids["bob"], ids["cat"]}
    assert sorted(r.alert_id for r in rows) == sorted([alerts[0].id] * 4 + [alerts[1].id] * 4)
    resolved = [msgspec.convert(r.payload, contract.Alert) for r in rows if r.alert_id == alerts[1].id]
    assert {a.state for a in resolved} == {"resolved"} and {a.rule_id for a in resolved} == {0}
    assert set(enqueued) == {r.id for r in rows}
