"""The rule lifecycle and the evaluator, on plain events (no broker)."""

from __future__ import annotations

from datetime import datetime, timezone

import random

import msgspec
import pytest

from alerts.engine_state import Evaluator, decode_state, encode_state
from events.contract import Alert
from events.markethours import is_market_open
from tests.alerts.helpers import BAR_MS, T0, bar, prediction, rule, states, tick


def feed(ev: Evaluator, prices: list[float], start: int = 0, symbol: str = "AAPL", step_ms: int = 1000) -> list[Alert]:
    out: list[Alert] = []
    for i, p in enumerate(prices, start):
        out += ev.on_tick(tick(p, i, symbol, T0 + i * step_ms))
    return out


def evaluator(*rules) -> Evaluator:  # type: ignore[no-untyped-def]
    ev = Evaluator(bar_seconds=60)
    for r in rules:
        ev.upsert_rule(r)
    return ev


ABOVE_150 = {"series": "price", "op": "greater_than", "value": 150}


def test_a_condition_that_stays_true_fires_once_then_resolves() -> None:
    ev = evaluator(rule(ABOVE_150))
    out = feed(ev, [149, 151, 152, 153, 149, 148, 151])
    assert states(out) == [("firing", 151), ("resolved", 149), ("firing", 151)]
    assert out[0].channel_ids == [] and out[0].user_id == 7 and out[0].threshold == 150
    assert out[0].trigger_event_id == "sim:AAPL:1" and out[0].ts == T0 + 1000


def test_greater_than_fires_on_the_first_observation_but_crossing_up_needs_one_below() -> None:
    assert states(feed(evaluator(rule(ABOVE_150)), [151])) == [("firing", 151)]
    crossing = evaluator(rule({"series": "price", "op": "crossing_up", "value": 150}))
    assert states(feed(crossing, [151, 152, 149, 151])) == [("firing", 151)]


def test_crossing_fires_on_every_cross_each_resolving_the_previous() -> None:
    ev = evaluator(rule({"series": "price", "op": "crossing", "value": 150}))
    out = feed(ev, [149, 151, 152, 148, 147, 151])
    assert states(out) == [("firing", 151), ("resolved", 148), ("firing", 148), ("resolved", 151), ("firing", 151)]
    assert len({a.id for a in out}) == 5


def test_channel_entering_and_exiting() -> None:
    ev = evaluator(rule({"series": "price", "op": "entering_channel", "lower": 10, "upper": 20}, rule_id=1),
                   rule({"series": "price", "op": "exiting_channel", "lower": 10, "upper": 20}, rule_id=2))
    out = feed(ev, [15, 25, 15, 5])
    assert [(a.rule_id, a.state, a.value) for a in out] == [
        (2, "firing", 25), (1, "firing", 15), (2, "resolved", 15), (1, "resolved", 5), (2, "firing", 5)]


def test_once_fires_only_once_ever() -> None:
    ev = evaluator(rule(ABOVE_150, frequency="once"))
    assert states(feed(ev, [151, 149, 151, 149, 152])) == [("firing", 151), ("resolved", 149)]


def test_once_per_bar_defers_a_second_firing_to_the_next_bar() -> None:
    ev = evaluator(rule(ABOVE_150, frequency="once_per_bar"))
    out = []
    for i, (offset_s, price) in enumerate([(1, 151), (2, 149), (3, 151), (30, 152), (61, 153), (62, 154)]):
        out += ev.on_tick(tick(price, i, ts_ms=T0 + offset_s * 1000))
    assert states(out) == [("firing", 151), ("resolved", 149), ("firing", 153)]
    assert out[2].ts == T0 + 61_000


def test_once_per_bar_close_ignores_ticks_and_reads_the_close() -> None:
    ev = evaluator(rule(ABOVE_150, frequency="once_per_bar_close"))
    assert feed(ev, [151, 152]) == []
    out = ev.on_bar(bar(151, 0)) + ev.on_bar(bar(152, 1)) + ev.on_bar(bar(149, 2))
    assert states(out) == [("firing", 151), ("resolved", 149)]


def test_every_time_with_cooldown() -> None:
    ev = evaluator(rule(ABOVE_150, frequency="every_time", cooldown_s=10))
    # fire at 1 s; resolve at 2 s; true again at 3 s but cooling down until 11 s; still true then -> fires
    out = feed(ev, [149, 151, 149, 151, 152, 153, 152, 151, 152, 153, 152, 154, 155])
    assert states(out) == [("firing", 151), ("resolved", 149), ("firing", 154)]
    assert out[-1].ts == T0 + 11_000


def test_pending_period_needs_the_condition_to_hold() -> None:
    ev = evaluator(rule(ABOVE_150, pending_s=3))
    # true at 1, 2 s, false at 3 s (restart), true from 4 s: fires at 7 s
    out = feed(ev, [149, 151, 152, 149, 151, 151, 152, 153, 154])
    assert states(out) == [("firing", 153)]
    assert out[0].ts == T0 + 7000


