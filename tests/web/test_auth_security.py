"""Accounts and sessions against the security review (issue 11, items 2, 3, 5 and 8): sessions end at
logout and password change, the remember-me cookie is short-lived and flagged, failed logins back off per
account and per client (in Redis) without locking the owner out, sign-ups and test-sends are limited, a
disabled account answers as slowly as any other, /readyz names no internals, pages carry security headers."""

from __future__ import annotations

import io
import re
import socket
import time
import uuid
from dataclasses import replace
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie
from typing import Any

import pytest
import redis
from flask import Flask

from events import models
from events.db import upgrade
from events.settings import Settings
from tests.web.conftest import Api, confirm_in_browser, make_app
from web.store import users

PASSWORD = "correct horse battery"


@pytest.fixture
def db_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    upgrade(url)
    return url


def proxied_app(base_settings: Settings, db_url: str, **config: Any) -> Flask:
    """Behind one trusted proxy (Heroku's router): the client address comes from X-Forwarded-For."""
    return make_app(replace(base_settings, database_url=db_url, trust_proxy_hops=1), **config)


@pytest.fixture
def app(base_settings: Settings, db_url: str) -> Flask:
    return proxied_app(base_settings, db_url)


@pytest.fixture
def any_db_app(base_settings: Settings, database_url: str) -> Flask:
    """On SQLite and on PostgreSQL (the nonce column of both)."""
    return proxied_app(base_settings, database_url)


class Client(Api):
    """An API client at one address, as the proxy reports it."""

    def __init__(self, app: Flask, addr: str) -> None:
        self.addr = addr
        client = app.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = addr
        super().__init__(client)

    def login(self, email: str, password: str = PASSWORD) -> int:
        return self.post("/api/auth/login", {"email": email, "password": password}).status_code


