"""Pages, health and readiness, the OpenAPI document, and a real test send (SQLite app)."""

from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from flask import Flask

from events.settings import Settings
from tests.web.conftest import Api, make_app, signup_link

PAGES = ["/dashboard", "/overview", "/rules", "/rules/new", "/channels", "/alerts", "/status", "/account", "/symbols/AAPL"]


def test_pages_need_login_and_render(sqlite_app: Flask) -> None:
    anon = sqlite_app.test_client()
    for page in PAGES:
        resp = anon.get(page)
        assert resp.status_code == 302 and "/login" in resp.location, page
    assert anon.get("/api/rules").status_code == 401
    api = Api(sqlite_app.test_client())
    api.register("pages@example.com")
    for page in (p for p in PAGES if p != "/status"):  # /status: administrators only (test_api_limits)
        resp = api.client.get(page)
        assert resp.status_code == 200, page
        assert 'name="csrf-token"' in resp.text
    assert api.client.get("/symbols/not%20valid").status_code == 422
    assert api.client.get("/alerts/none-such").status_code == 404
    assert "404" in api.client.get("/rules/999").text


def test_the_rule_form_lists_every_placeholder_a_message_may_use(sqlite_app: Flask) -> None:
    from alerts.templates import sample_context, validate_template

    api = Api(sqlite_app.test_client())
    api.register("placeholders@example.com")
    page = api.client.get("/rules/new").text
    listed = set(re.findall(r"<code>\{\{(\w+)\}\}</code>", page.split('id="placeholders"', 1)[1].split("</div>", 1)[0]))
    assert {"ticker", "close", "value_text", "threshold_text", "condition", "rule_name", "time"} <= listed
    assert listed == set(sample_context())  # exactly what the save-time check renders with
    for name in listed:  # each passes the check a rule's message gets when it is saved
        validate_template("{{" + name + "}}", sample_context())


def test_html_register_and_login_forms(sqlite_app: Flask) -> None:
    client = sqlite_app.test_client()
    page = client.get("/register")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    token = found.group(1)
    assert client.post("/register", data={"email": "x@example.com", "password": "pw"}).status_code == 400  # no CSRF token
    short = client.post("/register", data={"email": "x@example.com", "password": "pw", "csrf_token": token})
    assert short.status_code == 422 and "at least 8 characters" in short.text
    ok = client.post("/register", data={"email": "x@example.com", "password": "long enough pw", "csrf_token": token})
    assert ok.status_code == 200 and "Check your inbox" in ok.text and client.get("/api/me").status_code == 401
    unconfirmed = client.post("/login", data={"email": "x@example.com", "password": "long enough pw", "csrf_token": token})
    assert unconfirmed.status_code == 403 and "Confirm your email first" in unconfirmed.text
    link = signup_link(sqlite_app, "x@example.com")
    assert 'id="confirm-signup"' in client.get(link).text
    confirmed = client.post(link, data={"csrf_token": token})
    assert confirmed.status_code == 302 and confirmed.location.endswith("/dashboard")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    bad = client.post("/login", data={"email": "x@example.com", "password": "wrong password", "csrf_token": token})
    assert bad.status_code == 401 and "Wrong email or password" in bad.text
    good = client.post("/login?next=//evil.example/", data={"email": "x@example.com", "password": "long enough pw", "csrf_token": token})
    assert good.status_code == 302 and good.location.endswith("/dashboard")  # no open redirect


def test_the_chart_draws_price_levels_not_the_size_of_a_move(sqlite_app: Flask) -> None:
    api = Api(sqlite_app.test_client())
    api.register("levels@example.com")
    for condition in ({"series": "price", "op": "crossing_up", "value": 250},
                      {"series": "price", "op": "moving_up_pct", "value": 0.2, "window_bars": 1},
                      {"series": "close", "op": "moving_down", "value": 3, "window_bars": 5}):
        created = api.post("/api/rules", {"symbol": "AAPL", "condition": condition})
        assert created.status_code == 201, created.get_json()
    page = api.get("/symbols/AAPL").get_data(as_text=True)
    found = re.search(r'data-levels="([^"]*)"', page)
    assert found is not None
    levels = found.group(1)
    assert json.loads(levels.replace("&#34;", '"')) == [250]  # a 0.2 % move is no price to draw a line at


