"""Sign-up does not tell whether an email has an account (issue 11, item 8): every well-formed sign-up
answers the same, what differs goes by mail to the address (a real Celery worker and an SMTP sink on
loopback), and an account logs in only once its link was followed."""

from __future__ import annotations

import hashlib
import re
import statistics
import time
import uuid
from dataclasses import replace
from typing import Any

import redis
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from alerts.signup import MAX_AGE_S, PATH, SALT, password_fingerprint, signup_token
from events import models
from events.settings import Settings
from tests.alerts.conftest import SmtpServer, smtp_server, wait_for  # noqa: F401 (fixture)
from tests.alerts.test_pipeline import queue  # noqa: F401 (fixture)
from tests.web.conftest import Api, make_app, signup_link
from tests.web.test_channel_security import mails_to, stack  # noqa: F401 (fixture)
from web.store import users

PASSWORD = "correct horse battery"
LINK = re.compile(r"(http://tb\.test(/register/confirm/[A-Za-z0-9_.\-]+))")
NONCE = re.compile(r"nonce-[A-Za-z0-9_\-+/=]+")
SIGNED = re.compile(r'"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"')  # a CSRF token: signed, timed


def sessions(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["tickerbell_sessions"]


def owner(app: Flask, email: str = "owner@example.com") -> int:
    """A confirmed account, as `tickerbell create-user` makes it."""
    with sessions(app)() as s:
        return users.register(s, email, PASSWORD, confirmed=True).id


def sign_up(app: Flask, email: str, password: str = "another password 1") -> Any:
    api = Api(app.test_client())
    resp = api.post("/api/auth/register", {"email": email, "password": password})
    assert api.get("/api/me").status_code == 401  # nobody is logged in by signing up
    return resp


SESSION = re.compile(r"^session=[^;]+")
BY_COUNT = ("X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")  # the client's count, not the email


def comparable(resp: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers, with what differs between any two responses blanked: the CSP
    nonce, the session cookie's value (each client has its own CSRF token) and the rate-limit
    numbers (one more request counted)."""
    headers = sorted((k, "N" if k in BY_COUNT else SESSION.sub("session=S", NONCE.sub("nonce-X", v)))
                     for k, v in resp.headers.items())
    return resp.status_code, resp.get_data(), headers


def csrf_of(page: Any) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]


def test_a_new_and_a_taken_email_get_the_same_answer_in_the_same_time(base_settings: Settings, database_url: str) -> None:
    app = make_app(replace(base_settings, database_url=database_url), SIGNUP_LIMIT="1000/hour")
    owner(app)
    new = sign_up(app, "newcomer@example.com")
    taken = sign_up(app, "Owner@Example.com")
    assert new.status_code == 202 and "check your inbox" in new.get_json()["message"]
    assert comparable(new) == comparable(taken)
    assert "remember_token" not in new.headers.get("Set-Cookie", "")
    # the page too: the same "check your inbox" page, whichever the email
    pages = []
    for email in ("page-new@example.com", "owner@example.com"):
        client = app.test_client()
        csrf = csrf_of(client.get("/register"))
        resp = client.post("/register", data={"email": email, "password": PASSWORD, "csrf_token": csrf})
        assert resp.status_code == 200 and "Check your inbox" in resp.get_data(as_text=True)
        pages.append(SIGNED.sub('"T"', NONCE.sub("", resp.get_data(as_text=True).replace(email, "EMAIL"))))
        assert client.get("/api/me").status_code == 401
    assert pages[0] == pages[1]
    # timing: both paths hash a password; the median of several tries each, within a generous factor
    new_s, taken_s = [], []
    for i in range(7):
        started = time.perf_counter()
        assert sign_up(app, f"timing-{i}@example.com").status_code == 202
        new_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert sign_up(app, "owner@example.com").status_code == 202
        taken_s.append(time.perf_counter() - started)
    ratio = statistics.median(new_s) / statistics.median(taken_s)
    assert 1 / 3 < ratio < 3, (new_s, taken_s)
    # the taken email's account is as it was: its password did not change
    assert Api(app.test_client()).post("/api/auth/login", {"email": "owner@example.com",
                                                           "password": PASSWORD}).status_code == 200
    # malformed input is still told apart (that says nothing about accounts)
    assert sign_up(app, "not-an-email", "short").status_code == 422


def test_the_owner_of_a_taken_email_gets_a_notice_and_a_new_email_its_link(
        stack, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    app, settings, worker = stack
    owner(app)
    assert sign_up(app, "owner@example.com").status_code == 202
    assert sign_up(app, "owner@example.com").status_code == 202  # again: no second notice within 10 minutes
    assert sign_up(app, "fresh@example.com", PASSWORD).status_code == 202
    # one worker process, tasks in order: once the new address has its link, both owner tasks ran
    wait_for(lambda: len(mails_to(smtp_server, "fresh@example.com")) == 1, timeout_s=45,
             what=f"the sign-up link (worker log: {worker.output()})")
    [notice] = mails_to(smtp_server, "owner@example.com")
    text = notice.get_body(("plain",)).get_content()
    assert "tried to sign up" in notice["Subject"] and "http://tb.test/login" in text
    assert "/register/confirm/" not in text  # the owner's account needs no link, and gets none
    [mail] = mails_to(smtp_server, "fresh@example.com")
    link, path = LINK.search(mail.get_body(("plain",)).get_content()).groups()  # type: ignore[union-attr]
    assert "confirm" in mail["Subject"].lower()

    # a GET (a mail scanner) shows a button and confirms nothing; the POST confirms and logs in
    reader = app.test_client()
    page = reader.get(path)
    assert page.status_code == 200 and b"fresh@example.com" in page.data and b"confirm-signup" in page.data
    assert Api(app.test_client()).post("/api/auth/login", {"email": "fresh@example.com",
                                                           "password": PASSWORD}).status_code == 403
    done = reader.post(path, data={"csrf_token": csrf_of(page)})
    assert done.status_code == 302 and done.location.endswith("/dashboard")
    assert reader.get("/api/me").get_json()["email"] == "fresh@example.com"
    # once: the same link again logs nobody in
    again = app.test_client()
    page = again.get(path)
    assert page.status_code == 400 and b"used already" in page.data
    csrf = again.get("/api/csrf").get_json()["csrf_token"]
    assert again.post(path, data={"csrf_token": csrf}).status_code == 400
    assert again.get("/api/me").status_code == 401
    assert link.startswith(f"http://tb.test{PATH}")


def test_an_unconfirmed_account_cannot_log_in_and_its_login_mails_the_link_again(
        stack, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    app, settings, worker = stack
    assert sign_up(app, "late@example.com", PASSWORD).status_code == 202
    wait_for(lambda: len(mails_to(smtp_server, "late@example.com")) == 1, timeout_s=45,
             what=f"the sign-up link (worker log: {worker.output()})")
    api = Api(app.test_client())
    wrong = api.post("/api/auth/login", {"email": "late@example.com", "password": "wrong password"})
    assert wrong.status_code == 401 and "confirm" not in wrong.get_json()["message"]  # no hint without the password
    refused = api.post("/api/auth/login", {"email": "late@example.com", "password": PASSWORD})
    assert refused.status_code == 403 and refused.get_json()["reason"] == "email_unconfirmed"
    assert "confirm your email first" in refused.get_json()["message"]
    assert api.get("/api/me").status_code == 401
    token = api.post("/api/auth/token", {"email": "late@example.com", "password": PASSWORD, "name": "cli"})
    assert token.status_code == 403  # no bearer token either
    page = app.test_client()
    csrf = csrf_of(page.get("/login"))
    form = page.post("/login", data={"email": "late@example.com", "password": PASSWORD, "csrf_token": csrf})
    assert form.status_code == 403 and "Confirm your email first" in form.get_data(as_text=True)
    # those logins came within 10 minutes of the first mail: none mailed again (the sentinel sign-up
    # after them is mailed, so the worker has run their tasks)
    assert sign_up(app, "sentinel@example.com", PASSWORD).status_code == 202
    wait_for(lambda: len(mails_to(smtp_server, "sentinel@example.com")) == 1, timeout_s=45, what="the sentinel link")
    assert len(mails_to(smtp_server, "late@example.com")) == 1
    # ten minutes later (the worker's window, removed here) a login sends the link again
    digest = hashlib.sha256(b"late@example.com").hexdigest()
    r = redis.Redis.from_url(settings.redis_url)
    assert r.delete(f"tickerbell:{settings.kafka_topic_prefix}signup-link:{digest}") == 1
    assert api.post("/api/auth/login", {"email": "late@example.com", "password": PASSWORD}).status_code == 403
    wait_for(lambda: len(mails_to(smtp_server, "late@example.com")) == 2, timeout_s=45, what="the link again")
    path = LINK.search(mails_to(smtp_server, "late@example.com")[1].get_body(("plain",)).get_content()).group(2)  # type: ignore[union-attr]
    assert api.get(path).status_code == 200
    assert api.post(path).status_code == 302
    assert api.get("/api/me").get_json()["email"] == "late@example.com"


class _SignedTwoDaysAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - MAX_AGE_S - 60


def test_the_link_expires_and_is_bound_to_its_account_email_and_sign_up(sqlite_app: Flask) -> None:
    app = sqlite_app
    assert sign_up(app, "dora@example.com", PASSWORD).status_code == 202
    key = app.extensions["tickerbell_settings"].secret_key.get()
    with sessions(app)() as s:
        user = s.query(models.User).filter_by(email="dora@example.com").one()
        assert user.email_confirmed_at is None
        user_id, first_hash = user.id, user.password_hash
    client = Api(app.test_client())

    def refused(path: str, why: str) -> None:
        page = client.get(path)
        assert page.status_code == 400 and why in page.get_data(as_text=True), page.get_data(as_text=True)
        assert client.post(path).status_code == 400
        assert client.get("/api/me").status_code == 401

    expired = URLSafeTimedSerializer(key, salt=SALT, signer=_SignedTwoDaysAgo).dumps(
        {"u": user_id, "a": "dora@example.com", "p": password_fingerprint(first_hash)})
    refused(PATH + expired, "expired")
    refused(PATH + signup_token(key, user_id, "other@example.com", first_hash), "no longer pending")
    refused(PATH + signup_token(f"another-key-{uuid.uuid4().hex}", user_id, "dora@example.com", first_hash), "not valid")
    first = signup_link(app, "dora@example.com")
    # a second sign-up of the still unconfirmed email takes over: the first link confirms nothing
    assert sign_up(app, "dora@example.com", "the second password").status_code == 202
    refused(first, "no longer pending")
    assert client.post("/api/auth/login", {"email": "dora@example.com", "password": PASSWORD}).status_code == 401
    second = signup_link(app, "dora@example.com")
    assert client.get(second).status_code == 200
    assert client.post(second).status_code == 302
    assert client.get("/api/me").get_json()["id"] == user_id
    refused_again = Api(app.test_client())
    assert refused_again.post(second).status_code == 400


def test_operator_accounts_are_confirmed(sqlite_app: Flask) -> None:
    from web import admin

    user_id, password = admin.create_user(sessions(sqlite_app), "ops@example.com", None)
    api = Api(sqlite_app.test_client())
    assert api.post("/api/auth/login", {"email": "ops@example.com", "password": password}).status_code == 200
    assert api.get("/api/me").get_json()["id"] == user_id