def sessions(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["tickerbell_sessions"]


def registered(app: Flask, email: str, addr: str = "10.0.0.7") -> Client:
    c = Client(app, addr)
    c.register(email)
    return c


# --- sessions and the remember-me cookie ----------------------------------------------------------


def remember_cookie(resp) -> SimpleCookie:  # type: ignore[no-untyped-def]
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getlist("Set-Cookie"):
        if header.startswith("remember_token="):
            jar.load(header)
    assert "remember_token" in jar, resp.headers.getlist("Set-Cookie")
    return jar


def form_login(client, email: str, password: str = PASSWORD, remember: bool = True):  # type: ignore[no-untyped-def]
    csrf = client.get("/api/csrf").get_json()["csrf_token"]
    data = {"email": email, "password": password, "csrf_token": csrf, **({"remember": "1"} if remember else {})}
    return client.post("/login", data=data)


def test_remember_cookie_is_flagged_short_and_new_at_every_login(base_settings: Settings, db_url: str) -> None:
    app = make_app(replace(base_settings, database_url=db_url, public_url="https://tickerbell.example.com"))
    with sessions(app)() as s:
        users.register(s, "carol@example.com", PASSWORD, confirmed=True)
    cookies = []
    for _ in range(2):
        resp = form_login(app.test_client(), "carol@example.com")
        assert resp.status_code == 302
        morsel = remember_cookie(resp)["remember_token"]
        assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Lax"
        lifetime_s = parsedate_to_datetime(morsel["expires"]).timestamp() - time.time()
        assert 13 * 86_400 < lifetime_s <= 14 * 86_400 + 5
        cookies.append(morsel.value)
    assert cookies[0] != cookies[1]


def test_logout_ends_every_session_and_remember_cookie(any_db_app: Flask) -> None:
    app = any_db_app
    with sessions(app)() as s:
        users.register(s, "dan@example.com", PASSWORD, confirmed=True)
    laptop, phone = app.test_client(), app.test_client()
    remember = remember_cookie(form_login(laptop, "dan@example.com"))["remember_token"].value
    assert form_login(phone, "dan@example.com", remember=False).status_code == 302
    session_cookie = phone.get_cookie("session").value
    assert phone.get("/api/me").status_code == 200
    # the cookie alone (a new browser, no session) logs in before the logout ...
    thief = app.test_client()
    thief.set_cookie("remember_token", remember)
    assert thief.get("/api/me").status_code == 200
    laptop_api = Api(laptop)
    assert laptop_api.post("/api/auth/logout").status_code == 200
    # ... and neither it, nor the other device's session, nor a copy of that session does after it
    replay = app.test_client()
    replay.set_cookie("remember_token", remember)
    assert replay.get("/api/me").status_code == 401
    assert phone.get("/api/me").status_code == 401
    copy = app.test_client()
    copy.set_cookie("session", session_cookie)
    assert copy.get("/api/me").status_code == 401
    # logging in again works
    assert form_login(app.test_client(), "dan@example.com").status_code == 302


def test_page_logout_rotates_the_nonce_too(app: Flask) -> None:
    with sessions(app)() as s:
        users.register(s, "dora@example.com", PASSWORD, confirmed=True)
    browser = app.test_client()
    remember = remember_cookie(form_login(browser, "dora@example.com"))["remember_token"].value
    csrf = browser.get("/api/csrf").get_json()["csrf_token"]
    assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("remember_token", remember)
    assert replay.get("/api/me").status_code == 401


def test_password_change_ends_other_sessions_and_keeps_this_one(any_db_app: Flask) -> None:
    app = any_db_app
    me = registered(app, "erin@example.com")
    other = Client(app, "10.0.0.8")
    assert other.login("erin@example.com") == 200
    wrong = me.post("/api/auth/password", {"current_password": "not it at all", "new_password": "new password 123"})
    assert wrong.status_code == 403 and wrong.get_json()["fields"]["current_password"]
    short = me.post("/api/auth/password", {"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 422 and "new_password" in short.get_json()["fields"]
    assert me.post("/api/auth/password", {"current_password": PASSWORD, "new_password": "new password 123"}).status_code == 200
    assert me.get("/api/me").status_code == 200
    assert other.get("/api/me").status_code == 401
    fresh = Client(app, "10.0.0.7")
    assert fresh.login("erin@example.com") == 401
    assert fresh.login("erin@example.com", "new password 123") == 200


def test_a_session_without_the_nonce_is_refused(app: Flask) -> None:
    """A session cookie in the old form (the bare user id), validly signed, logs nobody in."""
    from flask.sessions import SecureCookieSessionInterface

    registered(app, "fay@example.com")
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    forged = app.test_client()
    forged.set_cookie("session", serializer.dumps({"_user_id": "1", "_fresh": True}))
    assert forged.get("/api/me").status_code == 401


# --- failed logins ------------------------------------------------------------------------------


def test_failed_logins_back_off_per_account_and_client(app: Flask) -> None:
    registered(app, "gus@example.com", "10.0.0.7")
    attacker = Client(app, "10.0.0.66")
    codes = [attacker.login("gus@example.com", f"guess {i}") for i in range(6)]
    assert codes == [401] * 5 + [429]
    refused = attacker.post("/api/auth/login", {"email": "gus@example.com", "password": PASSWORD})
    assert refused.status_code == 429
    # a back-off, not a 15-minute lockout: the first tier is a one-minute window
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.get_json()["retry_after_s"] == int(refused.headers["Retry-After"])
    # the page and the token endpoint share the count
    page = app.test_client()
    page.environ_base["HTTP_X_FORWARDED_FOR"] = "10.0.0.66"
    assert form_login(page, "gus@example.com").status_code == 429
    token = attacker.client.post("/api/auth/token", json={"email": "gus@example.com", "password": PASSWORD})
    assert token.status_code == 429
    # the owner, elsewhere, is not locked out
    assert Client(app, "10.0.0.7").login("gus@example.com") == 200


def test_owner_logs_in_while_an_attacker_sprays_random_emails(app: Flask) -> None:
    registered(app, "hal@example.com", "10.0.0.7")
    attacker = Client(app, "10.0.0.66")
    codes = [attacker.login(f"{uuid.uuid4().hex[:8]}@example.com", "guess") for _ in range(25)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes
    # the owner (known address) and someone at an address that never logged in both get in
    assert Client(app, "10.0.0.7").login("hal@example.com") == 200
    registered(app, "ivy@example.com", "10.0.0.9")
    assert Client(app, "10.0.0.10").login("ivy@example.com") == 200


def test_guesses_spread_over_many_addresses_are_limited_per_account(app: Flask) -> None:
    registered(app, "jay@example.com", "10.0.0.7")
    codes = [Client(app, f"10.1.{i // 250}.{i % 250}").login("jay@example.com", f"guess {i}") for i in range(22)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes
    # another new address is held back even with the right password (it could be the attacker) ...
    assert Client(app, "10.2.0.1").login("jay@example.com") == 429
    # ... but the owner's address, which logged in to the account before, is not
    assert Client(app, "10.0.0.7").login("jay@example.com") == 200


def test_a_forged_forwarded_for_does_not_escape_the_limit(app: Flask) -> None:
    """Only the hop the trusted proxy appended counts: whatever the client put before it is ignored."""
    registered(app, "kim@example.com", "10.0.0.7")
    codes = []
    for i in range(6):
        c = Client(app, f"203.0.113.{i}, 10.0.0.66")
        codes.append(c.login("kim@example.com", "guess"))
    assert codes == [401] * 5 + [429]


def test_the_counts_live_in_redis_across_workers(base_settings: Settings, db_url: str) -> None:
    """Two app instances (two gunicorn workers or dynos) on one Redis see the same failures."""
    prefix = f"tbtest:{uuid.uuid4().hex[:10]}:"
    first = proxied_app(base_settings, db_url, REDIS_PREFIX=prefix)
    registered(first, "lee@example.com")
    attacker = Client(first, "10.0.0.66")
    assert [attacker.login("lee@example.com", "guess") for _ in range(5)] == [401] * 5
    second = proxied_app(base_settings, db_url, REDIS_PREFIX=prefix)
    assert Client(second, "10.0.0.66").login("lee@example.com") == 429
    r = redis.Redis.from_url(base_settings.redis_url)
    assert list(r.scan_iter(f"*{prefix}account:*", count=1000)), "the failure counts are Redis keys"


# --- sign-ups and test-sends ---------------------------------------------------------------------


def test_signups_are_limited_per_client(app: Flask) -> None:
    codes = [Client(app, "10.0.0.50").post("/api/auth/register", {"email": f"s{i}@example.com",
                                                                 "password": PASSWORD}).status_code
             for i in range(6)]
    assert codes == [202] * 5 + [429]
    page = app.test_client()
    page.environ_base["HTTP_X_FORWARDED_FOR"] = "10.0.0.50"
    csrf = page.get("/api/csrf").get_json()["csrf_token"]
    form = page.post("/register", data={"email": "s9@example.com", "password": PASSWORD, "csrf_token": csrf})
    assert form.status_code == 429 and b"Too many sign-ups" in form.data
    assert page.get("/register").status_code == 200  # the form itself still shows
    assert Client(app, "10.0.0.51").post("/api/auth/register", {"email": "t@example.com",
                                                               "password": PASSWORD}).status_code == 202


def closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_test_sends_and_confirmation_mails_are_limited_per_user(base_settings: Settings, db_url: str) -> None:
    # mail goes to a closed port on loopback, tasks to a queue no worker reads: the count is what is tested
    settings = replace(base_settings, database_url=db_url, trust_proxy_hops=1,
                       smtp_url=type(base_settings.smtp_url)(f"smtp://127.0.0.1:{closed_loopback_port()}"))
    queue = f"tbtest-unread-{uuid.uuid4().hex[:10]}"
    app = make_app(settings, ALERTS_QUEUE=queue)
    alice = registered(app, "alice@example.com")
    channel = alice.post("/api/channels", {"kind": "email", "name": "Me", "target": "alice@example.com"})
    assert channel.status_code == 201, channel.get_json()
    test_url = f"/api/channels/{channel.get_json()['id']}/test"
    confirm_url = f"/api/channels/{channel.get_json()['id']}/confirmation"
    codes = [alice.post(test_url).status_code for _ in range(3)] + [alice.post(confirm_url).status_code
                                                                     for _ in range(2)]
    assert 429 not in codes, codes
    assert alice.post(test_url).status_code == 429
    assert alice.post(confirm_url).status_code == 429
    # per user: another user from the same address still may
    bob = registered(app, "bob@example.com")
    other = bob.post("/api/channels", {"kind": "email", "name": "Me", "target": "bob@example.com"}).get_json()
    assert bob.post(f"/api/channels/{other['id']}/test").status_code != 429
    redis.Redis.from_url(base_settings.redis_url).delete(queue)


# --- enumeration -----------------------------------------------------------------------------------


def test_a_disabled_account_answers_as_slowly_as_a_wrong_password(app: Flask) -> None:
    with sessions(app)() as s:
        users.register(s, "off@example.com", PASSWORD, confirmed=True)
        users.register(s, "on@example.com", PASSWORD, confirmed=True)
        s.get(models.User, 1).is_active = False
        s.commit()

        def timed(email: str) -> float:
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                assert users.authenticate(s, email, "wrong password") is None
                best = min(best, time.perf_counter() - start)
            return best

        disabled, active, unknown = timed("off@example.com"), timed("on@example.com"), timed("nobody@example.com")
    assert disabled > active / 3 and unknown > active / 3, (disabled, active, unknown)
    assert users.authenticate(sessions(app)(), "off@example.com", PASSWORD) is None


# --- readiness and headers ---------------------------------------------------------------------------


def test_readyz_names_the_failed_dependency_without_its_error_text(base_settings: Settings, db_url: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    port = closed_loopback_port()
    app = make_app(replace(base_settings, database_url=db_url, redis_url=f"redis://127.0.0.1:{port}/0"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    checks = resp.get_json()["checks"]
    assert checks["redis"] == {"ok": False, "error": "unavailable"}
    assert checks["database"]["ok"] is True
    text = resp.get_data(as_text=True)
    for internal in (str(port), "127.0.0.1", "Error", "refused"):
        assert internal not in text
    assert any(str(port) in (r.exc_text or "") or str(port) in r.getMessage() for r in caplog.records), \
        "the reason goes to the log"


def test_pages_carry_security_headers(app: Flask) -> None:
    page = app.test_client().get("/login", headers={"X-Forwarded-Proto": "https"})
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp and "object-src 'none'" in csp
    assert "script-src 'self' 'nonce-" in csp and "unsafe" not in csp.split("script-src")[1].split(";")[0]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    # HSTS only over HTTPS (the proxy says which); nosniff on the API too
    plain = app.test_client().get("/login")
    assert "Strict-Transport-Security" not in plain.headers
    assert app.test_client().get("/api/csrf").headers["X-Content-Type-Options"] == "nosniff"


# --- create-user --------------------------------------------------------------------------------------


def run_admin(monkeypatch: pytest.MonkeyPatch, db_url: str, argv: list[str], stdin: str = "",
              **env: str) -> tuple[int, str, str]:
    import contextlib

    from web import admin

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("TICKERBELL_PASSWORD", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = admin.main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_create_user_never_takes_the_password_from_argv(monkeypatch: pytest.MonkeyPatch, db_url: str,
                                                        tmp_path) -> None:  # type: ignore[no-untyped-def]
    from events.db import session_factory
    from events.settings import load_settings

    rc, _, err = run_admin(monkeypatch, db_url, ["create-user", "a@example.com", "--password", "on the cmdline"])
    assert rc == 2 and "--password is not accepted" in err and "TICKERBELL_PASSWORD" in err
    rc, out, _ = run_admin(monkeypatch, db_url, ["create-user", "b@example.com"],
                           TICKERBELL_PASSWORD="from the environment")
    assert rc == 0 and "from the environment" not in out
    secret_file = tmp_path / "pw"
    secret_file.write_text("from a file 123\n")
    rc, out, _ = run_admin(monkeypatch, db_url, ["create-user", "c@example.com", "--password-file", str(secret_file)])
    assert rc == 0 and "password" not in out
    rc, _, _ = run_admin(monkeypatch, db_url, ["create-user", "d@example.com", "--password-file", "-"],
                         stdin="from stdin 12345\n")
    assert rc == 0
    sessions_ = session_factory(load_settings({"DATABASE_URL": db_url}))
    with sessions_() as s:
        for email, password in [("b@example.com", "from the environment"), ("c@example.com", "from a file 123"),
                                ("d@example.com", "from stdin 12345")]:
            assert users.authenticate(s, email, password) is not None, email
        assert users.authenticate(s, "a@example.com", "on the cmdline") is None


def test_pages_run_their_own_scripts_and_nothing_injected(base_settings: Settings, db_url: str,
                                                          live_server_factory) -> None:  # type: ignore[no-untyped-def]
    """In a real browser under the CSP: every page's inline script (with the nonce) runs without a
    violation, and a script injected without the nonce does not run."""
    from playwright.sync_api import expect, sync_playwright

    server = live_server_factory(make_app(replace(base_settings, database_url=db_url)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.set_default_timeout(20_000)
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{server.url}/register")
        page.fill("#email", "csp@example.com")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        confirm_in_browser(page, server, "csp@example.com")  # the mailed link, and its button
        expect(page).to_have_url(re.compile(r"/dashboard$"))
        for path in ("/rules", "/alerts", "/overview", "/account"):
            page.goto(f"{server.url}{path}")
            page.wait_for_load_state("networkidle")
        # each of those pages has an inline script: a missing nonce would be a violation below
        try:
            page.add_script_tag(content="window.injected = true")
        except Exception:  # noqa: BLE001 - a blocked script may also surface as an error here
            pass
        assert page.evaluate("() => window.injected === undefined")
        injected = [v for v in violations if "inline" in v]
        assert len(injected) == 1 and len(violations) == 1, violations
        browser.close()