def test_recovery_threshold_hysteresis() -> None:
    ev = evaluator(rule(ABOVE_150, recovery=145))
    out = feed(ev, [151, 149, 151, 146, 144, 151])
    assert states(out) == [("firing", 151), ("resolved", 144), ("firing", 151)]


def test_expiry_disabled_and_snooze() -> None:
    expired = evaluator(rule(ABOVE_150, expires_ms=T0 + 2000))
    assert states(feed(expired, [149, 149, 151, 152])) == []
    disabled = evaluator(rule(ABOVE_150, enabled=False))
    assert feed(disabled, [151]) == [] and disabled.rules == {}
    snoozed = evaluator(rule(ABOVE_150, snoozed_until_ms=T0 + 3000))
    out = feed(snoozed, [151, 152, 153, 154])  # true throughout: fires when the snooze ends
    assert states(out) == [("firing", 154)]


def test_active_hours_in_the_rule_time_zone() -> None:
    ev = evaluator(rule(ABOVE_150, active_from_min=9 * 60 + 30, active_to_min=16 * 60, timezone="America/New_York"))
    def at(h: int, m: int) -> int:
        return int(datetime(2026, 11, 18, h, m, tzinfo=timezone.utc).timestamp() * 1000)

    # 14:00 UTC is 09:00 in New York (EST): outside; 14:30 UTC is 09:30: inside
    out = ev.on_tick(tick(151, 0, ts_ms=at(14, 0))) + ev.on_tick(tick(152, 1, ts_ms=at(14, 30)))
    assert states(out) == [("firing", 152)]
    night = evaluator(rule(ABOVE_150, active_from_min=22 * 60, active_to_min=2 * 60, timezone="Europe/Berlin"))
    # 23:30 Berlin (CET, UTC+1) is 22:30 UTC: inside the wrapped window
    assert states(night.on_tick(tick(151, 0, ts_ms=at(22, 30)))) == [("firing", 151)]


def test_watchlist_rules_keep_a_lifecycle_per_symbol_and_ignore_the_rest() -> None:
    ev = evaluator(rule(ABOVE_150, symbols=["AAPL", "MSFT"]))
    out = ev.on_tick(tick(151, 0, "AAPL")) + ev.on_tick(tick(151, 1, "MSFT")) + ev.on_tick(tick(152, 2, "AAPL"))
    assert [(a.symbol, a.state) for a in out] == [("AAPL", "firing"), ("MSFT", "firing")]
    assert ev.on_tick(tick(999, 3, "TSLA")) == []
    assert "TSLA" not in ev.symbols and "TSLA" not in ev.dirty


def test_metric_rules_run_on_bars_and_forecast_rules_on_predictions() -> None:
    sma = rule({"series": "sma_5", "op": "crossing_up", "other": "sma_20"}, rule_id=1)
    rsi = rule({"series": "rsi_14", "op": "less_than", "value": 30}, rule_id=2)
    fc = rule({"series": "forecast.move_pct", "op": "greater_than", "value": 1,
               "also": {"series": "forecast.lower_move_pct", "op": "greater_than", "value": 0}}, rule_id=3)
    ev = evaluator(sma, rsi, fc)
    assert feed(ev, [100, 101]) == []
    out = ev.on_bar(bar(100, 0, sma_5=99.0, sma_20=100.0, rsi_14=40.0))
    out += ev.on_bar(bar(101, 1, sma_5=101.0, sma_20=100.0, rsi_14=25.0))
    out += ev.on_prediction(prediction(101, 103, 101.5, 104, 1))
    assert [(a.rule_id, a.state) for a in out] == [(1, "firing"), (2, "firing"), (3, "firing")]
    assert out[2].evidence["forecast.move_pct"] > 1


def test_price_against_an_indicator_uses_the_latest_bar() -> None:
    ev = evaluator(rule({"series": "price", "op": "crossing_up", "other": "sma_20"}))
    ev.on_bar(bar(100, 0, sma_20=100.0))
    assert states(feed(ev, [99, 101])) == [("firing", 101)]


def test_ids_are_deterministic_and_a_new_version_restarts_the_lifecycle() -> None:
    a = feed(evaluator(rule(ABOVE_150)), [149, 151, 149])
    b = feed(evaluator(rule(ABOVE_150)), [149, 151, 149])
    assert [x.id for x in a] == [x.id for x in b]
    ev = evaluator(rule(ABOVE_150))
    first = feed(ev, [151])
    ev.upsert_rule(rule(ABOVE_150, version=2))
    again = feed(ev, [152], start=1)
    assert states(again) == [("firing", 152)] and again[0].id != first[0].id and again[0].rule_version == 2


def test_removed_rule_stops() -> None:
    ev = evaluator(rule(ABOVE_150))
    ev.remove_rule(1)
    assert feed(ev, [151]) == [] and ev.index["tick"] == {}


