"""Apprise services through our address guard, deadline and outcomes, against a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from alerts import apprise_channel, netguard
from alerts.apprise_channel import AppriseURLError, parse_target, send_apprise
from alerts.transport import new_http_client
from tests.alerts.conftest import Receiver
from tests.alerts.rebinding import CHECKED_PUBLIC, REBIND_NAME, Rebinding, rebinding  # noqa: F401 (fixture)


# ntfy posts to the server's root with the topic in its JSON: a receiver's script is keyed by "/"
def ntfy_url(receiver: Receiver, topic: str = "tb-alerts") -> str:
    return f"ntfy://127.0.0.1:{receiver.port}/{topic}"


def test_ntfy_message_reaches_the_receiver_when_private_targets_are_allowed(receiver: Receiver) -> None:
    outcome = send_apprise(ntfy_url(receiver), "AAPL up 1.71 % in 1 min", "rule: at least 0.2 %",
                           allow_private=True, timeout_s=5)
    assert outcome.ok, outcome.error
    got = receiver.got()
    assert len(got) == 1
    assert got[0].path.startswith("/")
    sent = json.loads(got[0].body)
    assert sent["topic"] == "tb-alerts"
    assert sent["title"] == "AAPL up 1.71 % in 1 min"
    assert sent["message"] == "rule: at least 0.2 %"


def test_the_same_url_is_refused_without_the_operator_override(receiver: Receiver) -> None:
    outcome = send_apprise(ntfy_url(receiver), "t", "b", allow_private=False, timeout_s=5)
    assert not outcome.ok
    assert not outcome.retryable
    assert "loopback" in (outcome.error or "")
    assert receiver.got() == []


def test_a_name_that_resolves_to_loopback_is_refused(receiver: Receiver) -> None:
    outcome = send_apprise(f"ntfy://localhost:{receiver.port}/t", "t", "b", allow_private=False, timeout_s=5)
    assert not outcome.ok and not outcome.retryable
    assert "non-public" in (outcome.error or "")
    assert receiver.got() == []


def test_a_redirect_to_a_private_address_is_refused(receiver: Receiver) -> None:
    # the receiver (allowed as the first hop) redirects to a metadata address: never followed
    receiver.script["/"] = [(307, {"location": "http://169.254.169.254/latest/meta-data/"})]
    outcome = send_apprise(f"ntfy://127.0.0.1:{receiver.port}/t", "t", "b", allow_private=True, timeout_s=5)
    assert not outcome.ok and not outcome.retryable
    assert "metadata" in (outcome.error or "")


def test_server_errors_are_retryable_with_retry_after(receiver: Receiver) -> None:
    receiver.script["/"] = [(503, {"retry-after": "7"})]
    outcome = send_apprise(f"ntfy://127.0.0.1:{receiver.port}/t", "t", "b", allow_private=True, timeout_s=5)
    assert not outcome.ok and outcome.retryable
    assert outcome.status_code == 503
    assert outcome.retry_after_s == pytest.approx(7, abs=1)
    assert len(receiver.got()) == 1  # one attempt: the delivery log schedules the next, not Apprise


def test_client_errors_are_permanent(receiver: Receiver) -> None:
    receiver.script["/"] = [(403, {})]
    outcome = send_apprise(f"ntfy://127.0.0.1:{receiver.port}/t", "t", "b", allow_private=True, timeout_s=5)
    assert not outcome.ok and not outcome.retryable
    assert outcome.status_code == 403


def test_a_receiver_that_never_answers_ends_within_the_deadline() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)  # read nothing, answer nothing
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        outcome = send_apprise(f"ntfy://127.0.0.1:{listener.getsockname()[1]}/t", "t", "b",
                               allow_private=True, timeout_s=1.5)
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
    assert not outcome.ok and outcome.retryable
    assert took < 4.0, took
    assert held, "the send never connected: the deadline was not what ended it"


def test_other_threads_keep_requests_own_adapters(receiver: Receiver) -> None:
    # outside a send, requests is untouched: this goes to loopback without any guard
    answer = requests.get(receiver.url("/plain"), timeout=5)
    assert answer.status_code == 200
    assert [r.path for r in receiver.got()] == ["/plain"]


@pytest.mark.parametrize("url, message", [
    ("", "required"),
    ("mailto://user:pw@example.com", "not a supported service"),
    ("windows://", "not a supported service"),
    ("https://example.com/hook", "not a supported service"),
    ("tgram://", "not a valid Telegram URL"),
    ("ntfy://" + "a" * 3000, "longer than"),
])
def test_unusable_urls_are_refused_with_a_message(url: str, message: str) -> None:
    with pytest.raises(AppriseURLError, match=message):
        parse_target(url)
    outcome = send_apprise(url, "t", "b", allow_private=True, timeout_s=1)
    assert not outcome.ok and not outcome.retryable
    assert message in (outcome.error or "")


def test_the_display_url_masks_the_token() -> None:
    target = parse_target("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/987654321")
    assert target.service == "Telegram"
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in target.display_url


# --- DNS rebinding: Apprise's requests go through the guard's pinning (alerts.netguard.safe_request) -------


def test_a_rebinding_name_is_connected_at_the_public_address_that_was_checked(
        receiver: Receiver, rebinding: Rebinding) -> None:
    outcome = send_apprise(f"ntfy://{REBIND_NAME}:{receiver.port}/t", "t", "b", allow_private=False, timeout_s=5)
    assert not outcome.ok and outcome.retryable  # a network error: the test refused the public connect
    assert "ConnectError" in (outcome.error or ""), outcome.error
    assert rebinding.answers == [CHECKED_PUBLIC]  # resolved once, by the guard
    assert rebinding.connects == [(CHECKED_PUBLIC, receiver.port)]
    assert receiver.got() == []


def test_control_without_pinning_the_rebound_name_reaches_the_loopback_receiver(
        receiver: Receiver, rebinding: Rebinding, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: with the guard's ``_pinned`` disabled the same send reaches loopback."""
    monkeypatch.setattr(netguard, "_pinned", lambda url, target: (url, {}, urlsplit(url).netloc))
    with new_http_client() as client:  # not the process's pool: it keeps no connection of the unpinned send
        monkeypatch.setattr(apprise_channel, "http_client", lambda: client)
        outcome = send_apprise(f"ntfy://{REBIND_NAME}:{receiver.port}/t", "t", "b", allow_private=False,
                               timeout_s=5)
    assert outcome.ok, outcome.error
    assert rebinding.answers == [CHECKED_PUBLIC, "127.0.0.1"]
    assert rebinding.connects == [("127.0.0.1", receiver.port)]
    assert len(receiver.got()) == 1
