"""The alert's chart at a signed link: the Slack message (incoming webhook and bot) carries it as an image block,
the web app serves the PNG at it to anyone holding it, and refuses a changed, expired or borrowed signature.

Real pieces throughout: the delivery path (:func:`alerts.notify.deliver`) sends to a receiver and a fake Slack
on loopback; the link is fetched from the real web app (Flask test client) on the same database. A
``PUBLIC_URL`` of ``https://tickerbell.example`` is only written into messages: nothing ever requests it.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from alerts import notify
from alerts.chart_image import LINK_TTL_S, chart_cache_info, chart_link, clear_chart_cache
from alerts.dispatch import record_deliveries
from alerts.senders import chart_for
from events import models
from events.contract import Alert
from events.db import make_engine
from events.settings import Secret, Settings
from tests.alerts.conftest import Receiver, SmtpServer, receiver, smtp_server  # noqa: F401 (fixtures)
from tests.alerts.test_notify import FAST, make_channel, make_user
from tests.alerts.test_slack_bot import TOKEN, FakeSlack, slack  # noqa: F401 (fixture)
from tests.web.conftest import make_app

PUBLIC = "https://tickerbell.example"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TS_MS = 1_795_000_000_000
BAR_MS = 60_000


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(make_engine(database_url), expire_on_commit=False)


@pytest.fixture
def settings(base_settings: Settings, database_url: str, smtp_server: SmtpServer) -> Settings:  # noqa: F811
    return replace(base_settings, database_url=database_url, public_url=PUBLIC, allow_private_webhooks=True,
                   smtp_url=Secret(smtp_server.url))


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app: Flask = make_app(settings)
    return app.test_client()


def alert(user_id: int, channel_ids: list[int], n: int = 1, symbol: str = "AAPL") -> Alert:
    return Alert(id=f"alert:firing:7:{n:04d}", ts=TS_MS + 30_000, rule_id=7, rule_version=1, user_id=user_id,
                 state="firing", symbol=symbol, trigger_event_id=f"sim:{symbol}:{n}", series="change_pct",
                 op="greater_than", value=1.71, threshold=0.2, channel_ids=channel_ids, rule_name="move",
                 evidence={"price": 151.0, "close": 151.0, "change_pct": 1.71})


def add_bars(sessions: sessionmaker[Session], symbol: str = "AAPL", n: int = 60) -> None:
    with sessions() as s:
        for i in range(n):
            close = 150.0 + (i % 7) * 0.1
            s.add(models.BarRecord(symbol=symbol, bar_seconds=60, start_ms=TS_MS - (n - 1 - i) * BAR_MS,
                                   open=close - 0.05, high=close + 0.2, low=close - 0.2, close=close, volume=100.0,
                                   count=3, vwap=close))
        s.commit()


def fire(sessions: sessionmaker[Session], a: Alert) -> list[int]:
    with sessions() as s:
        return record_deliveries(s, [a])


def image_blocks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in payload["blocks"] if b["type"] == "image"]


def local(url: str) -> str:
    """The path and query of a link under PUBLIC_URL, to ask the test client for."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    return f"{parts.path}?{parts.query}"


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(p.split("=", 1) for p in parts.query.split("&"))
    query.update(changes)
    return f"{parts.path}?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_the_slack_message_shows_the_chart_the_link_serves(sessions: sessionmaker[Session], settings: Settings,
                                                           client: FlaskClient, receiver: Receiver) -> None:  # noqa: F811
    add_bars(sessions)
    user = make_user(sessions)
    ch = make_channel(sessions, user, "slack", receiver.url("/slack"))
    first, second = alert(user, [ch], 1), alert(user, [ch], 2)
    [did] = fire(sessions, first)
    fire(sessions, second)
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    [got] = receiver.got("/slack")
    payload = json.loads(got.body)
    assert payload["text"]  # the plain-text fallback stays
    [image] = image_blocks(payload)
    assert image["image_url"].startswith(f"{PUBLIC}/charts/") and image["alt_text"].startswith("AAPL")

    answer = client.get(local(image["image_url"]))
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.mimetype == "image/png"
    png = answer.get_data()
    assert len(png) > 0 and png[:8] == PNG_SIGNATURE
    with sessions() as s:  # the very chart the email of this alert shows
        assert png == chart_for(s, first, settings.bar_seconds)
    cache = answer.headers["Cache-Control"]
    assert cache.startswith("public, max-age=") and 0 < int(cache.rsplit("=", 1)[1]) <= 86400
    assert "Set-Cookie" not in answer.headers  # nothing about a session: Slack's fetch is anonymous

    path = local(image["image_url"])
    sig = dict(p.split("=", 1) for p in urlsplit(path).query.split("&"))["sig"]
    tampered = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    assert client.get(with_query(path, sig=tampered)).status_code == 403
    assert client.get(with_query(path, exp=str(int(time.time()) + 10 * LINK_TTL_S))).status_code == 403
    assert client.get(urlsplit(path).path).status_code == 403  # no signature at all
    # the second alert exists, yet the first one's signature does not open it
    other = f"/charts/{second.id.replace(':', '%3A')}.png?{urlsplit(path).query}"
    assert client.get(other).status_code == 403
    assert client.get(local(chart_link(PUBLIC, settings.secret_key.get(), second.id, time.time()))).status_code == 200


