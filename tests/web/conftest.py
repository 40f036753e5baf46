"""Fixtures for the web app: an app per database, API clients with CSRF, a live server on loopback."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from typing import Any, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from events.settings import Settings
from web import create_app


def make_app(settings: Settings, **config: Any) -> Flask:
    return create_app({
        "SETTINGS": settings, "REDIS_PREFIX": f"tbtest:{uuid.uuid4().hex[:10]}:",
        "SOCKETIO_CHANNEL": f"tbtest-{uuid.uuid4().hex[:10]}",
        # tasks the app enqueues (test sends, confirmation mails) go to a queue no worker of another test reads
        "ALERTS_QUEUE": f"tbtest-{uuid.uuid4().hex[:10]}", **config,
    })


class Api:
    """A test client that logs in through the API and sends the CSRF header on writes."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = client.get("/api/csrf").get_json()["csrf_token"]

    def _call(self, method: str, url: str, **kw: Any):  # type: ignore[no-untyped-def]
        headers = kw.pop("headers", {})
        if method not in ("GET", "HEAD"):
            headers.setdefault("X-CSRFToken", self.csrf)
        return self.client.open(url, method=method, headers=headers, **kw)

    def get(self, url: str, **kw: Any):  # type: ignore[no-untyped-def]
        return self._call("GET", url, **kw)

    def post(self, url: str, json: Any = None, **kw: Any):  # type: ignore[no-untyped-def]
        return self._call("POST", url, json=json if json is not None else {}, **kw)

    def put(self, url: str, json: Any, **kw: Any):  # type: ignore[no-untyped-def]
        return self._call("PUT", url, json=json, **kw)

    def patch(self, url: str, json: Any, **kw: Any):  # type: ignore[no-untyped-def]
        return self._call("PATCH", url, json=json, **kw)

    def delete(self, url: str, **kw: Any):  # type: ignore[no-untyped-def]
        return self._call("DELETE", url, **kw)

    def register(self, email: str, password: str = "correct horse battery") -> dict[str, Any]:
        """Sign up, then follow the link the sign-up mails (built with the app's own token function)
        and press its button: the client ends up logged in; ``{"id", "email"}`` of the account."""
        resp = self.post("/api/auth/register", {"email": email, "password": password})
        assert resp.status_code == 202, resp.get_json()
        return self.confirm_sign_up(email)

    def confirm_sign_up(self, email: str) -> dict[str, Any]:
        app = self.client.application
        path = signup_link(app, email)
        assert self.client.get(path).status_code == 200
        confirmed = self.post(path)
        assert confirmed.status_code == 302 and confirmed.headers["Location"].endswith("/dashboard"), confirmed.get_data(True)
        return {"id": account_id(app, email), "email": email.strip().lower()}


def account_id(app: Flask, email: str) -> int:
    from sqlalchemy import select

    from events import models
    from web.db import get_db

    with app.app_context():
        user_id = get_db().scalar(select(models.User.id).where(models.User.email == email.strip().lower()))
    assert user_id is not None, f"no account for {email}"
    return int(user_id)


def signup_link(app: Flask, email: str) -> str:
    """The path of the link a sign-up of ``email`` mails now, made as the worker makes it
    (alerts.signup.signup_token over the stored account, the app's SECRET_KEY)."""
    from sqlalchemy import select

    from alerts.signup import PATH, signup_token
    from events import models
    from web.db import get_db

    with app.app_context():
        user = get_db().scalar(select(models.User).where(models.User.email == email.strip().lower()))
        assert user is not None, f"no account for {email}"
        token = signup_token(app.extensions["tickerbell_settings"].secret_key.get(), user.id, user.email,
                             user.password_hash)
    return PATH + token


@pytest.fixture
def app(base_settings: Settings, database_url: str) -> Flask:
    return make_app(replace(base_settings, database_url=database_url))


@pytest.fixture
def sqlite_app(base_settings: Settings, tmp_path) -> Flask:  # type: ignore[no-untyped-def]
    """An app on a fresh SQLite database, for tests whose subject is not the database."""
    from events.db import upgrade

    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    return make_app(replace(base_settings, database_url=url))


@pytest.fixture
def alice(app: Flask) -> Api:
    api = Api(app.test_client())
    api.register("alice@example.com")
    return api


@pytest.fixture
def bob(app: Flask) -> Api:
    api = Api(app.test_client())
    api.register("bob@example.com")
    return api


def confirm_in_browser(page: Any, server: "LiveServer", email: str) -> None:
    """In a Playwright page that just signed up ``email``: once the page says to check the inbox,
    open the link the mail holds (made with the app's own token function) and press its button."""
    from playwright.sync_api import expect

    expect(page.locator("#check-inbox")).to_be_visible()
    page.goto(f"{server.url}{signup_link(server.app, email)}")
    page.click("#confirm-signup")


class LiveServer:
    """The app served by a threaded Werkzeug server on a free loopback port (WebSocket via simple-websocket)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-server", daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def live_server_factory() -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(app: Flask) -> LiveServer:
        srv = LiveServer(app).__enter__()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.__exit__()
