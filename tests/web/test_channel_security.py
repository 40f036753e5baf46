"""Email channels confirm their address before receiving anything; test sends run on a real worker
(issue 11, findings 4 and 6). A Celery worker subprocess, an SMTP sink and HTTP receivers on loopback."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask

from events.db import upgrade
from events.settings import Secret, Settings
from tests.alerts.conftest import SmtpServer, smtp_server, wait_for  # noqa: F401 (fixture)
from tests.alerts.procs import Proc, process_env
from tests.alerts.test_pipeline import queue  # noqa: F401 (fixture: a Celery queue of this test's own)
from tests.web.conftest import Api, make_app

LINK = re.compile(r"(http://tb\.test(/channels/confirm/[A-Za-z0-9_.\-]+))")


@pytest.fixture
def stack(base_settings: Settings, smtp_server: SmtpServer, tmp_path: Path,  # noqa: F811
          queue: str) -> Iterator[tuple[Flask, Settings, Proc]]:  # noqa: F811
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    settings = replace(base_settings, database_url=url, smtp_url=Secret(smtp_server.url), public_url="http://tb.test",
                       allow_private_webhooks=True, var_dir=tmp_path, kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
                       secret_key=Secret(f"test-only-{uuid.uuid4().hex}{uuid.uuid4().hex}"))
    app = make_app(settings, ALERTS_QUEUE=queue)
    env = process_env(settings, ALERTS_QUEUE=queue, ALERTS_HTTP_TIMEOUT_S="2", ALERTS_SWEEP_INTERVAL_S="0.5",
                      SECRET_KEY=settings.secret_key.get())
    # one process: tasks run in the order they were queued (the throttle test relies on it)
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log")
    yield app, settings, worker
    worker.stop()


def mails_to(smtp: SmtpServer, address: str) -> list:  # type: ignore[type-arg]
    return [m for m in smtp.messages if m["To"] == address]


def poll_delivery(api: Api, poll: str, worker: Proc, timeout_s: float = 45) -> dict:  # type: ignore[type-arg]
    seen: dict = {}  # type: ignore[type-arg]

    def done() -> bool:
        seen.update(api.get(poll).get_json())
        return seen.get("status") not in ("pending", "sending")

    wait_for(done, timeout_s=timeout_s, what=f"the test delivery's outcome (worker log: {worker.output()})")
    return seen


def test_an_email_channel_receives_nothing_until_its_address_is_confirmed(
        stack, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    app, settings, worker = stack
    alice = Api(app.test_client())
    alice.register("alice@example.com")
    created = alice.post("/api/channels", {"kind": "email", "name": "Desk", "target": "desk@example.com"})
    assert created.status_code == 201 and created.get_json()["confirmed"] is False
    channel = created.get_json()["id"]
    # the only mail an unconfirmed address gets: the link, from the worker
    wait_for(lambda: len(mails_to(smtp_server, "desk@example.com")) == 1, timeout_s=45,
             what=f"the confirmation mail (worker log: {worker.output()})")
    [mail] = mails_to(smtp_server, "desk@example.com")
    text = mail.get_body(("plain",)).get_content()
    link, path = LINK.search(text).groups()  # type: ignore[union-attr]
    assert "confirm" in mail["Subject"].lower() and "Desk" in text
    refused = alice.post(f"/api/channels/{channel}/test")
    assert refused.status_code == 409 and "not confirmed" in refused.get_json()["message"]

    # whoever reads the mailbox confirms, logged in or not; a GET alone (a mail scanner) does not
    reader = app.test_client()
    page = reader.get(path)
    assert page.status_code == 200 and b"desk@example.com" in page.data
    assert alice.get(f"/api/channels/{channel}").get_json()["confirmed"] is False
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()  # type: ignore[union-attr]
    done = reader.post(path, data={"csrf_token": csrf})
    assert done.status_code == 200 and b"Address confirmed" in done.data
    assert alice.get(f"/api/channels/{channel}").get_json()["confirmed"] is True
    assert reader.get(path[:-3] + "xyz").status_code == 400  # a damaged link

    # now a test send is queued (202 at once) and the worker delivers it
    started = time.monotonic()
    queued = alice.post(f"/api/channels/{channel}/test")
    assert queued.status_code == 202 and time.monotonic() - started < 2.0
    outcome = poll_delivery(alice, queued.get_json()["poll"], worker)
    assert (outcome["status"], outcome["last_status_code"]) == ("delivered", 250)
    assert [m["Subject"] for m in mails_to(smtp_server, "desk@example.com")][1].startswith("[Tickerbell] TEST")

    # a new address starts over; the old link no longer confirms anything
    moved = alice.patch(f"/api/channels/{channel}", {"target": "other@example.com"}).get_json()
    assert moved["confirmed"] is False
    wait_for(lambda: len(mails_to(smtp_server, "other@example.com")) == 1, timeout_s=45, what="the second link")
    old = reader.get(path)
    assert old.status_code == 200
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', old.data).group(1).decode()  # type: ignore[union-attr]
    assert reader.post(path, data={"csrf_token": csrf}).status_code == 400
    assert alice.get(f"/api/channels/{channel}").get_json()["confirmed"] is False
    assert link.startswith("http://tb.test/channels/confirm/")


def test_an_address_gets_one_confirmation_mail_however_often_it_is_asked_for(
        stack, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    app, _, worker = stack
    mallory = Api(app.test_client())
    mallory.register("mallory@example.com")
    # the review's attack: many mails to someone else's address, here by re-creating and re-asking
    for _ in range(4):
        ch = mallory.post("/api/channels", {"kind": "email", "name": "x", "target": "victim@example.com"}).get_json()
        assert mallory.post(f"/api/channels/{ch['id']}/confirmation").status_code in (202, 429)
        assert mallory.delete(f"/api/channels/{ch['id']}").status_code == 204
    # a last, different address goes through the same queue after them all (one worker process)
    mallory.post("/api/channels", {"kind": "email", "name": "y", "target": "sentinel@example.com"})
    wait_for(lambda: mails_to(smtp_server, "sentinel@example.com"), timeout_s=45,
             what=f"the last confirmation mail (worker log: {worker.output()})")
    assert len(mails_to(smtp_server, "victim@example.com")) <= 1


def test_unconfirmed_addresses_per_user_are_capped(stack) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = stack
    bob = Api(app.test_client())
    bob.register("bob@example.com")
    codes = [bob.post("/api/channels", {"kind": "email", "name": f"m{i}", "target": f"v{i}@example.com"}).status_code
             for i in range(4)]
    assert codes == [201, 201, 201, 409]
    hook = bob.post("/api/channels", {"kind": "webhook", "name": "h", "target": "http://127.0.0.1:9/h"})
    assert hook.status_code == 201 and hook.get_json()["confirmed"] is True  # webhooks need no mail


def test_a_test_send_answers_at_once_and_a_dripping_receiver_is_cut_at_the_deadline(stack) -> None:  # type: ignore[no-untyped-def]
    app, _, worker = stack
    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)

    def drip() -> None:
        conns: list[socket.socket] = []
        started: set[int] = set()
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conns.append(conn)
                conn.settimeout(0.2)
                conn.recv(65536)
            except (socket.timeout, OSError):
                pass
            for c in conns:  # one byte of an endless header every 0.3 s: no read ever times out
                try:
                    c.sendall(b"x" if c.fileno() in started else b"HTTP/1.1 200 OK\r\nx-slow: ")
                    started.add(c.fileno())
                except OSError:
                    pass
            stop.wait(0.3)
        for c in conns:
            c.close()

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        carol = Api(app.test_client())
        carol.register("carol@example.com")
        ch = carol.post("/api/channels", {"kind": "webhook", "name": "slow",
                                          "target": f"http://127.0.0.1:{server.getsockname()[1]}/hook"}).get_json()
        started = time.monotonic()
        queued = carol.post(f"/api/channels/{ch['id']}/test")
        assert queued.status_code == 202 and time.monotonic() - started < 2.0  # the request does not wait
        outcome = poll_delivery(carol, queued.get_json()["poll"], worker)
        assert outcome["status"] == "failed" and "timeout" in outcome["last_error"]
        [attempt] = outcome["attempt_log"]
        assert attempt["duration_ms"] < 3_500  # ALERTS_HTTP_TIMEOUT_S=2: the whole send, not each read
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_the_demo_account_s_email_channel_is_confirmed(base_settings: Settings, tmp_path: Path) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import sessionmaker

    from events import models
    from events.db import make_engine
    from web.admin import seed_demo

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgrade(url)
    settings = replace(base_settings, database_url=url)
    sessions = sessionmaker(make_engine(url), expire_on_commit=False)
    seed_demo(settings, sessions)
    with sessions() as s:
        [channel] = s.scalars(select(models.Channel)).all()
        assert channel.kind == "email" and channel.confirmed_at is not None


def test_a_webhook_body_template_that_does_too_much_is_refused_on_save(sqlite_app: Flask) -> None:
    api = Api(sqlite_app.test_client())
    api.register("tpl@example.com")
    hostile = {"kind": "webhook", "name": "h", "target": "https://93.184.215.14/hook",
               "body_template": "{% for a in range(9999) %}{% for b in range(9999) %}{{ a }}{% endfor %}{% endfor %}"}
    resp = api.post("/api/channels", hostile)
    assert resp.status_code == 422 and "does too much" in resp.get_json()["fields"]["body_template"]
    fine = api.post("/api/channels", {**hostile, "body_template": '{"text": "{{ ticker }} {{ value }}"}'})
    assert fine.status_code == 201, fine.get_json()


def test_a_rule_message_that_does_too_much_or_does_not_parse_is_refused_on_save(sqlite_app: Flask) -> None:
    api = Api(sqlite_app.test_client())
    api.register("rules@example.com")
    rule = {"symbol": "AAPL", "condition": {"series": "price", "op": "greater_than", "value": 1}}
    for message, why in [("{{ ''|center(10**9) }}", "does too much"), ("{{ ticker ", "template error")]:
        resp = api.post("/api/rules", {**rule, "message": message})
        assert resp.status_code == 422 and why in resp.get_json()["fields"]["message"], resp.get_json()
    ok = api.post("/api/rules", {**rule, "message": "{{ ticker }} crossed {{ threshold }}"})
    assert ok.status_code == 201, ok.get_json()
