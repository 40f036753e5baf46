"""REST API against a real database (SQLite and PostgreSQL): accounts, CSRF, validation, authorisation, outbox."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from flask import Flask

from events import contract, models
from events.contract import Rule, decode
from events.db import session_factory
from tests.web.conftest import Api

NOW_MS = int(time.time() * 1000)
PRICE_RULE = {"symbol": "AAPL", "name": "AAPL above 200", "condition": {"series": "price", "op": "greater_than", "value": 200}}


def sessions(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["tickerbell_sessions"]


def outbox(app: Flask) -> list[models.OutboxEvent]:
    """The queued ``rules`` events (demand changes share the outbox: tests/events/test_demand.py)."""
    topic = app.extensions["tickerbell_settings"].topic("rules")
    with sessions(app)() as s:
        return list(s.query(models.OutboxEvent).filter(models.OutboxEvent.topic == topic).order_by(models.OutboxEvent.id))


def test_register_login_logout_and_their_validation(app: Flask) -> None:
    api = Api(app.test_client())
    bad = api.post("/api/auth/register", {"email": "not-an-email", "password": "short"})
    assert bad.status_code == 422
    assert set(bad.get_json()["fields"]) == {"email", "password"}
    assert "8 characters" in bad.get_json()["fields"]["password"]
    user = api.register("Carol@Example.com")
    assert user["email"] == "carol@example.com"
    assert api.get("/api/me").get_json()["email"] == "carol@example.com"
    assert api.get("/api/watchlists").get_json()[0]["name"] == "My watchlist"  # everyone starts with one
    # a taken email answers like a new one (tests/web/test_signup.py) and changes nothing
    dup = Api(app.test_client()).post("/api/auth/register", {"email": "carol@example.com", "password": "whatever123"})
    assert dup.status_code == 202
    assert Api(app.test_client()).post("/api/auth/login", {"email": "carol@example.com",
                                                           "password": "whatever123"}).status_code == 401
    assert api.post("/api/auth/logout").status_code == 200
    assert api.get("/api/me").status_code == 401
    assert api.post("/api/auth/login", {"email": "carol@example.com", "password": "wrong-password"}).status_code == 401
    assert api.post("/api/auth/login", {"email": "carol@example.com", "password": "correct horse battery"}).status_code == 200
    assert api.get("/api/me").status_code == 200
    with sessions(app)() as s:
        stored = s.query(models.User).one().password_hash
    assert "correct horse" not in stored and stored.startswith(("scrypt:", "pbkdf2:"))


def test_csrf_is_required_for_session_writes_but_not_for_bearer_tokens(alice: Api) -> None:
    client = alice.client
    no_token = client.post("/api/watchlists", json={"name": "Tech"})
    assert no_token.status_code == 400
    assert no_token.get_json()["error"] == "csrf"
    wrong = client.post("/api/watchlists", json={"name": "Tech"}, headers={"X-CSRFToken": "forged"})
    assert wrong.status_code == 400
    assert alice.post("/api/watchlists", {"name": "Tech"}).status_code == 201
    # HTML forms too: logging out without the form's token is refused
    assert client.post("/logout").status_code == 400
    token = alice.post("/api/tokens", {"name": "bot"}).get_json()["token"]
    anon = client.application.test_client()
    resp = anon.post("/api/watchlists", json={"name": "Bot list"}, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 201, resp.get_json()


def test_login_is_rate_limited_per_ip_and_email(app: Flask) -> None:
    api = Api(app.test_client())
    api.register("dave@example.com")
    api.post("/api/auth/logout")
    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit):
        assert api.post("/api/auth/login", {"email": "dave@example.com", "password": "nope-nope"}).status_code == 401
    locked = api.post("/api/auth/login", {"email": "dave@example.com", "password": "correct horse battery"})
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    # the HTML form shares the counter
    page = app.test_client()
    csrf = Api(page).csrf
    form = page.post("/login", data={"email": "dave@example.com", "password": "correct horse battery", "csrf_token": csrf})
    assert form.status_code == 429
    # another account from the same address is not locked out
    other = Api(app.test_client())
    other.register("erin@example.com")
    other.post("/api/auth/logout")
    assert other.post("/api/auth/login", {"email": "erin@example.com", "password": "correct horse battery"}).status_code == 200


def test_api_tokens_are_hashed_revocable_and_authenticate(alice: Api, app: Flask) -> None:
    created = alice.post("/api/tokens", {"name": "script"})
    assert created.status_code == 201
    token = created.get_json()["token"]
    with sessions(app)() as s:
        row = s.query(models.ApiToken).one()
    assert row.token_hash != token and len(row.token_hash) == 64
    anon = app.test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert anon.get("/api/me", headers=bearer).get_json()["email"] == "alice@example.com"
    assert [t["name"] for t in alice.get("/api/tokens").get_json()] == ["script"]
    assert "token" not in alice.get("/api/tokens").get_json()[0]
    assert alice.post("/api/tokens", {"name": ""}).status_code == 422
    assert alice.delete(f"/api/tokens/{row.id}").status_code == 204
    assert anon.get("/api/me", headers=bearer).status_code == 401
    issued = anon.post("/api/auth/token", json={"email": "alice@example.com", "password": "correct horse battery", "name": "ci"})
    assert issued.status_code == 201
    assert anon.get("/api/rules", headers={"Authorization": f"Bearer {issued.get_json()['token']}"}).status_code == 200
    assert anon.get("/api/rules").status_code == 401


def test_watchlists(alice: Api, app: Flask) -> None:
    wl = alice.post("/api/watchlists", {"name": "Tech", "symbols": ["aapl", "MSFT", "aapl"]}).get_json()
    assert wl["symbols"] == ["AAPL", "MSFT"]
    assert alice.post("/api/watchlists", {"name": "Tech"}).status_code == 409
    assert alice.post("/api/watchlists", {"name": ""}).get_json()["fields"]["name"]
    bad = alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": "not a symbol!"})
    assert bad.status_code == 422 and "ticker symbol" in bad.get_json()["fields"]["symbol"]
    assert alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": "MSFT"}).status_code == 409
    added = alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": "brk.b"})
    assert added.status_code == 201 and added.get_json()["symbols"] == ["AAPL", "MSFT", "BRK.B"]
    assert alice.delete(f"/api/watchlists/{wl['id']}/symbols/MSFT").get_json()["symbols"] == ["AAPL", "BRK.B"]
    assert alice.delete(f"/api/watchlists/{wl['id']}/symbols/MSFT").status_code == 404
    assert alice.patch(f"/api/watchlists/{wl['id']}", {"name": "Big tech"}).get_json()["name"] == "Big tech"
    assert len(alice.get("/api/watchlists").get_json()) == 2
    # a rule on the list is re-announced when the list's symbols change
    rule = alice.post("/api/rules", {"watchlist_id": wl["id"], "condition": {"series": "rsi_14", "op": "greater_than", "value": 70}})
    assert rule.status_code == 201, rule.get_json()
    alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": "NVDA"})
    last = decode(outbox(app)[-1].value, Rule)
    assert last.symbols == ["AAPL", "BRK.B", "NVDA"] and last.version > 1
    assert alice.delete(f"/api/watchlists/{wl['id']}").status_code == 409  # a rule watches it
    assert alice.delete(f"/api/rules/{rule.get_json()['id']}").status_code == 204
    assert alice.delete(f"/api/watchlists/{wl['id']}").status_code == 204


def test_rule_lifecycle_writes_the_outbox(alice: Api, app: Flask) -> None:
    created = alice.post("/api/rules", PRICE_RULE)
    assert created.status_code == 201, created.get_json()
    rule = created.get_json()
    assert rule["state"] == "active" and rule["version"] == 1 and rule["symbols"] == ["AAPL"]
    rows = outbox(app)
    assert len(rows) == 1 and rows[0].topic.endswith("rules") and rows[0].key == str(rule["id"]).encode()
    event = decode(rows[0].value, Rule)
    assert (event.rule_id, event.version, event.symbols, event.condition.value) == (rule["id"], 1, ["AAPL"], 200.0)

    edited = alice.put(f"/api/rules/{rule['id']}", {"condition": {"series": "price", "op": "crossing_up", "value": 210}})
    assert edited.status_code == 200 and edited.get_json()["version"] == 2
    assert decode(outbox(app)[-1].value, Rule).condition.op == "crossing_up"

    assert alice.post(f"/api/rules/{rule['id']}/disable").get_json()["state"] == "disabled"
    assert decode(outbox(app)[-1].value, Rule).enabled is False
    assert alice.post(f"/api/rules/{rule['id']}/enable").get_json()["state"] == "active"
    snoozed = alice.post(f"/api/rules/{rule['id']}/snooze", {"minutes": 60}).get_json()
    assert snoozed["state"] == "snoozed" and snoozed["snoozed_until_ms"] > NOW_MS + 59 * 60_000
    assert decode(outbox(app)[-1].value, Rule).snoozed_until_ms == snoozed["snoozed_until_ms"]
    assert alice.post(f"/api/rules/{rule['id']}/snooze", {"minutes": -5}).status_code == 422
    assert alice.post(f"/api/rules/{rule['id']}/snooze", {"minutes": 0}).get_json()["state"] == "active"
    assert [r["id"] for r in alice.get("/api/rules").get_json()] == [rule["id"]]
    assert alice.get(f"/api/rules/{rule['id']}").get_json()["version"] == 6

    assert alice.delete(f"/api/rules/{rule['id']}").status_code == 204
    tomb = outbox(app)[-1]
    assert tomb.value is None and tomb.key == str(rule["id"]).encode()
    assert alice.get(f"/api/rules/{rule['id']}").status_code == 404
    assert len(outbox(app)) == 7


def test_every_operator_and_preset_is_accepted(alice: Api) -> None:
    catalog = alice.get("/api/rules/catalog").get_json()
    for preset in catalog["presets"]:
        resp = alice.post("/api/rules", {"symbol": "MSFT", "name": preset["label"], "condition": preset["condition"]})
        assert resp.status_code == 201, (preset["key"], resp.get_json())
    per_group = {
        "compare": {"value": 10.0}, "channel": {"lower": 1.0, "upper": 2.0}, "move": {"value": 1.5, "window_bars": 5},
    }
    for group, ops in catalog["operator_groups"].items():
        for op in ops:
            resp = alice.post("/api/rules", {"symbol": "MSFT", "condition": {"series": "close", "op": op, **per_group[group]}})
            assert resp.status_code == 201, (op, resp.get_json())
    assert len(alice.get("/api/rules?symbol=MSFT").get_json()) == len(catalog["presets"]) + len(contract.Operator.__args__)


def test_rule_validation_messages(alice: Api) -> None:
    def fields(body: dict) -> dict[str, str]:
        resp = alice.post("/api/rules", body)
        assert resp.status_code == 422, resp.get_json()
        assert resp.get_json()["message"]
        return resp.get_json()["fields"]

    assert "symbol" in fields({"condition": PRICE_RULE["condition"]})
    assert "symbol" in fields({"symbol": "bad symbol", "condition": PRICE_RULE["condition"]})
    assert "condition.series" in fields({"symbol": "AAPL", "condition": {"series": "nonsense", "op": "greater_than", "value": 1}})
    assert "condition.op" in fields({"symbol": "AAPL", "condition": {"series": "price", "op": "above", "value": 1}})
    both = fields({"symbol": "AAPL", "condition": {"series": "price", "op": "crossing", "value": 1, "other": "sma_20"}})
    assert "not both" in both["condition.value"]
    assert "greater than lower" in fields({"symbol": "AAPL", "condition": {"series": "price", "op": "inside_channel", "lower": 5, "upper": 1}})["condition.upper"]
    move = fields({"symbol": "AAPL", "condition": {"series": "price", "op": "moving_up_pct", "value": -2}})
    assert {"condition.value", "condition.window_s"} <= set(move)
    assert "condition.value" in fields({"symbol": "AAPL", "condition": {"series": "price", "op": "greater_than", "value": "abc"}})
    assert "frequency" in fields({**PRICE_RULE, "frequency": "hourly"})
    assert "timezone" in fields({**PRICE_RULE, "timezone": "Mars/Olympus"})
    assert "expires_ms" in fields({**PRICE_RULE, "expires_ms": NOW_MS - 60_000})
    assert "active_to_min" in fields({**PRICE_RULE, "active_from_min": 570})
    assert "channel_ids" in fields({**PRICE_RULE, "channel_ids": [999_999]})
    assert "cooldown_s" in fields({**PRICE_RULE, "cooldown_s": -1})
    assert "nonsense" in fields({**PRICE_RULE, "nonsense": 1})
    assert alice._call("POST", "/api/rules", data="not json", content_type="text/plain").status_code == 422


def test_rule_preview(alice: Api, app: Flask) -> None:
    start = (NOW_MS // 3_600_000 - 48) * 3_600_000
    closes = [190, 195, 199, 201, 205, 198, 194, 202, 207, 196]  # crosses 200 upwards twice
    with sessions(app)() as s:
        for i, close in enumerate(closes):
            s.add(models.BarRecord(symbol="AAPL", bar_seconds=3600, start_ms=start + i * 3_600_000, open=close, high=close + 1,
                                   low=close - 1, close=close, volume=100, count=5, vwap=close))
        s.commit()
    rule = {"symbol": "AAPL", "condition": {"series": "price", "op": "crossing_up", "value": 200}, "frequency": "every_time"}
    resp = alice.post("/api/rules/preview", {**rule, "days": 30})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["count"] == 2 and body["symbols"] == ["AAPL"]
    firing = [a for a in body["alerts"] if a["state"] == "firing"]
    assert [a["value"] for a in firing] == [201, 202]
    assert alice.post("/api/rules/preview", {**rule, "days": 0}).status_code == 422
    assert alice.post("/api/rules/preview", {"symbol": "AAPL", "condition": {"series": "price"}}).status_code == 422
    assert outbox(app) == []  # a preview saves nothing


def test_channels(alice: Api, app: Flask) -> None:
    email = alice.post("/api/channels", {"kind": "email", "name": "Me", "target": "alice@example.com"})
    assert email.status_code == 201 and "secret" not in email.get_json()
    assert alice.post("/api/channels", {"kind": "email", "name": "Me", "target": "nope"}).get_json()["fields"]["target"]
    assert alice.post("/api/channels", {"kind": "pager", "name": "x", "target": "y"}).get_json()["fields"]["kind"]
    assert "target" in alice.post("/api/channels", {"kind": "webhook", "name": "x"}).get_json()["fields"]
    local = alice.post("/api/channels", {"kind": "webhook", "name": "Local", "target": "http://127.0.0.1:9/hook"})
    assert local.status_code == 422 and "target" in local.get_json()["fields"]
    assert alice.post("/api/channels", {"kind": "slack", "name": "S", "target": "http://hooks.slack.com/services/x"}).status_code == 422
    hook = alice.post("/api/channels", {"kind": "webhook", "name": "Hook", "target": "https://93.184.215.14/hook"})
    assert hook.status_code == 201, hook.get_json()
    hook_json = hook.get_json()
    secret = hook_json["secret"]
    assert secret.startswith("whsec_") and hook_json["secret_hint"].endswith(secret[-4:])
    shown = alice.get(f"/api/channels/{hook_json['id']}").get_json()
    assert "secret" not in shown and secret not in str(alice.get("/api/channels").get_json())
    rotated = alice.post(f"/api/channels/{hook_json['id']}/rotate-secret").get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    assert alice.post(f"/api/channels/{email.get_json()['id']}/rotate-secret").status_code == 409
    patched = alice.patch(f"/api/channels/{email.get_json()['id']}", {"name": "Inbox", "enabled": False}).get_json()
    assert (patched["name"], patched["enabled"]) == ("Inbox", False)
    assert alice.patch(f"/api/channels/{email.get_json()['id']}", {"kind": "slack"}).status_code == 422

    rule = alice.post("/api/rules", {**PRICE_RULE, "channel_ids": [email.get_json()["id"], hook_json["id"]]}).get_json()
    assert rule["channel_ids"] == sorted([email.get_json()["id"], hook_json["id"]])
    assert decode(outbox(app)[-1].value, Rule).channel_ids == rule["channel_ids"]
    assert alice.delete(f"/api/channels/{hook_json['id']}").status_code == 204
    assert decode(outbox(app)[-1].value, Rule).channel_ids == [email.get_json()["id"]]  # the engine hears of it
    assert alice.get(f"/api/rules/{rule['id']}").get_json()["channel_ids"] == [email.get_json()["id"]]

    test = alice.post(f"/api/channels/{email.get_json()['id']}/test")
    assert test.status_code == 409 and "disabled" in test.get_json()["message"]  # (and unconfirmed: it gets nothing)


def _seed_history(app: Flask, user_id: int, channel_id: int) -> str:
    day0 = (NOW_MS // 86_400_000 - 1) * 86_400_000
    with sessions(app)() as s:
        for i in range(30):
            start = day0 + i * 3_600_000
            close = 100 + i
            s.add(models.BarRecord(symbol="AAPL", bar_seconds=3600, start_ms=start, open=close - 0.5, high=close + 1,
                                   low=close - 1, close=close, volume=1000 + i, count=10, vwap=close, sma_20=close - 2))
        s.add(models.PredictionRecord(id="pred:AAPL:1", symbol="AAPL", ts_ms=day0 + 29 * 3_600_000, base_start_ms=day0 + 29 * 3_600_000,
                                      bar_seconds=3600, horizon_bars=1, base_close=129, predicted_close=131, lower=128,
                                      upper=134, interval_level=0.8, model_version="m1"))
        alert_id = "alert:abc123"
        s.add(models.AlertRecord(id=alert_id, rule_id=1, rule_version=1, user_id=user_id, symbol="AAPL", state="firing",
                                 ts_ms=day0 + 5 * 3_600_000, series="price", op="greater_than", value=105, threshold=104.5,
                                 message="AAPL above 104.5", trigger_event_id="tick:1"))
        d = models.Delivery(alert_id=alert_id, channel_id=channel_id, user_id=user_id, status="delivered", attempts=2,
                            last_status_code=200, delivered_at=datetime.now(timezone.utc))
        d.attempt_log = [models.DeliveryAttempt(number=1, status_code=503, error="HTTP 503 from endpoint", duration_ms=12.0),
                         models.DeliveryAttempt(number=2, status_code=200, duration_ms=9.0)]
        s.add(d)
        s.commit()
    return alert_id


def test_history_overview_and_exports(alice: Api, app: Flask) -> None:
    me = alice.get("/api/me").get_json()
    wl = alice.get("/api/watchlists").get_json()[0]
    alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": "AAPL"})
    ch = alice.post("/api/channels", {"kind": "email", "name": "Me", "target": "alice@example.com"}).get_json()
    alert_id = _seed_history(app, me["id"], ch["id"])

    bars = alice.get("/api/symbols/AAPL/bars?limit=10").get_json()
    assert len(bars) == 10 and bars[-1]["close"] == 129 and bars[0]["start_ms"] < bars[-1]["start_ms"]
    assert alice.get("/api/symbols/AAPL/bars?from=2026-13-01").status_code == 422
    assert alice.get("/api/symbols/bad%20sym/bars").status_code == 422
    preds = alice.get("/api/symbols/AAPL/predictions").get_json()
    assert preds[0]["predicted_close"] == 131 and preds[0]["target_ms"] > preds[0]["base_start_ms"]
    quote = alice.get("/api/quotes").get_json()
    assert quote[0]["symbol"] == "AAPL" and quote[0]["price"] == 129

    alerts = alice.get("/api/alerts?symbol=AAPL").get_json()
    assert [a["id"] for a in alerts] == [alert_id]
    assert alice.get("/api/alerts?symbol=MSFT").get_json() == []
    assert alice.get("/api/alerts?state=bogus").status_code == 422
    detail = alice.get(f"/api/alerts/{alert_id}").get_json()
    assert detail["deliveries"][0]["status"] == "delivered"
    assert [a["error"] for a in detail["deliveries"][0]["attempt_log"]] == ["HTTP 503 from endpoint", None]
    assert alice.get(f"/api/channels/{ch['id']}/deliveries").get_json()[0]["attempts"] == 2
    assert alice.get("/api/deliveries").get_json()[0]["alert_id"] == alert_id
    assert alice.get("/api/deliveries?symbol=AAPL").get_json()[0]["alert_id"] == alert_id
    assert alice.get("/api/deliveries?symbol=MSFT").get_json() == []

    ov = alice.get("/api/overview?symbol=AAPL").get_json()
    assert ov["volume_by_symbol"]["AAPL"] == sum(1000 + i for i in range(30))
    assert sum(d["bars"] for d in ov["daily"]) == 30 and ov["volatility_by_symbol"]["AAPL"] > 0
    assert alice.get("/api/overview?from=2030-01-02&to=2030-01-01").status_code == 422

    csv_bars = alice.get("/api/export/bars.csv?symbol=AAPL").get_data(as_text=True).splitlines()
    assert csv_bars[0].startswith("symbol,bar_seconds,start_ms") and len(csv_bars) == 31
    csv_alerts = alice.get("/api/export/alerts.csv").get_data(as_text=True).splitlines()
    assert len(csv_alerts) == 2 and alert_id in csv_alerts[1]
    csv_del = alice.get("/api/export/deliveries.csv").get_data(as_text=True).splitlines()
    assert len(csv_del) == 2 and "delivered" in csv_del[1]


def test_other_users_objects_are_404(alice: Api, bob: Api, app: Flask) -> None:
    a_id = alice.get("/api/me").get_json()["id"]
    rule = alice.post("/api/rules", PRICE_RULE).get_json()
    wl = alice.get("/api/watchlists").get_json()[0]
    ch = alice.post("/api/channels", {"kind": "webhook", "name": "Hook", "target": "https://93.184.215.14/h"}).get_json()
    token_id = alice.post("/api/tokens", {"name": "t"}).get_json()["id"]
    alert_id = _seed_history(app, a_id, ch["id"])
    forbidden = [
        ("GET", f"/api/rules/{rule['id']}"), ("PUT", f"/api/rules/{rule['id']}"), ("DELETE", f"/api/rules/{rule['id']}"),
        ("POST", f"/api/rules/{rule['id']}/enable"), ("POST", f"/api/rules/{rule['id']}/disable"),
        ("POST", f"/api/rules/{rule['id']}/snooze"), ("GET", f"/api/rules/{rule['id']}/alerts"),
        ("GET", f"/api/watchlists/{wl['id']}"), ("PATCH", f"/api/watchlists/{wl['id']}"),
        ("DELETE", f"/api/watchlists/{wl['id']}"), ("POST", f"/api/watchlists/{wl['id']}/symbols"),
        ("DELETE", f"/api/watchlists/{wl['id']}/symbols/AAPL"),
        ("GET", f"/api/channels/{ch['id']}"), ("PATCH", f"/api/channels/{ch['id']}"), ("DELETE", f"/api/channels/{ch['id']}"),
        ("POST", f"/api/channels/{ch['id']}/rotate-secret"), ("POST", f"/api/channels/{ch['id']}/test"),
        ("GET", f"/api/channels/{ch['id']}/deliveries"), ("GET", f"/api/alerts/{alert_id}"),
        ("DELETE", f"/api/tokens/{token_id}"),
    ]
    bodies = {"PUT": {"name": "mine now"}, "PATCH": {"name": "mine now"}, "POST": {"minutes": 5, "symbol": "MSFT"}}
    for method, url in forbidden:
        resp = bob._call(method, url, json=bodies.get(method))
        assert resp.status_code == 404, (method, url, resp.status_code)
        assert resp.get_json()["error"] == "not_found"
    # using her ids inside his own objects is refused too, and lists never show her things
    assert "channel_ids" in bob.post("/api/rules", {**PRICE_RULE, "channel_ids": [ch["id"]]}).get_json()["fields"]
    assert "watchlist_id" in bob.post("/api/rules", {"watchlist_id": wl["id"], "condition": PRICE_RULE["condition"]}).get_json()["fields"]
    assert bob.get("/api/rules").get_json() == [] and bob.get("/api/channels").get_json() == []
    assert bob.get("/api/alerts").get_json() == [] and bob.get("/api/deliveries").get_json() == []
    assert len(bob.get("/api/watchlists").get_json()) == 1
    assert bob.client.get(f"/alerts/{alert_id}").status_code == 404
    assert bob.client.get(f"/rules/{rule['id']}").status_code == 404
    # and nothing of hers changed
    assert alice.get(f"/api/rules/{rule['id']}").get_json()["version"] == 1
    assert alice.get(f"/api/channels/{ch['id']}").get_json()["name"] == "Hook"


def test_a_stale_feed_alert_shows_in_the_history_of_those_who_watch_the_symbol(alice: Api, bob: Api,
                                                                                app: Flask) -> None:
    """The stale-feed alert is a system alert (user 0) delivered to every watcher: each of them finds
    it in their history and its detail; a user who does not watch the symbol does not."""
    wl = alice.get("/api/watchlists").get_json()[0]
    alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": "NVDA"})
    stale = "alert:stale-nvda"
    with sessions(app)() as s:
        s.add(models.AlertRecord(id=stale, rule_id=0, rule_version=0, user_id=0, symbol="NVDA", state="firing",
                                 ts_ms=NOW_MS - 60_000, series="stale", op="stale", value=600, threshold=300,
                                 message="NVDA: no ticks for 10 min in market hours", trigger_event_id="stale:1"))
        s.commit()
    assert [a["id"] for a in alice.get("/api/alerts").get_json()] == [stale]
    assert [a["id"] for a in alice.get("/api/alerts?symbol=NVDA").get_json()] == [stale]
    assert alice.get(f"/api/alerts/{stale}").get_json()["symbol"] == "NVDA"
    # bob watches nothing of the kind: neither the list nor the detail shows it
    assert bob.get("/api/alerts").get_json() == []
    assert bob.get(f"/api/alerts/{stale}").status_code == 404
    # once he has a rule on the symbol he watches it too
    rule = bob.post("/api/rules", {**PRICE_RULE, "symbol": "NVDA"})
    assert rule.status_code == 201, rule.get_json()
    assert [a["id"] for a in bob.get("/api/alerts").get_json()] == [stale]
