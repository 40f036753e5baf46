"""The event contract: round trips, validation that names the field, deterministic ids."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from events import contract
from events.contract import BAR_FLOAT_FIELDS, Alert, Bar, Condition, InvalidEvent, Prediction, Rule, Tick, decode, encode

TS = 1_763_900_000_000


def tick(**kw: object) -> Tick:
    base = dict(id="sim:AAPL:1", ts=TS, symbol="AAPL", price=150.25, size=100.0, source="sim", seq=1)
    base.update(kw)
    return Tick(**base)  # type: ignore[arg-type]


def bar(**kw: object) -> Bar:
    base = dict(id=contract.bar_id("AAPL", 60, TS), ts=TS + 60_000, symbol="AAPL", start_ms=TS, bar_seconds=60,
                open=10.0, high=11.0, low=9.5, close=10.5, volume=1000.0, count=12, vwap=10.2, sma_5=10.1)
    base.update(kw)
    return Bar(**base)  # type: ignore[arg-type]


EXAMPLES = [
    tick(),
    bar(),
    Prediction(id=contract.prediction_id("AAPL", TS, 1, "m1"), ts=TS, symbol="AAPL", base_start_ms=TS,
               bar_seconds=60, base_close=10.0, predicted_close=10.2, predicted_return=0.0198, lower=9.9,
               upper=10.5, model_version="m1", skill=0.01),
    Rule(id=contract.rule_event_id(3, 2), ts=TS, rule_id=3, version=2, user_id=1, symbols=["AAPL", "MSFT"],
         condition=Condition(series="sma_5", op="crossing_up", other="sma_20"), channel_ids=[4]),
    Alert(id=contract.alert_id(3, 2, "bar:AAPL:60:1", "firing"), ts=TS, rule_id=3, rule_version=2, user_id=1,
          state="firing", symbol="AAPL", trigger_event_id="bar:AAPL:60:1", series="sma_5", op="crossing_up",
          value=10.0, threshold=9.9),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip_and_envelope(event: contract.Event) -> None:
    raw = encode(event)
    obj = json.loads(raw)
    assert list(obj)[:4] == ["type", "id", "ts", "v"]
    assert obj["v"] == 1 and obj["ts"] == event.ts
    assert decode(raw, type(event)) == event
    assert contract.TOPICS[contract.topic_of(event)] is type(event)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("price", "abc", "$.price"),
        ("price", -1, "$.price"),
        ("price", 0, "$.price"),
        ("size", -5, "$.size"),
        ("symbol", "aapl", "$.symbol"),
        ("symbol", "TOO-LONG-SYMBOL-XYZ", "$.symbol"),
        ("ts", 1_763_900_000, "$.ts"),  # seconds, not milliseconds
        ("ts", 99_999_999_999_999, "$.ts"),
        ("seq", -1, "$.seq"),
    ],
)
def test_invalid_tick_names_the_field(field: str, value: object, message: str) -> None:
    obj = json.loads(encode(tick()))
    obj[field] = value
    with pytest.raises(InvalidEvent) as err:
        decode(json.dumps(obj).encode(), Tick)
    assert message in str(err.value)


def test_missing_field_and_wrong_type_tag_are_rejected() -> None:
    obj = json.loads(encode(tick()))
    del obj["price"]
    with pytest.raises(InvalidEvent, match="price"):
        decode(json.dumps(obj).encode(), Tick)
    with pytest.raises(InvalidEvent):
        decode(encode(bar()), Tick)


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"[]", b"null", b'{"type":"tick"}', b"\xff\xfe"])
def test_garbage_is_invalid_not_a_crash(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode(raw, Tick)
    with pytest.raises(InvalidEvent):
        decode(None, Tick)


def test_non_finite_values_are_rejected() -> None:
    obj = json.loads(encode(tick()))
    obj["price"] = 1e999  # JSON overflow -> inf
    with pytest.raises(InvalidEvent, match="price"):
        decode(json.dumps(obj).encode().replace(b"Infinity", b"1e999"), Tick)
    with pytest.raises(InvalidEvent, match="sma_5"):
        decode(encode(bar()).replace(b'"sma_5":10.1', b'"sma_5":1e999'), Bar)


def test_bar_consistency_and_prediction_interval() -> None:
    with pytest.raises(InvalidEvent, match="low"):
        decode(encode(bar()).replace(b'"low":9.5', b'"low":12.0'), Bar)
    p = EXAMPLES[2]
    assert isinstance(p, Prediction)
    raw = encode(p).replace(b'"lower":9.9', b'"lower":11.0')
    with pytest.raises(InvalidEvent, match="lower"):
        decode(raw, Prediction)
    assert p.predicted_move_pct == pytest.approx(2.0)


def test_rule_condition_rejects_unknown_operator_and_fields() -> None:
    raw = encode(EXAMPLES[3])
    with pytest.raises(InvalidEvent, match="op"):
        decode(raw.replace(b'"crossing_up"', b'"explodes"'), Rule)
    with pytest.raises(InvalidEvent, match="bogus"):
        decode(raw.replace(b'"op":', b'"bogus":1,"op":'), Rule)


def test_deterministic_ids() -> None:
    a = contract.alert_id(1, 2, "bar:X:60:5", "firing")
    assert a == contract.alert_id(1, 2, "bar:X:60:5", "firing")
    assert a != contract.alert_id(1, 3, "bar:X:60:5", "firing")
    assert a != contract.alert_id(1, 2, "bar:X:60:5", "resolved")
    assert contract.bar_id("AAPL", 60, TS) == f"bar:AAPL:60:{TS}"
    assert len(contract.event_id("a", 1)) == 24 and contract.event_id("a", 1) != contract.event_id("a", 2)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(raw: bytes) -> None:
    for cls in contract.TOPICS.values():
        try:
            decode(raw, cls)
        except InvalidEvent:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "id", "ts", "v", "symbol", "price", "size", "source", "seq"]),
                       json_values, max_size=9))
def test_wrong_typed_json_is_invalid_or_a_valid_tick(obj: dict[str, object]) -> None:
    raw = json.dumps(obj).encode()
    try:
        t = decode(raw, Tick)
    except InvalidEvent:
        return
    assert t.price > 0 and t.size >= 0 and t.seq >= 0


def test_rules_written_before_several_conditions_still_decode_as_rules_of_one() -> None:
    old = (b'{"type":"rule","id":"rule:3:2","ts":1800000000000,"v":1,"rule_id":3,"version":2,"user_id":1,'
           b'"name":"","symbols":["AAPL"],"condition":{"series":"forecast.move_pct","op":"greater_than","value":1.0,'
           b'"other":null,"lower":null,"upper":null,"window_bars":null,"window_s":null,'
           b'"also":{"series":"forecast.lower_move_pct","op":"greater_than","value":0.0}},'
           b'"frequency":"once_per_bar","enabled":true,"channel_ids":[],"message":""}')
    rule = decode(old, Rule)
    assert rule.condition.more == [] and rule.condition.match == "all"
    assert rule.condition.parts() == [rule.condition]
    assert rule.notify_on_resolve is False and rule.repeat_interval_s is None
    # a one-condition rule is encoded without the new fields, so an older reader still decodes it
    assert b'"more"' not in encode(rule) and b'"match"' not in encode(rule)


def test_a_rule_of_several_conditions_round_trips_and_its_bounds_hold() -> None:
    from events.vocabulary import Condition

    part = Condition(series="rsi_14", op="less_than", value=30.0)
    cond = Condition(series="price", op="greater_than", value=200.0, more=[part], match="any")
    rule = Rule(id="rule:1:1", ts=1_800_000_000_000, rule_id=1, version=1, user_id=1, symbols=["AAPL"],
                condition=cond, notify_on_resolve=True, repeat_interval_s=3600)
    again = decode(encode(rule), Rule)
    assert again == rule and again.condition.parts()[1] == part
    raw = encode(rule)
    with pytest.raises(InvalidEvent, match="repeat_interval_s"):
        decode(raw.replace(b'"repeat_interval_s":3600', b'"repeat_interval_s":59'), Rule)
    with pytest.raises(InvalidEvent, match="match"):
        decode(raw.replace(b'"match":"any"', b'"match":"most"'), Rule)
    five = raw.replace(b'"more":[', b'"more":[' + b'{"series":"close","op":"greater_than","value":1.0},' * 4)
    with pytest.raises(InvalidEvent, match="more"):
        decode(five, Rule)


def test_the_session_series_are_optional_bar_fields() -> None:
    names = ("sma_50", "sma_200", "ema_50", "ema_200", "prev_close", "session_open", "gap_pct", "high_20d", "low_20d")
    bar = Bar(id="b", ts=1_800_000_060_000, symbol="AAPL", start_ms=1_800_000_000_000, bar_seconds=60, open=1.0,
              high=1.0, low=1.0, close=1.0, volume=1.0, count=1, vwap=1.0)
    assert all(getattr(bar, n) is None for n in names) and set(names) <= set(BAR_FLOAT_FIELDS)
    with pytest.raises(InvalidEvent, match="prev_close"):
        decode(encode(bar).replace(b'"prev_close":null', b'"prev_close":"x"'), Bar)
