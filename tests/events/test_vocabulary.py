"""The one rule vocabulary (events/vocabulary.py, events/vocabulary_check.py), pure: what derives from it
agrees with it, and validate() and the engine's compile step give the same verdict in the same words."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import pytest

from alerts import conditions as engine
from alerts import templates
from events import contract
from events.vocabulary import FREQUENCIES, GROUPS, OPERATORS, PARAMS, SERIES, Condition, unit_of
from events.vocabulary_check import as_dict, condition_schema, problems, rule_problems, validate


def test_the_contract_decodes_exactly_the_vocabularys_operators_and_frequencies() -> None:
    assert set(get_args(contract.Operator)) == set(OPERATORS)
    assert set(get_args(contract.Frequency)) == set(FREQUENCIES)
    raw = contract.encode(contract.Rule(id="rule:1:1", ts=1_800_000_000_000, rule_id=1, version=1, user_id=1,
                                        symbols=["AAPL"], condition=Condition(series="price", op="crossing", value=1.0)))
    for op in OPERATORS:
        assert contract.decode(raw.replace(b'"crossing"', f'"{op}"'.encode()), contract.Rule).condition.op == op
    with pytest.raises(contract.InvalidEvent, match="op"):
        contract.decode(raw.replace(b'"crossing"', b'"crossing_sideways"'), contract.Rule)


def test_the_engine_reads_its_operator_kinds_and_series_sources_off_the_vocabulary() -> None:
    assert engine.ALL_SERIES == set(SERIES)
    assert engine.COMPARE_OPS | engine.CHANNEL_OPS | engine.MOVING_OPS == set(OPERATORS)
    assert engine.ARMED_OPS == {"crossing_up", "crossing_down", "entering_channel", "exiting_channel"}
    assert engine.UP_OPS == {"greater_than", "crossing_up"} and engine.DOWN_OPS == {"less_than", "crossing_down"}
    for name, series in SERIES.items():
        assert engine.series_source(name) == series.source
    # every bar series is a field of the Bar event: a new one is added there and here, nowhere else
    assert {n for n, s in SERIES.items() if s.source == "bar"} <= set(contract.Bar.__struct_fields__)


def test_every_operator_group_names_parameters_the_vocabulary_defines() -> None:
    assert {o.group for o in OPERATORS.values()} == set(GROUPS)
    assert {p for names in GROUPS.values() for p in names} == set(PARAMS)
    assert set(condition_schema()["properties"]) == {"series", "op", *PARAMS, "also", "more", "match"}


def sample(op: str) -> dict[str, Any]:
    return {"compare": {"value": 10.0}, "channel": {"lower": 1.0, "upper": 2.0},
            "move": {"value": 1.5, "window_bars": 5}}[OPERATORS[op].group]


@pytest.mark.parametrize("op", list(OPERATORS))
def test_every_operator_validates_compiles_and_is_worded(op: str) -> None:
    cond, errors = validate({"series": "close", "op": op, **sample(op)})
    assert errors == {} and cond is not None
    assert as_dict(cond) == {"series": "close", "op": op, **sample(op)}
    engine.compile_condition(cond)
    words = templates.describe(cond)
    assert words.startswith("close ") and OPERATORS[op].words in words


def test_form_strings_become_typed_values_and_unused_parameters_are_dropped() -> None:
    cond, errors = validate({"series": "price", "op": "greater_than", "value": "101.5", "lower": None, "window_s": ""})
    assert errors == {} and cond is not None and as_dict(cond) == {"series": "price", "op": "greater_than", "value": 101.5}
    cond, errors = validate({"series": "price", "op": "moving_up", "value": 2, "window_bars": "4", "lower": 3})
    assert errors == {} and cond is not None
    assert as_dict(cond) == {"series": "price", "op": "moving_up", "value": 2.0, "window_bars": 4}
    _, errors = validate({"series": "price", "op": "moving_up", "value": 2, "window_bars": "4.5"})
    assert errors == {"condition.window_bars": "must be a whole number, got '4.5'"}  # no second message about it
    _, errors = validate({"series": "price", "op": "greater_than", "value": True})
    assert errors == {"condition.value": "must be a number"}
    _, errors = validate({"series": "price", "op": "greater_than", "value": 1, "colour": "red"})
    assert errors == {"condition": "unknown field(s): colour"}


DRIFT = [
    ({"series": "price", "op": "outside_channel", "lower": 3.0, "upper": 3.0}, "upper", "must be greater than lower"),
    ({"series": "price", "op": "moving_down_pct", "value": 1.0}, "window_s", "either in bars"),
    ({"series": "rsi_14", "op": "crossing", "other": "rsi_14"}, "other", "must differ"),
    ({"series": "price", "op": "less_than", "value": 1.0, "also": {"series": "price", "op": "less_than", "value": 2.0,
                                                                    "also": {"series": "price", "op": "less_than",
                                                                             "value": 3.0}}},
     "also.also", "one extra condition at most"),
]


@pytest.mark.parametrize("raw, field, words", DRIFT)
def test_validate_and_the_engine_refuse_the_drift_cases_alike(raw: dict[str, Any], field: str, words: str) -> None:
    _, errors = validate(raw)
    assert words in errors["condition." + field]
    typed = msgspec.convert(raw, Condition)  # what a decoder lets through: the types are fine
    assert problems(typed) == errors
    with pytest.raises(engine.ConditionError) as refused:
        engine.compile_condition(typed)
    assert f"{field}: {errors['condition.' + field]}" in str(refused.value)


def test_rule_problems_judge_recovery_against_the_operators_direction() -> None:
    above = Condition(series="price", op="greater_than", value=100.0)
    below = Condition(series="price", op="crossing_down", value=100.0)
    assert rule_problems(above, recovery=99.0) == {} and rule_problems(below, recovery=101.0) == {}
    assert "at or below" in rule_problems(above, recovery=101.0)["recovery"]
    assert "at or above" in rule_problems(below, recovery=99.0)["recovery"]
    assert "constant level" in rule_problems(Condition(series="sma_5", op="crossing_up", other="sma_20"),
                                              recovery=1.0)["recovery"]
    assert "Mars/Olympus" in rule_problems(above, timezone="Mars/Olympus")["timezone"]
    assert rule_problems(above, active_from_min=570)["active_to_min"] == "give both ends of the active hours, or neither"


def test_units_come_from_the_series_and_a_percent_move_is_always_percent() -> None:
    assert unit_of("price") == "price" and unit_of("rsi_14") == "index" and unit_of("count") == "count"
    assert unit_of("price", "moving_up_pct") == "percent" and unit_of("volume", "moving_down_pct") == "percent"
    assert unit_of("feed") is None  # the stale-feed system alert is no series
    assert templates.fmt_value(1234.4, "count") == "1,234" and templates.fmt_value(28.44, "rsi_14") == "28.4"
    assert templates.OP_WORDS == {name: o.words for name, o in OPERATORS.items()}
    assert templates.series_label("rsi_14") == "RSI 14" and templates.series_label("sma_200") == "SMA 200"
