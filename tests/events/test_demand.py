"""events.demand: every change to watchlists or rules keeps the watched topic (through the outbox) in step."""

from __future__ import annotations

from dataclasses import replace
from sqlalchemy import select

from events import models
from events.contract import Watched, decode
from events.db import session_factory
from events.settings import Settings
from tests.web.conftest import Api, make_app


def watched_outbox(settings: Settings) -> list[tuple[str, int | None]]:
    """(symbol, watchers or None for a tombstone) queued for the watched topic, in order."""
    with session_factory(settings)() as s:
        rows = s.scalars(select(models.OutboxEvent).where(models.OutboxEvent.topic == settings.topic("watched"))
                         .order_by(models.OutboxEvent.id)).all()
        return [(r.key.decode(), None if r.value is None else decode(r.value, Watched).watchers) for r in rows]


def test_demand_follows_watchlists_and_rules(base_settings: Settings, database_url: str) -> None:
    settings = replace(base_settings, database_url=database_url)
    app = make_app(settings)
    alice = Api(app.test_client())
    alice.register("alice@example.com")
    bob = Api(app.test_client())
    bob.register("bob@example.com")
    wl = alice.post("/api/watchlists", {"name": "mine"}).get_json()
    before = len(watched_outbox(settings))
    assert alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": "AMD"}).status_code in (200, 201)
    assert watched_outbox(settings)[before:] == [("AMD", 1)]
    # a second user watching the same symbol through a rule: two watchers, one event
    rule = {"name": "amd up", "symbol": "AMD", "condition": {"series": "price", "op": "greater_than", "value": 1}}
    created = bob.post("/api/rules", rule)
    assert created.status_code == 201, created.get_json()
    assert watched_outbox(settings)[-1] == ("AMD", 2)
    # a rule on a symbol nobody lists watches it too
    rule_zz = {**rule, "name": "zz", "symbol": "ZZ"}
    assert bob.post("/api/rules", rule_zz).status_code == 201
    assert watched_outbox(settings)[-1] == ("ZZ", 1)
    n = len(watched_outbox(settings))
    assert alice.delete(f"/api/watchlists/{wl['id']}/symbols/AMD").status_code in (200, 204)
    assert watched_outbox(settings)[n:] == [("AMD", 1)]
    assert bob.delete(f"/api/rules/{created.get_json()['id']}").status_code in (200, 204)
    assert watched_outbox(settings)[-1] == ("AMD", None)  # a tombstone: nobody watches AMD any more
    with session_factory(settings)() as s:
        assert {r.symbol: r.watchers for r in s.scalars(select(models.WatchedSymbol))} == {"ZZ": 1}
