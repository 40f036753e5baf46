"""Names with control characters are refused everywhere a user names something (issue 11, finding 7)."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.web.conftest import Api

BAD = ["Desk\r\nBcc: victim@example.com", "tab\there", "nul\x00", "bell\x07", "del\x7f", "c1\x85x", "sep\u2028x"]


@pytest.fixture
def api(sqlite_app: Flask) -> Api:
    client = Api(sqlite_app.test_client())
    client.register("names@example.com")
    return client


@pytest.mark.parametrize("name", BAD)
def test_control_characters_in_names_are_refused(api: Api, name: str) -> None:
    attempts = {
        "channel": api.post("/api/channels", {"kind": "webhook", "name": name, "target": "http://127.0.0.1:9/h"}),
        "rule": api.post("/api/rules", {"symbol": "AAPL", "name": name,
                                        "condition": {"series": "price", "op": "greater_than", "value": 1}}),
        "watchlist": api.post("/api/watchlists", {"name": name}),
        "token": api.post("/api/tokens", {"name": name}),
    }
    for what, resp in attempts.items():
        assert resp.status_code == 422, (what, resp.status_code, resp.get_json())
        assert "control characters" in resp.get_json()["fields"]["name"], what


def test_renaming_is_checked_too_and_ordinary_names_pass(api: Api) -> None:
    ch = api.post("/api/channels", {"kind": "webhook", "name": "Trading desk – ü ✓", "target": "https://93.184.215.14/hook"})
    assert ch.status_code == 201, ch.get_json()
    renamed = api.patch(f"/api/channels/{ch.get_json()['id']}", {"name": "a\nb"})
    assert renamed.status_code == 422 and "control characters" in renamed.get_json()["fields"]["name"]
    wl = api.post("/api/watchlists", {"name": "Tech – ✓"})
    assert wl.status_code == 201, wl.get_json()
    assert api.patch(f"/api/watchlists/{wl.get_json()['id']}", {"name": "x\ry"}).status_code == 422
