"""Two more bounds of issue 11: channel creations per user are rate-limited (an email channel mails
its address), and the overview holds at most the ``overview_rows`` cap of bars per request."""

from __future__ import annotations

import time
from dataclasses import replace

from flask import Flask

from events import models
from tests.web.conftest import Api, make_app
from web.limits import ApiLimits


def sessions(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["tickerbell_sessions"]


def test_channel_creation_is_rate_limited_per_user(sqlite_app: Flask) -> None:
    app = make_app(sqlite_app.extensions["tickerbell_settings"], CHANNEL_CREATE_LIMIT="3/hour")
    alice, bob = Api(app.test_client()), Api(app.test_client())
    alice.register("alice@example.com")
    bob.register("bob@example.com")
    codes = []
    for i in range(4):  # creations count; a refused body (it mails nothing) does not
        body = {"kind": "email", "name": f"Inbox {i}", "target": f"inbox{i}@example.com" if i != 1 else "bad"}
        codes.append(alice.post("/api/channels", body).status_code)
    assert codes == [201, 422, 201, 201]
    refused = alice.post("/api/channels", {"kind": "email", "name": "More", "target": "more@example.com"})
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    assert len(alice.get("/api/channels").get_json()) == 3  # nothing more was created, nothing mailed
    # per user: another account (from the same client address) still creates
    assert bob.post("/api/channels", {"kind": "email", "name": "Bob", "target": "bob@example.com"}).status_code == 201


def test_the_overview_holds_at_most_its_cap_of_bars(sqlite_app: Flask) -> None:
    settings = replace(sqlite_app.extensions["tickerbell_settings"], bar_seconds=3600)
    app = make_app(settings, API_LIMITS=ApiLimits(overview_rows=5))
    api = Api(app.test_client())
    api.register("overview@example.com")
    wl = api.get("/api/watchlists").get_json()[0]["id"]
    for symbol in ("AAPL", "MSFT"):
        assert api.post(f"/api/watchlists/{wl}/symbols", {"symbol": symbol}).status_code == 201
    now_ms = int(time.time() * 1000)
    with sessions(app)() as s:
        for symbol in ("AAPL", "MSFT"):
            for i in range(4):
                s.add(models.BarRecord(symbol=symbol, bar_seconds=3600, start_ms=now_ms - (i + 1) * 3_600_000, open=1,
                                       high=1, low=1, close=1, volume=1, count=1, vwap=1))
        s.commit()
    over = api.get("/api/overview?limit=6")
    assert over.status_code == 422
    body = over.get_json()
    assert "limit" in body["fields"] and "overview_rows" in body["message"] and "5" in body["message"]
    capped = api.get("/api/overview")  # by default the cap, across every symbol
    assert capped.status_code == 200
    data = capped.get_json()
    assert sum(d["bars"] for d in data["daily"]) == 5 and data["truncated"] is True
    small = api.get("/api/overview?limit=3&symbol=AAPL").get_json()
    assert sum(d["bars"] for d in small["daily"]) == 3
    whole = api.get("/api/overview?limit=4&symbol=MSFT").get_json()
    assert sum(d["bars"] for d in whole["daily"]) == 4 and whole["truncated"] is False
