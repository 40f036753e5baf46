"""The page tells the truth: a watched symbol without data says what it waits for, and from where."""

from __future__ import annotations

from typing import Any

from events.contract import FeedStatus, feed_status_id
from web.projector import project
from tests.web.conftest import Api

T0 = 1_795_186_800_000


def status(symbol: str, state: str, detail: str, ts: int = T0) -> FeedStatus:
    return FeedStatus(id=feed_status_id(symbol, ts), ts=ts, symbol=symbol, source="yfinance", state=state,  # type: ignore[arg-type]
                      detail=detail)


def test_watchlist_and_symbol_page_say_what_the_feed_says(app: Any, alice: Api) -> None:
    wl = alice.post("/api/watchlists", {"name": "mine"}).get_json()
    for sym in ("AMD", "NOPE"):
        assert alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": sym}).status_code == 201
    page = alice.get(f"/dashboard?watchlist={wl['id']}").get_data(as_text=True)
    assert page.count("waiting for the data feed to pick it up") == 2  # watched, nothing from ingest yet
    sessions = app.extensions["tickerbell_sessions"]
    project(sessions, [status("AMD", "waiting", "waiting for the first tick from Yahoo Finance (1-minute polls)"),
                       status("NOPE", "unavailable", "Yahoo Finance failed 3 polls in a row (unknown or delisted symbol?)")])
    page = alice.get(f"/dashboard?watchlist={wl['id']}").get_data(as_text=True)
    assert "waiting for the first tick from Yahoo Finance" in page
    assert "unknown or delisted symbol?" in page
    quotes = {q["symbol"]: q for q in alice.get("/api/quotes").get_json()}
    assert quotes["NOPE"]["feed"]["state"] == "unavailable" and quotes["AMD"]["feed"]["state"] == "waiting"
    nope = alice.get("/symbols/NOPE").get_data(as_text=True)
    assert 'id="feed-note"' in nope and "unknown or delisted" in nope
    amd = alice.get("/symbols/AMD").get_data(as_text=True)
    assert 'id="feed-note"' not in amd and "waiting for the first tick" in amd
    # a later status replaces the earlier one (the projection keeps the newest per symbol)
    project(sessions, [status("NOPE", "streaming", "live from Yahoo Finance (1-minute polls)", T0 + 1)])
    assert 'id="feed-note"' not in alice.get("/symbols/NOPE").get_data(as_text=True)


def test_a_symbol_nobody_watches_says_how_to_start_it(alice: Api) -> None:
    page = alice.get("/symbols/ZZZQ").get_data(as_text=True)
    assert "nobody watches it: add it to a watchlist" in page
