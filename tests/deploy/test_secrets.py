"""Secrets come only from the environment and never reach a log line, even at DEBUG."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from events.settings import Settings
from tests.deploy.test_procfile import healthy
from tests.e2e.stack import Stack, free_port, procfile, wait_for

SECRET_KEY = "sentinel-secret-key-3f9a-c71e-52d8-b9a4-e06f"  # long enough for a reachable bind
SMTP_PASSWORD = "sentinel-smtp-pw-7c21"
USER_PASSWORD = "sentinel-user-password-51d0"


def post_json(url: str, body: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("names", [("web", "relay", "dispatch", "worker", "alerts", "projector")])
def test_secrets_never_logged(tmp_path: Path, kafka_settings: Settings, names: tuple[str, ...]) -> None:
    stack = Stack.create(tmp_path, kafka_settings.kafka_topic_prefix, LOG_LEVEL="DEBUG", SECRET_KEY=SECRET_KEY,
                         SMTP_URL=f"smtp://alerts:{SMTP_PASSWORD}@127.0.0.1:{free_port()}")
    assert stack.run(procfile()["release"]).returncode == 0
    try:
        for name in names:
            stack.start(name, **({"PORT": str(free_port())} if name == "web" else {}))
        for name in names:
            wait_for(lambda: healthy(stack, name), 90, f"{name} to answer its health check")
        base = f"http://127.0.0.1:{stack.procs['web'].env['PORT']}"
        # the API refuses session writes without CSRF, so use the register and login JSON endpoints
        # the way a script would: they answer 403 (CSRF) or 201/200, either way the password is in the request
        post_json(f"{base}/api/auth/register", {"email": "s@example.com", "password": USER_PASSWORD})
        post_json(f"{base}/api/auth/login", {"email": "s@example.com", "password": USER_PASSWORD + "x"})
    finally:
        stack.stop_all()
    logs = {name: stack.procs[name].log.read_text(errors="replace") for name in names}
    assert any("DEBUG" in text for text in logs.values()), "the processes did log at DEBUG"
    for name, text in logs.items():
        for secret in (SECRET_KEY, SMTP_PASSWORD, USER_PASSWORD):
            assert secret not in text, f"{name} logged a secret"
