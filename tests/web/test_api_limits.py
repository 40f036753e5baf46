"""The API's input bounds (issue 11, item 8): what the security review sent answers a 4xx naming the problem.

A 400 kB nested body, a 25-digit ``?to=``, fields of the wrong JSON type and
unbounded per-user growth were 500s or unlimited; each test here sends the
review's input (or the smallest one that shows the cap) to the app.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from events import models
from tests.web.conftest import Api, make_app
from web.limits import ApiLimits, json_depth
from web.openapi import SCHEMAS, type_errors

RULE = {"symbol": "AAPL", "condition": {"series": "price", "op": "greater_than", "value": 100.0}}


def sessions(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["tickerbell_sessions"]


def assert_names(resp: Any, status: int | tuple[int, ...], field: str, *words: str) -> dict[str, Any]:
    """A JSON error with ``status``, naming ``field`` and mentioning each of ``words``."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, (resp.status_code, resp.get_data(as_text=True)[:300])
    body = resp.get_json()
    assert body["error"] and body["message"], body
    assert field in body.get("fields", {}), body
    text = body["message"] + " " + body["fields"][field]
    for word in words:
        assert word in text, (word, body)
    return body


@pytest.fixture
def fuzz(sqlite_app: Flask) -> Api:
    api = Api(sqlite_app.test_client())
    api.register("limits@example.com")
    return api


# --- body size and nesting ------------------------------------------------------------


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}', 99) == 3
    assert json_depth(b'["\\"[[[", [[]]]', 99) == 3  # an escaped quote does not end the string
    assert json_depth(b"[" * 100_000, 17) == 17  # stops counting at the limit
    started = time.perf_counter()
    json_depth(b'"' + b'\\"' * 120_000, 17)  # a pattern that backtracks for minutes in a naive regex
    assert time.perf_counter() - started < 1.0


def test_nested_body_of_400_kB_is_refused_not_a_500(fuzz: Api) -> None:
    nested = "[" * 200_000 + "]" * 200_000  # the review's body: RecursionError in the parser, a 500
    resp = fuzz._call("POST", "/api/watchlists", data=nested, content_type="application/json")
    assert_names(resp, 413, "body", "body_bytes")


def test_deep_body_under_the_size_cap_is_refused_before_parsing(fuzz: Api) -> None:
    nested = "[" * 50_000 + "]" * 50_000
    for url in ("/api/watchlists", "/api/rules", "/api/rules/preview", "/api/channels", "/api/tokens"):
        resp = fuzz._call("POST", url, data=nested, content_type="application/json")
        assert_names(resp, 400, "body", "json_depth")
    deep_condition = {**RULE, "condition": {"series": "price", "op": "greater_than", "value": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}}
    assert_names(fuzz.post("/api/rules", deep_condition), 400, "body", "16 levels")
    # a legitimate body (a condition with its extra condition) is far from the bound
    ok = {**RULE, "condition": {**RULE["condition"], "also": {"series": "rsi_14", "op": "less_than", "value": 30.0}}}
    assert fuzz.post("/api/rules", ok).status_code == 201


def test_type_errors_follow_the_documented_schemas() -> None:
    rule = SCHEMAS["Rule"]
    assert type_errors({**RULE, "frequency": "once", "watchlist_id": None, "recovery": 5, "expires_ms": 5.0}, rule) == {}
    assert type_errors({"frequency": [None, None]}, rule) == {"frequency": "must be a string, got an array"}
    assert type_errors({"symbol": {}}, rule) == {"symbol": "must be a string or null, got an object"}
    assert type_errors({"enabled": 1, "cooldown_s": False}, rule) == {
        "enabled": "must be a boolean, got an integer", "cooldown_s": "must be an integer, got a boolean"}
    assert type_errors({"expires_ms": 10**25}, rule) == {"expires_ms": "must be between 0 and 4102444800000"}
    assert type_errors({"condition": {"series": "price", "op": "less_than", "value": 10**400}}, rule) \
        == {"condition.value": f"must be between {-(2**53 - 1)} and {2**53 - 1}"}
    assert type_errors({"condition": {"also": {"window_s": "60"}}}, rule) == {
        "condition.also.window_s": "must be an integer or null, got a string"}
    assert type_errors({"channel_ids": [1, "2", True]}, rule) == {
        "channel_ids[1]": "must be an integer, got a string", "channel_ids[2]": "must be an integer, got a boolean"}
    assert type_errors({"unknown": {}}, rule) == {}  # the store names unknown fields
    assert type_errors([], rule) == {"body": "must be an object, got an array"}


# --- query values -----------------------------------------------------------------------


