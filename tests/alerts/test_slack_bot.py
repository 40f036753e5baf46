"""Slack with a bot token against a loopback server that speaks Slack's Web API (chat.postMessage, chat.update)."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, Iterator

import pytest

from alerts.slack_bot import post_message, update_message, valid_token

TOKEN = "xoxb-1234-5678-abcdefghijkl"


class FakeSlack:
    """Messages by (channel, ts); ``fail`` = Slack error codes (or HTTP statuses) to answer in turn."""

    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.fail: list[str | int] = []
        self.lock = threading.Lock()
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def handler(slack: FakeSlack) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            method = self.path.rsplit("/", 1)[-1]
            status, headers, answer = 200, {}, {"ok": True}
            with slack.lock:
                slack.calls.append((method, body, self.headers.get("authorization", "")))
                failure = slack.fail.pop(0) if slack.fail else None
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    answer = {"ok": False, "error": "invalid_auth"}
                elif isinstance(failure, int):
                    status, headers, answer = failure, {"retry-after": "3"}, {"ok": False, "error": "ratelimited"}
                elif failure:
                    answer = {"ok": False, "error": failure}
                elif method == "chat.postMessage":
                    ts = f"1700000000.{len(slack.messages):06d}"
                    slack.messages[("C123", ts)] = {"text": body["text"], "blocks": body.get("blocks")}
                    answer = {"ok": True, "channel": "C123", "ts": ts}
                elif method == "chat.update":
                    key = (body["channel"], body["ts"])
                    if key not in slack.messages:
                        answer = {"ok": False, "error": "message_not_found"}
                    else:
                        slack.messages[key] = {"text": body["text"], "blocks": body.get("blocks")}
                        answer = {"ok": True, "channel": body["channel"], "ts": body["ts"]}
            data = json.dumps(answer).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(fake))
    server.daemon_threads = True
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def test_post_then_resolve_updates_the_same_message(slack: FakeSlack) -> None:
    posted = post_message(TOKEN, "#alerts", "AAPL up 1.71 % in 1 min", [{"type": "section"}],
                          allow_private=True, api_base=slack.base)
    assert posted.outcome.ok, posted.outcome.error
    assert (posted.channel, posted.ts) in slack.messages
    assert posted.channel and posted.ts
    updated = update_message(TOKEN, posted.channel, posted.ts, "Resolved: AAPL back under 0.2 %",
                             allow_private=True, api_base=slack.base)
    assert updated.outcome.ok
    assert len(slack.messages) == 1
    assert slack.messages[(posted.channel, posted.ts)]["text"] == "Resolved: AAPL back under 0.2 %"
    # a redelivered resolve updates to the same content: still one message, same text
    again = update_message(TOKEN, posted.channel, posted.ts, "Resolved: AAPL back under 0.2 %",
                           allow_private=True, api_base=slack.base)
    assert again.outcome.ok and len(slack.messages) == 1
    assert [c[0] for c in slack.calls] == ["chat.postMessage", "chat.update", "chat.update"]
    assert all(c[2] == f"Bearer {TOKEN}" for c in slack.calls)


def test_a_revoked_token_is_gone_not_retried(slack: FakeSlack) -> None:
    posted = post_message("xoxb-revoked-000000", "#alerts", "t", allow_private=True, api_base=slack.base)
    assert not posted.outcome.ok and posted.outcome.gone and not posted.outcome.retryable
    assert "invalid_auth" in (posted.outcome.error or "")


def test_rate_limits_retry_after_and_unknown_channels_fail_for_good(slack: FakeSlack) -> None:
    slack.fail = [429, "channel_not_found"]
    limited = post_message(TOKEN, "#alerts", "t", allow_private=True, api_base=slack.base)
    assert not limited.outcome.ok and limited.outcome.retryable
    assert limited.outcome.retry_after_s == pytest.approx(3, abs=1)
    missing = post_message(TOKEN, "#nowhere", "t", allow_private=True, api_base=slack.base)
    assert not missing.outcome.ok and not missing.outcome.retryable and not missing.outcome.gone
    assert "channel_not_found" in (missing.outcome.error or "")
    assert slack.messages == {}


def test_the_guard_refuses_a_loopback_api_without_the_override(slack: FakeSlack) -> None:
    posted = post_message(TOKEN, "#alerts", "t", allow_private=False, api_base=slack.base)
    assert not posted.outcome.ok and not posted.outcome.retryable
    assert "loopback" in (posted.outcome.error or "")
    assert slack.calls == []


@pytest.mark.parametrize("token, ok", [(TOKEN, True), ("xoxp-user-token-123", False), ("xoxb-", False),
                                       ("xoxb-" + "a" * 300, False), ("xoxb-abc\ndef-ghi", False), (None, False)])
def test_token_shape(token: Any, ok: bool) -> None:
    assert valid_token(token) is ok