def test_vendor_assets_are_served_locally(sqlite_app: Flask) -> None:
    client = sqlite_app.test_client()
    plotly_js = client.get("/vendor/plotly.min.js")
    assert plotly_js.status_code == 200 and b"plotly" in plotly_js.data[:2000].lower()
    sio_js = client.get("/vendor/socket.io.min.js")
    assert sio_js.status_code == 200 and len(sio_js.data) > 10_000
    assert client.get("/vendor/other.js").status_code == 404
    page = Api(client)
    page.register("assets@example.com")
    html = client.get("/symbols/AAPL").text
    assert "https://" not in "".join(re.findall(r'<(?:script|link)[^>]+>', html))  # nothing from a CDN


def test_healthz_and_readyz(sqlite_app: Flask, base_settings: Settings) -> None:
    client = sqlite_app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and all(c["ok"] for c in ready.get_json()["checks"].values())
    with socket.socket() as s:  # a port where no Redis listens: a stopped Redis
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    broken = make_app(replace(sqlite_app.extensions["tickerbell_settings"], redis_url=f"redis://127.0.0.1:{dead_port}/0"))
    resp = broken.test_client().get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "not ready" and body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"]


def test_openapi_describes_every_api_route(sqlite_app: Flask) -> None:
    doc = sqlite_app.test_client().get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    for rule in sqlite_app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                assert (path, method) in documented, (path, method)
    create = doc["paths"]["/api/rules"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Rule"
    assert "crossing_up" in doc["components"]["schemas"]["Condition"]["properties"]["op"]["enum"]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def work(settings: Settings, delivery_id: int) -> str:
    """What a notification worker does with the enqueued id."""
    from sqlalchemy.orm import sessionmaker

    from alerts import notify
    from alerts.retry import NotifyConfig
    from events.db import make_engine

    return notify.deliver(sessionmaker(make_engine(settings.database_url), expire_on_commit=False), delivery_id,
                          settings, NotifyConfig()).status


def test_webhook_test_send_reaches_a_real_endpoint(sqlite_app: Flask) -> None:
    settings = replace(sqlite_app.extensions["tickerbell_settings"], allow_private_webhooks=True)
    app = make_app(settings)
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = Api(app.test_client())
        api.register("hooks@example.com")
        ch = api.post("/api/channels", {"kind": "webhook", "name": "Local", "target": f"http://127.0.0.1:{server.server_port}/hook"})
        assert ch.status_code == 201, ch.get_json()
        queued = api.post(f"/api/channels/{ch.get_json()['id']}/test")
        assert queued.status_code == 202, queued.get_json()  # a worker sends it; here the test plays the worker
        assert work(settings, queued.get_json()["delivery_id"]) == "delivered"
        result = api.get(queued.get_json()["poll"]).get_json()
        assert (result["status"], result["last_status_code"]) == ("delivered", 204)
        sent = _Hook.received[-1]
        assert {k.lower() for k in sent["headers"]} >= {"webhook-id", "webhook-signature", "webhook-timestamp"}
        server_down = api.post("/api/channels", {"kind": "webhook", "name": "Gone", "target": "http://127.0.0.1:9/x"}).get_json()
        failed = api.post(f"/api/channels/{server_down['id']}/test").get_json()
        assert work(settings, failed["delivery_id"]) == "failed"  # a test is tried once
        assert api.get(failed["poll"]).get_json()["last_error"]
    finally:
        server.shutdown()
        thread.join(5)