@pytest.mark.parametrize("url, field", [
    ("/api/alerts?to=" + "9" * 25, "to"),
    ("/api/alerts?from=" + "9" * 25 + "&to=" + "9" * 26, "to"),
    ("/api/deliveries?to=" + "9" * 25, "to"),
    ("/api/symbols/AAPL/bars?to=" + "9" * 25, "to"),
    ("/api/export/alerts.csv?to=" + "9" * 25, "to"),
    ("/api/alerts?to=%C2%B2", "to"),  # a superscript two: str.isdigit() but not int()
    ("/api/alerts?rule_id=" + "9" * 25, "rule_id"),
    ("/api/export/bars.csv?limit=" + "9" * 25, "limit"),
])
def test_huge_numbers_in_the_query_are_422(fuzz: Api, url: str, field: str) -> None:
    assert_names(fuzz.get(url), 422, field)


# --- fields of the wrong JSON type ------------------------------------------------------


WRONG_TYPES = [
    # the fuzzer's findings
    ("POST", "/api/channels", {"kind": {}, "name": "x", "target": "a@example.com"}, "kind", "string"),
    ("POST", "/api/rules", {**RULE, "frequency": [None, None]}, "frequency", "string"),
    ("POST", "/api/rules/preview", {**RULE, "frequency": [None, None]}, "frequency", "string"),
    # the same kinds of mistake on other fields
    ("POST", "/api/rules", {**RULE, "cooldown_s": True}, "cooldown_s", "integer"),
    ("POST", "/api/rules", {**RULE, "watchlist_id": 10**24, "symbol": None}, "watchlist_id", "2147483647"),
    ("POST", "/api/rules", {**RULE, "channel_ids": [None]}, "channel_ids[0]", "integer"),
    ("POST", "/api/rules", {**RULE, "timezone": {"tz": 1}}, "timezone", "string"),
    ("POST", "/api/rules", {**RULE, "condition": {"series": "price", "op": "greater_than", "value": {}}},
     "condition.value", "number"),
    ("POST", "/api/rules", {**RULE, "condition": {"series": ["price"], "op": "greater_than", "value": 1}},
     "condition.series", "string"),
    ("POST", "/api/rules", {**RULE, "condition": {**RULE["condition"], "also": [1]}}, "condition.also", "object"),
    ("POST", "/api/rules/preview", {**RULE, "days": True}, "days", "integer"),
    ("POST", "/api/rules/preview", {**RULE, "days": 10**25}, "days", "365"),
    ("POST", "/api/rules/preview", {**RULE, "id": "1"}, "id", "integer"),
    ("POST", "/api/watchlists", {"name": {}}, "name", "string"),
    ("POST", "/api/watchlists", {"name": "w", "symbols": [None, None]}, "symbols[0]", "string"),
    ("POST", "/api/watchlists/{wl}/symbols", {"symbol": ["AAPL"]}, "symbol", "string"),
    ("PATCH", "/api/watchlists/{wl}", {"name": [None, None]}, "name", "string"),
    ("POST", "/api/tokens", {"name": {"a": 1}}, "name", "string"),
    ("PATCH", "/api/channels/{ch}", {"enabled": "yes"}, "enabled", "boolean"),
    ("PUT", "/api/rules/{rule}", {"frequency": {}}, "frequency", "string"),
    ("POST", "/api/rules/{rule}/snooze", {"minutes": [5]}, "minutes", "integer"),
    ("POST", "/api/rules/{rule}/snooze", {"minutes": 10**25}, "minutes", "43200"),
]


@pytest.mark.parametrize("method, url, body, field, word", WRONG_TYPES,
                         ids=[f"{m} {u} {f}" for m, u, _, f, _w in WRONG_TYPES])
def test_field_of_the_wrong_json_type_is_422_naming_it(fuzz: Api, method: str, url: str, body: dict[str, Any],
                                                       field: str, word: str) -> None:
    wl = fuzz.get("/api/watchlists").get_json()[0]["id"]
    rule = fuzz.post("/api/rules", RULE).get_json()["id"]
    # the body is checked before anything is looked up: no channel (no address, no mail) is needed
    resp = fuzz._call(method, url.format(wl=wl, rule=rule, ch=1), json=body)
    assert_names(resp, 422, field, word)


# --- per-user caps ----------------------------------------------------------------------


@pytest.fixture
def capped(sqlite_app: Flask) -> tuple[Flask, Api]:
    """An app whose caps are small enough to reach in a test (same database as ``sqlite_app``)."""
    from dataclasses import replace

    settings = replace(sqlite_app.extensions["tickerbell_settings"], bar_seconds=3600)
    app = make_app(settings, API_LIMITS=ApiLimits(symbols_per_watchlist=3, watchlists_per_user=2, rules_per_user=2,
                                                  preview_bars=24 * 10, export_rows=5))
    api = Api(app.test_client())
    api.register("capped@example.com")
    return app, api


