"""The Apprise and Slack-bot channel kinds through the web API: what is checked when saved, what is
shown back (never a URL's tokens, never a bot token)."""

from __future__ import annotations

import json

from flask import Flask

from events import models
from events.settings import Settings
from tests.alerts.conftest import Receiver, receiver, smtp_server  # noqa: F401 (fixtures)
from tests.alerts.procs import Proc
from tests.alerts.test_pipeline import queue  # noqa: F401 (fixture)
from tests.web.conftest import Api
from tests.web.test_channel_security import poll_delivery, stack  # noqa: F401 (fixture)
from web.db import get_db

NTFY = "ntfy://reader:s3cr3t-tok@ntfy.example.com/tb-alerts"
TOKEN = "xoxb-1234-5678-abcdefghijkl"


def stored(app: Flask, channel_id: int) -> models.Channel:
    with app.app_context():
        ch = get_db().get(models.Channel, channel_id)
        assert ch is not None
        get_db().expunge(ch)
        return ch


def test_an_apprise_url_is_stored_and_shown_only_masked(sqlite_app: Flask) -> None:
    api = Api(sqlite_app.test_client())
    api.register("apprise@example.com")
    resp = api.post("/api/channels", {"kind": "apprise", "name": "phone", "target": NTFY})
    assert resp.status_code == 201, resp.get_json()
    created = resp.get_json()
    assert "s3cr3t-tok" not in resp.get_data(as_text=True)
    assert created["service"] == "ntfy" and created["target"].startswith("ntfy://")
    assert created["confirmed"] is True and "secret" not in created
    assert stored(sqlite_app, created["id"]).target == NTFY
    listed = api.get("/api/channels")
    assert "s3cr3t-tok" not in listed.get_data(as_text=True)
    # the form sends the masked URL back with a new name: the real URL stays
    renamed = api.patch(f"/api/channels/{created['id']}", {"name": "my phone", "target": created["target"]})
    assert renamed.status_code == 200, renamed.get_json()
    assert stored(sqlite_app, created["id"]).target == NTFY
    replaced = api.patch(f"/api/channels/{created['id']}", {"target": "discord://1234/abcdefgh"})
    assert replaced.status_code == 200 and replaced.get_json()["service"] == "Discord"
    assert stored(sqlite_app, created["id"]).target == "discord://1234/abcdefgh"


def test_unsupported_or_malformed_apprise_urls_are_refused_on_save(sqlite_app: Flask) -> None:
    api = Api(sqlite_app.test_client())
    api.register("apprise2@example.com")
    for url, why in [("mailto://user:pass@example.com", "not a supported service"),
                     ("https://example.com/hook", "not a supported service"),
                     ("", "is required")]:
        resp = api.post("/api/channels", {"kind": "apprise", "name": "x", "target": url})
        assert resp.status_code == 422 and why in resp.get_json()["fields"]["target"], (url, resp.get_json())
    assert api.get("/api/channels").get_json() == []


def test_a_slack_bot_channel_keeps_its_token_secret(sqlite_app: Flask) -> None:
    api = Api(sqlite_app.test_client())
    api.register("bot@example.com")
    missing = api.post("/api/channels", {"kind": "slack_bot", "name": "ops", "target": "#alerts"})
    assert missing.status_code == 422 and "token" in missing.get_json()["fields"]
    bad = api.post("/api/channels", {"kind": "slack_bot", "name": "ops", "target": "#alerts", "token": "xoxp-user"})
    assert bad.status_code == 422 and "xoxb" in bad.get_json()["fields"]["token"]
    bad_channel = api.post("/api/channels", {"kind": "slack_bot", "name": "ops", "target": "#no spaces here",
                                             "token": TOKEN})
    assert bad_channel.status_code == 422 and "target" in bad_channel.get_json()["fields"]
    resp = api.post("/api/channels", {"kind": "slack_bot", "name": "ops", "target": "#alerts", "token": TOKEN})
    assert resp.status_code == 201, resp.get_json()
    assert TOKEN not in resp.get_data(as_text=True) and TOKEN not in api.get("/api/channels").get_data(as_text=True)
    assert resp.get_json()["secret_hint"] == f"xoxb-…{TOKEN[-4:]}"
    assert stored(sqlite_app, resp.get_json()["id"]).secret == TOKEN
    new = TOKEN[:-4] + "wxyz"
    assert api.patch(f"/api/channels/{resp.get_json()['id']}", {"token": new}).status_code == 200
    assert stored(sqlite_app, resp.get_json()["id"]).secret == new
    webhook_token = api.post("/api/channels", {"kind": "webhook", "name": "w", "target": "https://93.184.215.14/h",
                                               "token": TOKEN})
    assert webhook_token.status_code == 422 and "token" in webhook_token.get_json()["fields"]


def test_the_channels_page_and_the_form_s_help_list_the_new_kinds(sqlite_app: Flask) -> None:
    api = Api(sqlite_app.test_client())
    api.register("page@example.com")
    assert api.post("/api/channels", {"kind": "apprise", "name": "phone", "target": NTFY}).status_code == 201
    assert api.post("/api/channels", {"kind": "slack_bot", "name": "ops", "target": "#alerts",
                                      "token": TOKEN}).status_code == 201
    page = api.get("/channels").get_data(as_text=True)
    assert "Slack (bot token)" in page and "(Apprise)" in page and 'id="token-field"' in page
    assert "s3cr3t-tok" not in page and TOKEN not in page
    info = api.get("/api/channels/kinds").get_json()
    assert {"apprise", "slack_bot", "email", "slack", "webhook"} <= set(info["kinds"])
    assert {"Telegram", "Discord", "Microsoft Teams", "ntfy", "Pushover"} <= set(info["services"])
    assert info["url_forms"]["Telegram"].startswith("tgram://")


def test_a_test_send_on_an_ntfy_channel_reaches_the_receiver_through_a_real_worker(
        stack: tuple[Flask, Settings, Proc], receiver: Receiver) -> None:  # noqa: F811
    app, _, worker = stack
    api = Api(app.test_client())
    api.register("ntfy@example.com")
    ch = api.post("/api/channels", {"kind": "apprise", "name": "phone",
                                    "target": f"ntfy://127.0.0.1:{receiver.port}/tb-test"}).get_json()
    queued = api.post(f"/api/channels/{ch['id']}/test")
    assert queued.status_code == 202
    outcome = poll_delivery(api, queued.get_json()["poll"], worker)
    assert outcome["status"] == "delivered", outcome
    [req] = receiver.got()
    doc = json.loads(req.body)
    assert doc["topic"] == "tb-test" and "TEST" in doc["title"]
