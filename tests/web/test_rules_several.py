"""Rules of several conditions, the all-clear and the reminder, through the API: saved, shown in
the words of the alerts, refused with the vocabulary's words, and in the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from alerts.conditions import compile_condition
from events.vocabulary import Condition
from tests.web.conftest import Api

import msgspec

BOTH = {"series": "price", "op": "greater_than", "value": 200.0, "match": "all",
        "more": [{"series": "rsi_14", "op": "less_than", "value": 30.0}]}


@pytest.fixture
def alice(sqlite_app: Flask) -> Api:
    api = Api(sqlite_app.test_client())
    api.register("alice@example.com")
    return api


def test_a_rule_of_two_conditions_with_the_all_clear_and_a_reminder(alice: Api) -> None:
    resp = alice.post("/api/rules", {"symbol": "AAPL", "condition": BOTH, "notify_on_resolve": True,
                                     "repeat_interval_s": 3600})
    assert resp.status_code == 201, resp.get_json()
    rule = resp.get_json()
    assert rule["condition"] == BOTH
    assert rule["description"] == "price above 200 and RSI 14 below 30"
    assert rule["notify_on_resolve"] is True and rule["repeat_interval_s"] == 3600
    compile_condition(msgspec.convert(rule["condition"], Condition))  # what the web saved, the engine compiles
    again = alice.get(f"/api/rules/{rule['id']}").get_json()
    assert again["notify_on_resolve"] is True and again["repeat_interval_s"] == 3600
    edited = alice.patch(f"/api/rules/{rule['id']}", {"repeat_interval_s": None, "notify_on_resolve": False})
    assert edited.status_code == 200, edited.get_json()
    assert edited.get_json()["repeat_interval_s"] is None and edited.get_json()["notify_on_resolve"] is False


def test_an_old_single_condition_rule_defaults_to_no_all_clear_and_no_reminder(alice: Api) -> None:
    rule = alice.post("/api/rules", {"symbol": "AAPL", "condition": {"series": "price", "op": "less_than",
                                                                       "value": 10.0}}).get_json()
    assert rule["notify_on_resolve"] is False and rule["repeat_interval_s"] is None
    assert "more" not in rule["condition"]


def _one(series: str) -> dict[str, Any]:
    return {"series": series, "op": "greater_than", "value": 1.0}


@pytest.mark.parametrize(("body", "field", "words"), [
    pytest.param({"condition": {**BOTH, "more": [_one(s) for s in ("close", "open", "high", "low", "vwap")]}},
                 "condition.more", "at most 4", id="six-conditions"),
    pytest.param({"condition": {**BOTH, "match": "most"}}, "condition.match", "choose all or any", id="bad-match"),
    pytest.param({"condition": {**BOTH, "more": [{"series": "rsi_14", "op": "less_than"}]}},
                 "condition.more.0.value", "give either a level", id="part-without-level"),
    pytest.param({"condition": {**BOTH, "more": [{**_one("close"), "more": [_one("open")]}]}},
                 "condition.more.0.more", "only the rule's first condition", id="nested-more"),
    pytest.param({"condition": BOTH, "recovery": 190.0}, "recovery", "needs a rule of one condition",
                 id="recovery-with-several"),
    pytest.param({"condition": BOTH, "repeat_interval_s": 30}, "repeat_interval_s", "between 60 and 604800",
                 id="repeat-too-often"),
    pytest.param({"condition": BOTH, "notify_on_resolve": "yes"}, "notify_on_resolve", "must be a boolean",
                 id="resolve-not-bool"),
])
def test_refused_with_the_field_and_words(alice: Api, body: dict[str, Any], field: str, words: str) -> None:
    resp = alice.post("/api/rules", {"symbol": "AAPL", **body})
    assert resp.status_code == 422, resp.get_json()
    assert words in resp.get_json()["fields"][field]
    assert alice.get("/api/rules").get_json() == []


def test_the_openapi_document_has_the_new_fields(alice: Api) -> None:
    doc = alice.get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    assert schemas["Rule"]["properties"]["repeat_interval_s"]["minimum"] == 60
    assert schemas["Rule"]["properties"]["notify_on_resolve"]["type"] == "boolean"
    assert schemas["Condition"]["properties"]["more"]["maxItems"] == 4
    assert schemas["Condition"]["properties"]["match"]["enum"] == ["all", "any"]
    assert "day_change_pct" in schemas["Condition"]["properties"]["series"]["enum"]


def test_the_rule_cli_saves_several_conditions_and_the_new_fields_onto_the_topic(alice: Api, sqlite_app: Flask) -> None:
    from alerts.rules import create_rule as cli_create_rule
    from alerts.rules import describe
    from tests.web.conftest import account_id

    settings = sqlite_app.extensions["tickerbell_settings"]
    with sqlite_app.extensions["tickerbell_sessions"]() as s:
        event = cli_create_rule(s, settings, user_id=account_id(sqlite_app, "alice@example.com"), condition=BOTH,
                                symbol="AAPL", notify_on_resolve=True, repeat_interval_s=600)
    assert event.condition.more[0].series == "rsi_14" and event.condition.match == "all"
    assert event.notify_on_resolve is True and event.repeat_interval_s == 600
    assert describe(event) == "price above 200 and RSI 14 below 30"


# --- the two CLIs: --notify-on-resolve and --repeat-interval-s, checked exactly as the API checks them ---

BAD_SETTINGS = [
    pytest.param({"repeat_interval_s": 30}, "repeat_interval_s", id="repeat-too-often"),
    pytest.param({"repeat_interval_s": 8 * 86_400}, "repeat_interval_s", id="repeat-too-rare"),
    pytest.param({"repeat_interval_s": "600"}, "repeat_interval_s", id="repeat-a-string"),
    pytest.param({"notify_on_resolve": "yes"}, "notify_on_resolve", id="resolve-not-bool"),
]


@pytest.mark.parametrize(("extra", "field"), BAD_SETTINGS)
def test_both_clis_refuse_what_the_api_refuses_with_its_words(alice: Api, sqlite_app: Flask, extra: dict[str, Any],
                                                              field: str) -> None:
    from alerts.rules import RuleError
    from alerts.rules import create_rule as cli_create_rule
    from tests.web.conftest import account_id
    from web.admin import create_rule_for
    from web.store.errors import Invalid

    body = {"symbol": "AAPL", "condition": BOTH, **extra}
    api = alice.post("/api/rules", body)
    assert api.status_code == 422
    words = api.get_json()["fields"][field]
    settings = sqlite_app.extensions["tickerbell_settings"]
    sessions = sqlite_app.extensions["tickerbell_sessions"]
    uid = account_id(sqlite_app, "alice@example.com")
    with pytest.raises(Invalid) as admin:
        create_rule_for(settings, sessions, uid, body)
    assert admin.value.fields[field] == words
    with sessions() as s, pytest.raises(RuleError) as alerts_cli:
        cli_create_rule(s, settings, user_id=uid, condition=BOTH, symbol="AAPL", **extra)
    assert f"{field}: {words}" in str(alerts_cli.value)
    assert alice.get("/api/rules").get_json() == []


def test_the_cli_flags_save_the_all_clear_and_the_reminder(alice: Api, sqlite_app: Flask,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from alerts.__main__ import main as alerts_main
    from tests.web.conftest import account_id
    from web.admin import main as admin_main

    monkeypatch.setenv("DATABASE_URL", sqlite_app.extensions["tickerbell_settings"].database_url)
    uid = str(account_id(sqlite_app, "alice@example.com"))
    rule = json.dumps({"symbol": "AAPL", "condition": BOTH})
    assert admin_main(["create-rule", "--user-id", uid, "--rule", rule, "--repeat-interval-s", "30"]) == 1
    assert "repeat_interval_s: must be between 60 and 604800" in capsys.readouterr().err
    base = ["rules", "create", "--user-id", uid, "--symbol", "MSFT", "--op", "less_than", "--value", "10"]
    assert alerts_main([*base, "--repeat-interval-s", "604801"]) == 2
    assert "repeat_interval_s: must be between 60 and 604800" in capsys.readouterr().err
    assert alice.get("/api/rules").get_json() == []  # nothing written by a refusal

    assert admin_main(["create-rule", "--user-id", uid, "--rule", rule, "--notify-on-resolve",
                       "--repeat-interval-s", "900"]) == 0
    assert alerts_main([*base, "--notify-on-resolve", "--repeat-interval-s", "3600"]) == 0
    assert alerts_main([*base]) == 0  # without the flags: the defaults, as the API's
    capsys.readouterr()
    saved = {(r["symbol"], r["notify_on_resolve"], r["repeat_interval_s"])
             for r in alice.get("/api/rules").get_json()}
    assert saved == {("AAPL", True, 900), ("MSFT", True, 3600), ("MSFT", False, None)}
    with sqlite_app.extensions["tickerbell_sessions"]() as s:  # and the rule events the relay publishes
        from alerts.rules import list_rules

        events = {(e.symbols[0], e.notify_on_resolve, e.repeat_interval_s) for e in list_rules(s)}
    assert events == saved