def test_message_template_with_placeholders() -> None:
    ev = evaluator(rule(ABOVE_150, message="{{ticker}} at {{close}} > {{threshold}} ({{time}})"))
    out = feed(ev, [151])
    assert out[0].message == "AAPL at 151.0 > 150.0 (2026-11-18T11:06:00Z)"
    broken = evaluator(rule(ABOVE_150, message="{{ ticker "))
    assert "AAPL" in feed(broken, [151])[0].message  # falls back to the default text, alert not lost


def test_state_survives_a_changelog_round_trip() -> None:
    prices = [149, 151, 152, 149, 151, 150.5, 148]
    crossing = rule({"series": "price", "op": "crossing", "value": 150}, rule_id=1)
    moving = rule({"series": "price", "op": "moving_up", "value": 2, "window_s": 30}, rule_id=2)
    whole = evaluator(crossing, moving)
    expected = feed(whole, prices)
    first = evaluator(crossing, moving)
    out = feed(first, prices[:3])
    saved = {s: encode_state(st) for s, st in first.take_dirty().items()}
    second = evaluator(crossing, moving)
    for symbol, data in saved.items():
        second.restore(symbol, decode_state(data))
    out += feed(second, prices[3:], start=3)
    assert [a.id for a in out] == [a.id for a in expected]


def test_stale_feed_only_in_us_market_hours() -> None:
    def at(d: int, h: int, m: int) -> int:
        return int(datetime(2026, 11, d, h, m, tzinfo=timezone.utc).timestamp() * 1000)

    assert is_market_open(at(18, 15, 0))        # Wednesday 10:00 New York
    assert not is_market_open(at(18, 22, 0))    # 17:00 New York
    assert not is_market_open(at(21, 15, 0))    # Saturday
    ev = Evaluator(bar_seconds=60, stale_after_s=60)
    ev.upsert_rule(rule(ABOVE_150))
    ev.on_tick(tick(100, 0, ts_ms=at(18, 14, 20)))
    assert ev.check_stale(at(18, 14, 29)) == []                 # 9 min later, but 09:29 New York: closed
    fired = ev.check_stale(at(18, 14, 31))
    assert [(a.rule_id, a.user_id, a.state) for a in fired] == [(0, 0, "firing")]
    assert ev.check_stale(at(18, 15, 2)) == []                  # once per outage
    resolved = ev.on_tick(tick(100, 1, ts_ms=at(18, 15, 3)))
    assert [(a.rule_id, a.state, a.trigger_event_id) for a in resolved] == [(0, "resolved", fired[0].trigger_event_id)]
    night = Evaluator(bar_seconds=60, stale_after_s=60)
    night.upsert_rule(rule(ABOVE_150))
    night.on_tick(tick(100, 0, ts_ms=at(18, 22, 0)))
    assert night.check_stale(at(18, 23, 0)) == []


def test_bar_boundary_constant() -> None:
    assert T0 % BAR_MS == 0
    assert msgspec.json.decode(msgspec.json.encode(rule(ABOVE_150))) is not None


@pytest.mark.parametrize("op", ["greater_than", "less_than", "crossing", "crossing_up", "crossing_down",
                                "entering_channel", "exiting_channel", "inside_channel", "outside_channel"])
def test_the_inline_hot_path_agrees_with_the_general_one(op: str) -> None:
    channel = "channel" in op
    cond = {"series": "price", "op": op, **({"lower": 99.0, "upper": 101.0} if channel else {"value": 100.0})}
    extra = {} if channel or op == "crossing" else {"recovery": 99.5 if op in ("greater_than", "crossing_up") else 100.5}
    rng = random.Random(op)
    prices = [round(100 + rng.uniform(-2, 2), 1) for _ in range(400)]
    for fields in ({}, extra, {"frequency": "once_per_bar", "pending_s": 2}, {"cooldown_s": 5}):
        fast, slow = evaluator(rule(cond, **fields)), evaluator(rule(cond, **fields))
        assert fast.rules[1].fast
        slow.rules[1].fast = 0  # force the general path
        a, b = feed(fast, prices), feed(slow, prices)
        assert [x.id for x in a] == [x.id for x in b] and len(a) > 3


def test_a_republished_rule_changes_nothing_and_a_shrunk_watchlist_drops_state() -> None:
    r = rule(ABOVE_150, symbols=["AAPL", "MSFT"])
    ev = evaluator(r)
    assert states(feed(ev, [151])) == [("firing", 151)]
    ev.upsert_rule(r)  # the relay published the same row twice
    assert feed(ev, [152, 153], start=1) == []  # still firing: no second alert
    ev.on_tick(tick(151, 5, "MSFT"))
    ev.upsert_rule(rule(ABOVE_150, symbols=["AAPL"], version=2))
    assert 1 not in ev.symbols["MSFT"].rules and "MSFT" not in ev.watched
    assert ev.on_tick(tick(151, 6, "MSFT")) == []