def test_an_expired_link_is_refused_and_an_unknown_alert_is_not_found(sessions: sessionmaker[Session],
                                                                      settings: Settings, client: FlaskClient) -> None:
    add_bars(sessions)
    user = make_user(sessions)
    ch = make_channel(sessions, user, "slack", "http://127.0.0.1:9/unused")
    a = alert(user, [ch])
    fire(sessions, a)
    key = settings.secret_key.get()
    expired = chart_link(PUBLIC, key, a.id, time.time() - LINK_TTL_S - 2 * 86400)
    assert client.get(local(expired)).status_code == 403
    assert client.get(local(chart_link(PUBLIC, key, a.id, time.time()))).status_code == 200
    # a valid signature of an id nobody knows
    assert client.get(local(chart_link(PUBLIC, key, "alert:firing:7:9999", time.time()))).status_code == 404
    # signed with another key (another deployment's link)
    assert client.get(local(chart_link(PUBLIC, "not-our-key", a.id, time.time()))).status_code == 403


def test_an_alert_known_only_to_the_history_is_drawn_too(sessions: sessionmaker[Session], settings: Settings,
                                                         client: FlaskClient) -> None:
    add_bars(sessions)
    a = alert(1, [])
    with sessions() as s:
        s.add(models.AlertRecord(id=a.id, rule_id=a.rule_id, rule_version=1, user_id=1, symbol=a.symbol,
                                 state=a.state, ts_ms=a.ts, series=a.series, op=a.op, value=a.value,
                                 threshold=a.threshold, message="", trigger_event_id=a.trigger_event_id))
        s.commit()
    answer = client.get(local(chart_link(PUBLIC, settings.secret_key.get(), a.id, time.time())))
    assert answer.status_code == 200 and answer.get_data()[:8] == PNG_SIGNATURE


def test_the_bot_message_carries_the_image_and_a_loopback_public_url_leaves_it_out(
        sessions: sessionmaker[Session], settings: Settings, slack: FakeSlack) -> None:  # noqa: F811
    add_bars(sessions)
    user = make_user(sessions)
    bot = replace(settings, slack_api_url=slack.base)
    ch = make_channel(sessions, user, "slack_bot", "#alerts", secret=TOKEN)
    [did] = fire(sessions, alert(user, [ch], 1))
    assert notify.deliver(sessions, did, bot, FAST).status == "delivered"
    [(method, body, _auth)] = slack.calls
    assert method == "chat.postMessage" and body["text"]
    [image] = image_blocks(body)
    assert image["image_url"].startswith(f"{PUBLIC}/charts/")

    for n, public_url in enumerate(("http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]:8000"), 2):
        slack.calls.clear()
        [did] = fire(sessions, alert(user, [ch], n))
        assert notify.deliver(sessions, did, replace(bot, public_url=public_url), FAST).status == "delivered"
        [(_m, body, _a)] = slack.calls
        assert body["text"] and image_blocks(body) == [], public_url


def test_no_bars_no_image_block(sessions: sessionmaker[Session], settings: Settings, receiver: Receiver) -> None:  # noqa: F811
    add_bars(sessions, "MSFT")  # another symbol's bars: Slack would refuse a message whose image fails
    user = make_user(sessions)
    ch = make_channel(sessions, user, "slack", receiver.url("/slack"))
    [did] = fire(sessions, alert(user, [ch]))
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    [got] = receiver.got("/slack")
    payload = json.loads(got.body)
    assert payload["text"] and image_blocks(payload) == []


def test_the_email_and_the_slack_message_of_one_alert_render_once(
        sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, smtp_server: SmtpServer) -> None:  # noqa: F811
    add_bars(sessions)
    user = make_user(sessions)
    mail = make_channel(sessions, user, "email", "trader@example.com")
    chat = make_channel(sessions, user, "slack", receiver.url("/slack"))
    clear_chart_cache()
    dids = fire(sessions, alert(user, [mail, chat]))
    assert [notify.deliver(sessions, d, settings, FAST).status for d in dids] == ["delivered", "delivered"]
    info = chart_cache_info()
    assert (info.misses, info.hits) == (1, 1)
    [message] = smtp_server.messages
    inline = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert len(inline) == 1 and image_blocks(json.loads(receiver.got("/slack")[0].body))
    with sessions() as s:  # the payload the link's view reads is the one delivered
        row = s.query(models.Delivery).filter_by(channel_id=chat).one()
        assert msgspec.convert(row.payload, Alert).evidence["close"] == 151.0
