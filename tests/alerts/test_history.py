"""Backfilled bars (Bar.history) warm every rule's state but never fire: pure, then with the real broker."""

from __future__ import annotations

import threading
import uuid
from typing import Iterator

import msgspec
import pytest

from alerts.engine import EngineRunner, changelog_topic, read_to_end
from alerts.engine_state import Evaluator
from events import contract
from events.kafka import EventProducer, ShutdownFlag, admin_client
from events.settings import Settings
from tests.support import wait_for
from tests.alerts.helpers import bar, rule, states, tick


def hist(close: float, i: int, symbol: str = "AAPL", **indicators: float | None) -> contract.Bar:
    return msgspec.structs.replace(bar(close, i, symbol, **indicators), history=True)


def evaluator(*rules: contract.Rule) -> Evaluator:
    ev = Evaluator(bar_seconds=60)
    for r in rules:
        ev.upsert_rule(r)
    return ev


def feed(ev: Evaluator, events: list[contract.Event]) -> list[contract.Alert]:
    out: list[contract.Alert] = []
    for e in events:
        out += ev.on_tick(e) if isinstance(e, contract.Tick) else ev.on_bar(e)  # type: ignore[arg-type]
    return out


def test_a_level_the_history_matches_fires_on_the_first_live_bar_only() -> None:
    ev = evaluator(rule({"series": "close", "op": "greater_than", "value": 150}))
    assert feed(ev, [hist(160, i) for i in range(5)]) == []
    (alert,) = feed(ev, [bar(161, 5)])
    assert alert.state == "firing" and alert.trigger_event_id == bar(161, 5).id


def test_a_crossing_takes_its_previous_value_from_the_history() -> None:
    cross = rule({"series": "close", "op": "crossing", "value": 100})
    assert feed(evaluator(cross), [bar(105, 5)]) == []  # no "before": nothing to cross from
    ev = evaluator(cross)
    assert feed(ev, [hist(105, 0), hist(95, 1), hist(105, 2), hist(95, 3)]) == []  # crossings in the past
    assert states(feed(ev, [bar(105, 4)])) == [("firing", 105.0)]


def test_a_crossing_up_inside_the_history_is_over() -> None:
    ev = evaluator(rule({"series": "close", "op": "crossing_up", "value": 100}))
    assert feed(ev, [hist(95, 0), hist(105, 1)]) == []
    assert feed(ev, [bar(106, 2)]) == []  # still above, but the crossing happened in the history
    assert states(feed(ev, [bar(95, 3), bar(107, 4)])) == [("firing", 107.0)]
    ev = evaluator(rule({"series": "close", "op": "crossing_up", "value": 100}))
    feed(ev, [hist(105, 0), hist(95, 1)])  # armed by the history
    assert states(feed(ev, [bar(101, 2)])) == [("firing", 101.0)]


def test_a_price_rule_reads_the_history_close() -> None:
    ev = evaluator(rule({"series": "price", "op": "crossing", "value": 100}))
    assert feed(ev, [hist(95, 0), hist(96, 1)]) == []
    assert states(feed(ev, [tick(101, 200)])) == [("firing", 101.0)]


def test_a_move_window_and_the_pending_clock_start_in_the_history() -> None:
    move = rule({"series": "close", "op": "moving_up", "value": 5, "window_bars": 3}, rule_id=1)
    pending = rule({"series": "close", "op": "greater_than", "value": 150}, rule_id=2, symbols=["MSFT"],
                   pending_s=120)
    ev = evaluator(move, pending)
    assert feed(ev, [hist(100, 0), hist(101, 1), hist(102, 2)]) == []
    assert states(feed(ev, [bar(106, 3)])) == [("firing", 6.0)]  # 106 - the window's 100
    assert feed(ev, [hist(151, i, "MSFT") for i in range(3)]) == []  # held 120 s before the live bar
    assert states(feed(ev, [bar(152, 3, "MSFT")])) == [("firing", 152.0)]
    fresh = evaluator(pending)
    assert feed(fresh, [bar(152, 3, "MSFT")]) == []  # without history the pending period starts now


def test_history_never_resolves_a_firing_rule() -> None:
    ev = evaluator(rule({"series": "close", "op": "greater_than", "value": 150}))
    assert states(feed(ev, [bar(160, 5)])) == [("firing", 160.0)]
    assert feed(ev, [hist(100, 1)]) == []
    assert ev.symbols["AAPL"].rules[1].firing


# --- the engine process against the real broker ------------------------------------------


@pytest.fixture
def engine_settings(kafka_settings: Settings) -> Iterator[Settings]:
    yield kafka_settings
    admin_client(kafka_settings).delete_topics([changelog_topic(kafka_settings)], operation_timeout=10)


def committed_alerts(settings: Settings) -> list[contract.Alert]:
    out: list[contract.Alert] = []
    read_to_end(settings, settings.topic("alerts"), lambda m: out.append(contract.decode(m.value(), contract.Alert)))
    return out


def test_a_backfill_the_rules_match_fires_nothing_and_the_next_live_bar_does(engine_settings: Settings) -> None:
    settings = engine_settings
    level = rule({"series": "close", "op": "greater_than", "value": 150}, rule_id=1, frequency="once_per_bar")
    cross = rule({"series": "close", "op": "crossing", "value": 100}, rule_id=2, symbols=["MSFT"])
    price = rule({"series": "price", "op": "crossing_up", "value": 100}, rule_id=3, symbols=["NVDA"])
    producer = EventProducer(settings)
    for r in (level, cross, price):
        producer.produce(r)
    producer.flush()
    backfill: list[contract.Bar] = (
        [hist(160, i) for i in range(30)]                                 # matches the level all along
        + [hist(95 if i % 2 else 105, i, "MSFT") for i in range(30)]      # crosses 100 on every bar, ends below
        + [hist(90 + i, i, "NVDA") for i in range(12)] + [hist(99, 12, "NVDA")]  # crosses up in the past
    )
    live: list[contract.Event] = [bar(161, 30), bar(105, 30, "MSFT"), tick(101, 0, "NVDA", bar(1, 13).ts + 1)]
    flag = ShutdownFlag()
    runner = EngineRunner(settings, shutdown=flag, group_id=f"g-{uuid.uuid4().hex}",
                          transactional_id=f"tx-{uuid.uuid4().hex}")
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: runner.evaluator.rules.keys() == {1, 2, 3}, what="rules loaded")
        for b in backfill:
            producer.produce(b)
        producer.flush()
        wait_for(lambda: runner.stats.consumed >= len(backfill), what="the backfill consumed")
        assert committed_alerts(settings) == []
        for e in live:
            producer.produce(e)
        producer.flush()
        wait_for(lambda: len(committed_alerts(settings)) >= 3, timeout_s=30, what="the live alerts")
    finally:
        flag.set()
        thread.join(20)
    got = committed_alerts(settings)  # everything the engine committed, after it stopped
    assert sorted((a.rule_id, a.state, a.trigger_event_id) for a in got) == [
        (1, "firing", live[0].id), (2, "firing", live[1].id), (3, "firing", live[2].id)]
    assert all(a.value in (161.0, 105.0, 101.0) for a in got)
