"""The cases where the web and the engine used to disagree, each sent through the API (POST /api/rules)
and through the engine (the Evaluator that reads the ``rules`` topic, and the rule CLI): both refuse
with the same field and the same words, or both accept (events/vocabulary_check.py decides once)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from flask import Flask

from alerts.conditions import ConditionError
from alerts.engine_state import Evaluator
from alerts.rules import RuleError, create_rule as cli_create_rule, validate_rule
from events import contract, models
from tests.web.conftest import Api, account_id

PRICE = {"series": "price", "op": "greater_than", "value": 200.0}

# condition drift: (condition, the refused field, words of the refusal)
CONDITION_DRIFT = [
    pytest.param({"series": "price", "op": "inside_channel", "lower": 5.0, "upper": 5.0},
                 "condition.upper", "must be greater than lower", id="channel-lower-equals-upper"),
    pytest.param({"series": "price", "op": "moving_up_pct", "value": 2.0},
                 "condition.window_s", "give the window either in bars", id="move-without-window"),
    pytest.param({"series": "close", "op": "moving_down", "value": 1.0},
                 "condition.window_s", "give the window either in bars", id="bar-move-without-window"),
    pytest.param({"series": "sma_5", "op": "crossing_up", "other": "sma_5"},
                 "condition.other", "must differ from the series", id="series-compared-with-itself"),
    pytest.param({**PRICE, "also": {"series": "rsi_14", "op": "less_than", "value": 30.0,
                                    "also": {"series": "volume_ratio", "op": "greater_than", "value": 2.0}}},
                 "condition.also.also", "one extra condition at most", id="also-nested-twice"),
]

# rule-level drift: (extra rule fields, the refused field, words of the refusal)
RULE_DRIFT = [
    pytest.param({"recovery": 210.0}, "recovery", "must be at or below the threshold 200", id="recovery-past-threshold"),
    pytest.param({"condition": {"series": "price", "op": "crossing", "value": 200.0}, "recovery": 190.0},
                 "recovery", "a recovery level needs a constant level", id="recovery-without-direction"),
    pytest.param({"active_from_min": 570, "active_to_min": 570}, "active_to_min", "must differ from active_from_min",
                 id="empty-active-hours"),
]


@pytest.fixture
def alice(sqlite_app: Flask) -> Api:
    """A signed-up user on SQLite: the subject here is validation, not the database."""
    api = Api(sqlite_app.test_client())
    api.register("alice@example.com")
    return api


def api_refusal(api: Api, body: dict[str, Any]) -> dict[str, str]:
    resp = api.post("/api/rules", body)
    assert resp.status_code == 422, resp.get_json()
    fields: dict[str, str] = resp.get_json()["fields"]
    return fields


def rule_event(condition: dict[str, Any], **fields: Any) -> contract.Rule:
    """The rule as the engine receives it from the ``rules`` topic (encoded, then decoded)."""
    rule = msgspec.convert({"id": contract.rule_event_id(1, 1), "ts": 1_800_000_000_000, "rule_id": 1, "version": 1,
                            "user_id": 1, "symbols": ["AAPL"], "condition": condition, **fields}, contract.Rule)
    return contract.decode(contract.encode(rule), contract.Rule)


@pytest.mark.parametrize("condition, field, words", CONDITION_DRIFT)
def test_a_condition_the_web_refuses_the_engine_refuses_in_the_same_words(
        alice: Api, condition: dict[str, Any], field: str, words: str) -> None:
    fields = api_refusal(alice, {"symbol": "AAPL", "condition": condition})
    assert words in fields[field]
    evaluator = Evaluator(bar_seconds=60)
    with pytest.raises(ConditionError) as refused:
        evaluator.upsert_rule(rule_event(condition))
    assert f"{field.removeprefix('condition.')}: {fields[field]}" in str(refused.value)
    assert not evaluator.rules  # nothing half-accepted


@pytest.mark.parametrize("extra, field, words", RULE_DRIFT)
def test_rule_settings_the_web_refuses_the_rule_check_refuses_in_the_same_words(
        alice: Api, extra: dict[str, Any], field: str, words: str) -> None:
    body = {"symbol": "AAPL", "condition": PRICE, **extra}
    fields = api_refusal(alice, body)
    assert words in fields[field]
    with pytest.raises(RuleError) as refused:
        validate_rule(rule_event(body["condition"], **{k: v for k, v in extra.items() if k != "condition"}))
    assert f"{field}: {fields[field]}" in str(refused.value)


@pytest.mark.parametrize("condition", [
    {"series": "price", "op": "inside_channel", "lower": 4.0, "upper": 5.0},
    {"series": "price", "op": "moving_up_pct", "value": 2.0, "window_s": 3600},
    {"series": "close", "op": "moving_down", "value": 1.0, "window_bars": 3},
    {"series": "sma_5", "op": "crossing_up", "other": "sma_20"},
    {**PRICE, "also": {"series": "rsi_14", "op": "less_than", "value": 30.0}},
])
def test_what_the_web_accepts_the_engine_evaluates(alice: Api, condition: dict[str, Any]) -> None:
    resp = alice.post("/api/rules", {"symbol": "AAPL", "condition": condition, "recovery": None})
    assert resp.status_code == 201, resp.get_json()
    stored = resp.get_json()["condition"]
    assert stored == condition
    evaluator = Evaluator(bar_seconds=60)
    evaluator.upsert_rule(rule_event(stored))
    assert 1 in evaluator.rules


def test_the_rule_cli_refuses_what_the_web_refuses(alice: Api, sqlite_app: Flask) -> None:
    """``python -m alerts rules create`` saves through the web store: the same checks, the same words,
    nothing written."""
    app = sqlite_app
    user_id = account_id(app, "alice@example.com")
    settings = app.extensions["tickerbell_settings"]
    cases: list[tuple[dict[str, Any], str]] = [(p.values[0], p.values[1]) for p in CONDITION_DRIFT]  # type: ignore[misc]
    for condition, field in cases:
        web = api_refusal(alice, {"symbol": "AAPL", "condition": condition})
        with app.extensions["tickerbell_sessions"]() as s:
            with pytest.raises(RuleError) as refused:
                cli_create_rule(s, settings, user_id=user_id, condition=condition, symbol="AAPL")
            assert f"{field}: {web[field]}" in str(refused.value)
    with app.extensions["tickerbell_sessions"]() as s:
        assert s.query(models.Rule).count() == 0
        made = cli_create_rule(s, settings, user_id=user_id, condition=PRICE, symbol="aapl", name="AAPL 200")
    assert made.symbols == ["AAPL"] and made.condition == msgspec.convert(PRICE, contract.Condition)