def test_watchlists_and_their_symbols_are_capped_per_user(capped: tuple[Flask, Api]) -> None:
    _app, api = capped
    first = api.get("/api/watchlists").get_json()[0]["id"]  # everyone starts with one
    assert api.post("/api/watchlists", {"name": "second"}).status_code == 201
    body = assert_names(api.post("/api/watchlists", {"name": "third"}), 409, "watchlists_per_user", "at most 2")
    assert body["cap"] == "watchlists_per_user" and body["limit"] == 2
    assert len(api.get("/api/watchlists").get_json()) == 2

    for symbol in ("AAPL", "MSFT", "NVDA"):
        assert api.post(f"/api/watchlists/{first}/symbols", {"symbol": symbol}).status_code == 201
    assert_names(api.post(f"/api/watchlists/{first}/symbols", {"symbol": "GOOG"}), 409, "symbols_per_watchlist", "at most 3")
    assert api.get(f"/api/watchlists/{first}").get_json()["symbols"] == ["AAPL", "MSFT", "NVDA"]
    api.delete(f"/api/watchlists/{api.get('/api/watchlists').get_json()[1]['id']}")
    resp = api.post("/api/watchlists", {"name": "big", "symbols": ["A", "B", "C", "D"]})
    assert_names(resp, 409, "symbols_per_watchlist")


def test_rules_are_capped_per_user(capped: tuple[Flask, Api], sqlite_app: Flask) -> None:
    _app, api = capped
    assert api.post("/api/rules", RULE).status_code == 201
    assert api.post("/api/rules", RULE).status_code == 201
    assert_names(api.post("/api/rules", RULE), 409, "rules_per_user", "at most 2")
    assert len(api.get("/api/rules").get_json()) == 2
    # another user has a cap of their own
    other = Api(_app.test_client())
    other.register("other@example.com")
    assert other.post("/api/rules", RULE).status_code == 201


def test_preview_range_is_capped_in_bars(capped: tuple[Flask, Api]) -> None:
    _app, api = capped
    # hour bars: 10 days of one symbol is the cap of 240 bars
    assert api.post("/api/rules/preview", {**RULE, "days": 10}).status_code in (200, 503)
    body = assert_names(api.post("/api/rules/preview", {**RULE, "days": 11}), 422, "days", "preview_bars", "10 days")
    wl = api.get("/api/watchlists").get_json()[0]["id"]
    for symbol in ("AAPL", "MSFT"):
        api.post(f"/api/watchlists/{wl}/symbols", {"symbol": symbol})
    # two symbols: half as many days
    assert_names(api.post("/api/rules/preview", {"watchlist_id": wl, "condition": RULE["condition"], "days": 6}),
                 422, "days", "at most 5 days")
    assert body["fields"]["days"]


def test_export_size_is_capped_for_the_whole_file(capped: tuple[Flask, Api]) -> None:
    app, api = capped
    wl = api.get("/api/watchlists").get_json()[0]["id"]
    for symbol in ("AAPL", "MSFT"):
        api.post(f"/api/watchlists/{wl}/symbols", {"symbol": symbol})
    now_ms = int(time.time() * 1000)
    with sessions(app)() as s:
        for symbol in ("AAPL", "MSFT"):
            for i in range(4):
                s.add(models.BarRecord(symbol=symbol, bar_seconds=3600, start_ms=now_ms - (i + 1) * 3_600_000, open=1,
                                       high=1, low=1, close=1, volume=1, count=1, vwap=1))
        s.commit()
    assert_names(api.get("/api/export/bars.csv?limit=6"), 422, "limit", "export_rows", "5")
    resp = api.get("/api/export/bars.csv")  # by default at most the cap, across every symbol
    assert resp.status_code == 200
    lines = resp.get_data(as_text=True).strip().splitlines()
    assert len(lines) == 1 + 5, lines
    assert len(api.get("/api/export/bars.csv?limit=3").get_data(as_text=True).strip().splitlines()) == 1 + 3
    assert_names(api.get("/api/export/alerts.csv?limit=6"), 422, "limit", "export_rows")
    assert_names(api.get("/api/export/deliveries.csv?limit=6"), 422, "limit", "export_rows")


# --- the status numbers -----------------------------------------------------------------


def test_status_is_for_administrators_only(sqlite_app: Flask, fuzz: Api) -> None:
    assert_names_403 = fuzz.get("/api/status")
    assert assert_names_403.status_code == 403, assert_names_403.get_data(as_text=True)[:200]
    assert assert_names_403.get_json()["error"] == "forbidden"
    assert fuzz.client.get("/status").status_code == 403

    admin = Api(sqlite_app.test_client())
    me = admin.register("admin@example.com")
    with sessions(sqlite_app)() as s:
        s.get(models.User, me["id"]).is_admin = True
        s.commit()
    page = admin.client.get("/status")
    assert page.status_code == 200 and b"/api/status" in page.data
    anonymous = sqlite_app.test_client().get("/api/status")
    assert anonymous.status_code == 401
